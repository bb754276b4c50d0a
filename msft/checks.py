"""Input checks at msft's public boundary: a bad value raises ``ValueError`` naming it and what was
expected, before anything reaches torch. Importing it imports no torch (`msft.config` uses it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


def check_levels(levels: Any, *, increasing: bool = False) -> tuple[float, ...]:
    """Quantile levels as a tuple of floats in (0, 1), non-empty; ``increasing``: also distinct and
    in increasing order (levels that define a model's heads or corrections)."""
    try:
        values = tuple(float(q) for q in levels)
    except (TypeError, ValueError):
        raise ValueError(f"quantile_levels={levels!r}: expected a sequence of numbers in (0, 1)") from None
    if increasing and (not values or not all(0.0 < q < 1.0 for q in values) or list(values) != sorted(set(values))):
        raise ValueError(f"quantile_levels={levels!r}: expected distinct increasing numbers in (0, 1)")
    if not values or not all(0.0 < q < 1.0 for q in values):
        raise ValueError(f"quantile_levels={levels!r}: expected a non-empty sequence of numbers in (0, 1)")
    return values


def check_series(name: str, target: Any, observed: Any, observed_name: str) -> tuple[Tensor, Tensor]:
    """``target`` ``(batch, time, variate)`` floating point and finite (NaN = missing), and its
    observed mask (given, or where ``target`` is not NaN), both as tensors."""
    import torch
    from torch import Tensor

    if not isinstance(target, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (batch, time, variate), got {type(target).__name__}")
    if target.dim() != 3:
        raise ValueError(f"{name} has shape {tuple(target.shape)}: expected 3 dims (batch, time, variate)")
    if not target.is_floating_point():
        raise ValueError(f"{name} has dtype {target.dtype}: expected a floating-point tensor")
    infinite = torch.isinf(target)
    if bool(infinite.any()):
        b, t, v = infinite.nonzero()[0].tolist()
        raise ValueError(
            f"{name}[{b}, {t}, {v}] is {target[b, t, v].item()}: expected finite values "
            "(mark missing values as NaN or through the observed mask)"
        )
    if observed is None:
        observed = ~torch.isnan(target)
    elif not isinstance(observed, Tensor) or observed.shape != target.shape:
        shape = tuple(observed.shape) if isinstance(observed, Tensor) else type(observed).__name__
        raise ValueError(f"{observed_name} has shape {shape}: expected {tuple(target.shape)} like {name}")
    return target, observed.bool() & ~torch.isnan(target)


def check_future(future: Any, observed: Any, past: Tensor) -> tuple[Tensor, Tensor]:
    """`check_series` for ``future_target``, whose batch and variates must match ``past``."""
    future, observed = check_series("future_target", future, observed, "future_observed")
    if future.shape[0] != past.shape[0] or future.shape[2] != past.shape[2]:
        raise ValueError(
            f"future_target has shape {tuple(future.shape)}: expected (batch={past.shape[0]}, horizon, "
            f"variate={past.shape[2]}) to match past_target"
        )
    return future, observed
