"""Point-forecast losses shared by the backbones' specs."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mse(prediction: Tensor, target: Tensor, observed: Tensor) -> Tensor:
    """Mean squared error over observed points (0 when none is observed)."""
    err = torch.where(observed, prediction - target, torch.zeros_like(prediction)) ** 2
    return err.sum() / observed.sum().clamp(min=1)
