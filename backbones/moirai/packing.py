"""MOIRAI's packed forecast layout for univariate series, as `MoiraiForecast._convert` builds it.

One series per row: ``[context patches | prediction patches]`` along the token axis, each patch
padded to the module's largest patch size. The context is left-padded to a multiple of the patch
size, the horizon right-padded; padded and missing points are unobserved (value 0, as gluonts'
``AddObservedValuesIndicator`` leaves them). Time ids count observed context patches from 0 (leading
fully-unobserved patches share id 0) and continue into the prediction patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor
from torch.nn import functional as F


@dataclass
class PackedBatch:
    """The inputs of `MoiraiModule.forward`, one univariate series per row."""

    target: Tensor  # (series, tokens, max_patch) float
    observed_mask: Tensor  # (series, tokens, max_patch) bool
    sample_id: Tensor  # (series, tokens) long
    time_id: Tensor  # (series, tokens) long
    variate_id: Tensor  # (series, tokens) long
    prediction_mask: Tensor  # (series, tokens) bool
    patch_size: Tensor  # (series, tokens) long
    num_context: int
    num_horizon: int

    def module_inputs(self) -> tuple[Tensor, ...]:
        """Positional arguments of `MoiraiModule.forward`."""
        return (
            self.target,
            self.observed_mask,
            self.sample_id,
            self.time_id,
            self.variate_id,
            self.prediction_mask,
            self.patch_size,
        )


def pack_series(
    context: Tensor,
    observed: Tensor,
    horizon: int,
    patch_size: int,
    max_patch_size: int,
    future: Tensor | None = None,
    future_observed: Tensor | None = None,
) -> PackedBatch:
    """Pack ``(series, time)`` contexts (and optionally their futures) into MOIRAI's layout.

    Without ``future`` the prediction patches hold zeros marked observed, as in MoiraiForecast's
    inference path (the values are replaced by the mask token and never read).
    """
    series, device = context.shape[0], context.device
    observed = observed & ~torch.isnan(context)
    context = torch.where(observed, context, torch.zeros_like(context))
    if future is None:
        future = context.new_zeros(series, horizon)
        future_observed = torch.ones(series, horizon, dtype=torch.bool, device=device)
    elif future_observed is None:
        future_observed = ~torch.isnan(future)
    future_observed = future_observed & ~torch.isnan(future)
    future = torch.where(future_observed, future, torch.zeros_like(future))

    pad_left = -context.shape[1] % patch_size
    pad_right = -horizon % patch_size
    n_ctx = math.ceil(context.shape[1] / patch_size)
    n_hor = math.ceil(horizon / patch_size)
    values = torch.cat([F.pad(context, (pad_left, 0)), F.pad(future, (0, pad_right))], dim=1)
    seen = torch.cat([F.pad(observed, (pad_left, 0)), F.pad(future_observed, (0, pad_right))], dim=1)
    values = rearrange(values, "n (t p) -> n t p", p=patch_size)  # (series, tokens, patch)
    seen = rearrange(seen, "n (t p) -> n t p", p=patch_size)
    widen = (0, max_patch_size - patch_size)

    context_seen = seen[:, :n_ctx].any(-1).long()  # (series, n_ctx)
    past_time = (context_seen.cummax(dim=-1).values.cumsum(dim=-1) - 1).clamp(min=0)
    future_time = torch.arange(n_hor, device=device) + past_time.max(dim=-1, keepdim=True).values + 1
    tokens = n_ctx + n_hor
    return PackedBatch(
        target=F.pad(values, widen),
        observed_mask=F.pad(seen, widen),
        sample_id=torch.ones(series, tokens, dtype=torch.long, device=device),
        time_id=torch.cat([past_time, future_time], dim=1),
        variate_id=torch.zeros(series, tokens, dtype=torch.long, device=device),
        prediction_mask=torch.arange(tokens, device=device).expand(series, tokens) >= n_ctx,
        patch_size=torch.full((series, tokens), patch_size, dtype=torch.long, device=device),
        num_context=n_ctx,
        num_horizon=n_hor,
    )


def patchify_target(target: Tensor, observed: Tensor, patch_size: int, max_patch_size: int) -> tuple[Tensor, Tensor]:
    """``(series, horizon)`` future values -> ``(series, n_horizon, max_patch)`` values and mask, right-padded."""
    observed = observed & ~torch.isnan(target)
    target = torch.where(observed, target, torch.zeros_like(target))
    pad = (0, -target.shape[1] % patch_size)
    values = rearrange(F.pad(target, pad), "n (t p) -> n t p", p=patch_size)
    seen = rearrange(F.pad(observed, pad), "n (t p) -> n t p", p=patch_size)
    widen = (0, max_patch_size - patch_size)
    return F.pad(values, widen), F.pad(seen, widen)
