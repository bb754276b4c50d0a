"""Point-forecast losses shared by the backbones' specs, and the pinball loss of msft's quantile heads."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mse(prediction: Tensor, target: Tensor, observed: Tensor) -> Tensor:
    """Mean squared error over observed points (0 when none is observed)."""
    err = torch.where(observed, prediction - target, torch.zeros_like(prediction)) ** 2
    return err.sum() / observed.sum().clamp(min=1)


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
