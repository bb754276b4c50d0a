"""Point-forecast losses shared by the backbones' specs, the pinball loss of msft's quantile heads, and
the scale-free terms that fit msft's fusion logits (squared error or CRPS of the fused forecast)."""

from __future__ import annotations

import torch
from torch import Tensor

from msft.fusion import FUSIONS, fuse_paths
from msft.ops import masked_mean_var


def masked_mse(prediction: Tensor, target: Tensor, observed: Tensor) -> Tensor:
    """Mean squared error over observed points (0 when none is observed)."""
    err = torch.where(observed, prediction - target, torch.zeros_like(prediction)) ** 2
    return err.sum() / observed.sum().clamp(min=1)


def _context_unit(past: Tensor, past_observed: Tensor) -> tuple[Tensor, Tensor]:
    """``(magnitude, variance)``: the largest observed ``|past|`` and the batch's mean context
    variance in units of it (both detached), the divisors that make a loss term scale-free."""
    magnitude = torch.where(past_observed, past.abs(), torch.zeros_like(past)).amax()
    magnitude = torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude)).detach()
    _, var = masked_mean_var(past / magnitude, past_observed)
    unit = var[past_observed.any(-1)].mean() if bool(past_observed.any()) else var.new_ones(())
    return magnitude, unit.clamp(min=1e-12).detach()


def scale_free_mse(prediction: Tensor, target: Tensor, observed: Tensor, past: Tensor, past_observed: Tensor) -> Tensor:
    """`masked_mse` divided by the batch's mean context variance (``past``, ``past_observed``:
    ``(series, time)``), computed without overflow at any float32 magnitude.

    The same number for a batch and for the batch times any constant: a loss term in the data's
    raw units (PF sets, user CSVs) would otherwise let its gradient dominate a global gradient-norm
    clip and shrink every other parameter's update. On z-scored data the divisor is about 1.
    """
    magnitude, unit = _context_unit(past, past_observed)
    return masked_mse(prediction / magnitude, target / magnitude, observed) / unit


def fused_crps(
    paths: Tensor,
    weights: Tensor,
    target: Tensor,
    observed: Tensor,
    past: Tensor,
    past_observed: Tensor,
    fusion: str,
    fair: bool = True,
    means: Tensor | None = None,
) -> Tensor:
    """CRPS of the fused forecast distribution, averaged over observed points, in units of the
    batch's context standard deviation (scale-free like `scale_free_mse`).

    ``paths (scales, series, S, horizon)``: each scale's sample paths at the original resolution;
    ``weights (scales,)``: the fusion weights; ``fusion``: one of `msft.fusion.FUSIONS`. With
    ``"mixture"`` the fused distribution is ``sum_s w_s F_s`` and its CRPS is exactly quadratic in the
    weights, ``sum_s w_s E|X_s - y| - 1/2 sum_st w_s w_t E|X_s - X'_t|``, each expectation over the
    paths; otherwise the paths are fused (`msft.fusion.fuse_paths`: ``"linear"`` averages path j of
    every scale, ``"quantile"`` averages the sorted paths, ``"location"`` shifts scale 1's paths by the
    fused mean minus its own, from ``means (scales, series, horizon)`` or the paths' averages) and the
    CRPS is that of the fused paths, ``E|X - y| - 1/2 E|X - X'|``. ``fair`` leaves out the pairs of a
    path with itself (the unbiased estimator of the spread term); ``fair=False`` is the exact CRPS of
    the paths' empirical distributions. Differentiable in ``weights`` (and in ``paths``, though msft
    detaches them).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion={fusion!r}: expected one of {FUSIONS}")
    magnitude, unit = _context_unit(past, past_observed)
    paths, target = paths / magnitude, target / magnitude
    n = paths.shape[2]
    if fair and n < 2:
        raise ValueError(f"fused_crps: {n} sample path(s) per scale; the fair estimator needs at least 2")

    def spread(a: Tensor, b: Tensor, same: bool) -> Tensor:  # E|A - B'| per point: (series, horizon)
        total = (a[:, :, None] - b[:, None]).abs().sum((1, 2))
        return total / (n * (n - 1) if same and fair else n * n)

    w = weights.to(paths.dtype)
    if fusion == "mixture":
        error = torch.einsum("s,sbt->bt", w, (paths - target[None, :, None]).abs().mean(2))
        pairs = sum(w[s] * w[t] * spread(paths[s], paths[t], s == t) for s in range(len(w)) for t in range(len(w)))
    else:
        fused = fuse_paths(paths, w, fusion, None if means is None else means / magnitude)  # (series, S, H)
        error = (fused - target[:, None]).abs().mean(1)
        pairs = spread(fused, fused, True)
    crps = torch.where(observed, error - pairs / 2, torch.zeros_like(error)).sum() / observed.sum().clamp(min=1)
    return crps / unit.sqrt()


def pinball_loss(quantiles: Tensor, target: Tensor, observed: Tensor, levels) -> Tensor:
    """Mean pinball (quantile) loss over observed points and levels.

    ``quantiles (series, levels, horizon)``, ``target``/``observed`` ``(series, horizon)``; level q costs
    ``q (y - y_q)`` above the quantile and ``(1 - q) (y_q - y)`` below it, minimised by the true q-quantile.
    """
    q = torch.as_tensor(levels, dtype=quantiles.dtype, device=quantiles.device)[None, :, None]
    error = target[:, None] - quantiles  # (series, levels, horizon)
    loss = torch.maximum(q * error, (q - 1) * error)
    mask = observed[:, None].expand_as(loss)
    return torch.where(mask, loss, torch.zeros_like(loss)).sum() / mask.sum().clamp(min=1)
