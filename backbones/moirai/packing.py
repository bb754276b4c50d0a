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


def pack_variates(
    context: Tensor,
    observed: Tensor,
    horizon: int,
    patch_size: int,
    max_patch_size: int,
    known_future: Tensor,
    known_future_observed: Tensor,
    targets: int,
    known: int,
) -> PackedBatch:
    """Pack groups of variates ``(groups, variates, time)`` into one MOIRAI sequence per group, as
    `MoiraiForecast._convert` packs ``target``, ``feat_dynamic_real`` and ``past_feat_dynamic_real``.

    Variates are ordered ``targets``, ``known`` known-future covariates (their horizon values are
    ``known_future`` ``(groups, known, horizon)``), then past-only covariates. Each variate is one block
    ``[context patches | horizon patches]`` with variate id = its position (the any-variate bias reads
    only whether two ids are equal, so the order of blocks is free). Horizon patches: a target's are
    prediction patches (zeros marked observed, as `pack_series`); a known covariate's hold its values
    (not prediction patches, so they enter its scaling statistics, as in uni2ts); a past-only
    covariate's are padding in sample 0, which no real token attends to and whose scaling is (0, 1).
    Time ids count the targets' observed context patches (uni2ts' ``_generate_time_id``) and are
    shared by every variate.
    """
    groups, variates, _ = context.shape
    device = context.device
    observed = observed & ~torch.isnan(context)
    context = torch.where(observed, context, torch.zeros_like(context))
    known_future_observed = known_future_observed & ~torch.isnan(known_future)
    known_future = torch.where(known_future_observed, known_future, torch.zeros_like(known_future))
    past = variates - targets - known
    future = torch.cat(
        [
            context.new_zeros(groups, targets, horizon),
            known_future,
            context.new_zeros(groups, past, horizon),
        ],
        dim=1,
    )  # (groups, variates, horizon)
    future_observed = torch.cat(
        [
            torch.ones(groups, targets, horizon, dtype=torch.bool, device=device),
            known_future_observed,
            torch.zeros(groups, past, horizon, dtype=torch.bool, device=device),
        ],
        dim=1,
    )
    pad_left = -context.shape[-1] % patch_size
    pad_right = -horizon % patch_size
    n_ctx = math.ceil(context.shape[-1] / patch_size)
    n_hor = math.ceil(horizon / patch_size)
    values = torch.cat([F.pad(context, (pad_left, 0)), F.pad(future, (0, pad_right))], dim=-1)
    seen = torch.cat([F.pad(observed, (pad_left, 0)), F.pad(future_observed, (0, pad_right))], dim=-1)
    values = rearrange(values, "g v (t p) -> g (v t) p", p=patch_size)  # (groups, variates * tokens, patch)
    seen = rearrange(seen, "g v (t p) -> g (v t) p", p=patch_size)
    widen = (0, max_patch_size - patch_size)

    target_seen = rearrange(F.pad(observed[:, :targets], (pad_left, 0)), "g v (t p) -> g t (v p)", p=patch_size)
    context_seen = target_seen[:, :n_ctx].any(-1).long()  # (groups, n_ctx): any target observed
    past_time = (context_seen.cummax(dim=-1).values.cumsum(dim=-1) - 1).clamp(min=0)
    future_time = torch.arange(n_hor, device=device) + past_time.max(dim=-1, keepdim=True).values + 1
    time_id = torch.cat([past_time, future_time], dim=1).repeat(1, variates)  # (groups, variates * tokens)
    tokens = n_ctx + n_hor
    is_horizon = torch.arange(tokens, device=device) >= n_ctx  # (tokens,)
    role = torch.repeat_interleave(
        torch.tensor([0, 1, 2], device=device), torch.tensor([targets, known, past], device=device)
    )  # (variates,): 0 target, 1 known, 2 past-only
    prediction_mask = (is_horizon & (role[:, None] == 0)).flatten()  # (variates * tokens,)
    padding = (is_horizon & (role[:, None] == 2)).flatten()
    return PackedBatch(
        target=F.pad(values, widen),
        observed_mask=F.pad(seen, widen),
        sample_id=(~padding).long().expand(groups, -1),
        time_id=time_id,
        variate_id=torch.arange(variates, device=device).repeat_interleave(tokens).expand(groups, -1),
        prediction_mask=prediction_mask.expand(groups, -1),
        patch_size=torch.full((groups, variates * tokens), patch_size, dtype=torch.long, device=device),
        num_context=n_ctx,
        num_horizon=n_hor,
    )
