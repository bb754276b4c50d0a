"""Down-sampling to coarser scales and up-sampling forecasts back (docs/design.md §2.1, §2.6).

A scale ``s`` is non-overlapping average pooling with kernel = stride = ``s``. The context is padded
on the left and the horizon on the right, so that the pooled windows stay aligned with the forecast
origin. Missing points (NaN or ``observed=False``) are left out of the mean; a pooled point is
observed when any of its window is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def downsample(series: Tensor, observed: Tensor, scale: int, side: str = "left") -> tuple[Tensor, Tensor]:
    """NaN-aware average pooling of ``(batch, time)`` series.

    Returns ``(pooled, pooled_observed)`` of length ``ceil(time / scale)``; the partial window is at
    the start for ``side="left"`` (a context) and at the end for ``side="right"`` (a horizon).
    Unobserved pooled points hold 0.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side={side!r}: expected 'left' or 'right'")
    observed = observed & ~torch.isnan(series)
    if scale == 1:
        return torch.where(observed, series, torch.zeros_like(series)), observed
    length = series.shape[-1]
    pad = math.ceil(length / scale) * scale - length
    values = torch.where(observed, series, torch.zeros_like(series))
    if pad:
        padding = (pad, 0) if side == "left" else (0, pad)
        values = torch.nn.functional.pad(values, padding)
        observed = torch.nn.functional.pad(observed, padding)
    windows = values.unflatten(-1, (-1, scale))  # (batch, time / scale, scale)
    counts = observed.unflatten(-1, (-1, scale)).sum(-1)
    pooled = windows.sum(-1) / counts.clamp(min=1)
    return pooled, counts > 0


def upsample(forecast: Tensor, scale: int, horizon: int) -> Tensor:
    """Repeat each step of a ``(..., ceil(horizon / scale))`` forecast ``scale`` times, truncated."""
    if scale == 1:
        return forecast[..., :horizon]
    return forecast.repeat_interleave(scale, dim=-1)[..., :horizon]


def upsample_paths(paths: Tensor, scale: int, horizon: int, fine: Tensor | None = None) -> Tensor:
    """A coarse scale's ``(..., ceil(horizon / scale))`` paths at the original resolution ``(..., horizon)``.

    ``fine=None`` ("repeat", the published up-sampling): each block's draw repeated over its ``scale``
    steps, so every step of a block has the same value and the per-step spread is the spread of an
    s-step mean. With ``fine (..., >= horizon)`` ("residual"): the block's draw plus ``fine``'s
    deviation from its own block mean, so the path's block means are exactly the coarse draws (the
    coarse distribution is kept at its resolution) and the variation inside a block is the fine path's.
    Blocks start at the first horizon step. The block means read every step ``fine`` has up to the
    last block's end (a fine forecast longer than ``horizon`` keeps a partial last block whole, so a
    shorter horizon's forecast is the longer one's prefix); only where ``fine`` ends inside the last
    block is its mean over the steps there are.
    """
    repeated = upsample(paths, scale, horizon)
    if fine is None or scale == 1:
        return repeated
    if fine.shape[-1] < horizon:
        raise ValueError(f"fine paths of length {fine.shape[-1]}: expected at least the horizon {horizon}")
    fine = fine[..., : scaled_length(horizon, scale) * scale]  # up to the last block's end
    means, _ = downsample(fine, torch.ones_like(fine, dtype=torch.bool), scale, side="right")
    return repeated + (fine - upsample(means, scale, fine.shape[-1]))[..., :horizon]


def scaled_length(length: int, scale: int) -> int:
    return math.ceil(length / scale)


def sample_quantiles(samples: Tensor, levels: Sequence[float], dim: int = 1) -> Tensor:
    """GluonTS's sample quantile, the ``round((S - 1) q)``-th order statistic of the ``S`` paths along
    ``dim``, for each level (in place of that axis: ``(n, S, H) -> (n, Q, H)``)."""
    ordered = samples.sort(dim=dim).values
    index = torch.tensor([round((samples.shape[dim] - 1) * q) for q in levels], device=samples.device)
    return ordered.index_select(dim, index)
