"""Point-forecast losses shared by the backbones' specs, and the pinball loss of msft's quantile heads."""

from __future__ import annotations

import torch
from torch import Tensor

from msft.ops import masked_mean_var


def masked_mse(prediction: Tensor, target: Tensor, observed: Tensor) -> Tensor:
    """Mean squared error over observed points (0 when none is observed)."""
    err = torch.where(observed, prediction - target, torch.zeros_like(prediction)) ** 2
    return err.sum() / observed.sum().clamp(min=1)


def scale_free_mse(prediction: Tensor, target: Tensor, observed: Tensor, past: Tensor, past_observed: Tensor) -> Tensor:
    """`masked_mse` divided by the batch's mean context variance (``past``, ``past_observed``:
    ``(series, time)``), computed without overflow at any float32 magnitude.

    The same number for a batch and for the batch times any constant: a loss term in the data's
    raw units (PF sets, user CSVs) would otherwise let its gradient dominate a global gradient-norm
    clip and shrink every other parameter's update. On z-scored data the divisor is about 1.
    """
    magnitude = torch.where(past_observed, past.abs(), torch.zeros_like(past)).amax()
    magnitude = torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude)).detach()
    _, var = masked_mean_var(past / magnitude, past_observed)
    unit = var[past_observed.any(-1)].mean() if bool(past_observed.any()) else var.new_ones(())
    error = masked_mse(prediction / magnitude, target / magnitude, observed)
    return error / unit.clamp(min=1e-12).detach()


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
