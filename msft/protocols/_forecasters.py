"""Adapters that let callables and msft models be evaluated through one code path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor


def point_forecaster(forecaster: Any) -> Callable[..., Tensor]:
    """``f(past, horizon, **covariates)``: an object's ``.predict(past_target, horizon, **covariates)``,
    else the callable ``f(past, **covariates)`` (covariates only for windows that have them)."""
    if hasattr(forecaster, "predict"):
        return lambda past, horizon, **covariates: forecaster.predict(past, horizon, **covariates)
    if callable(forecaster):
        return lambda past, horizon, **covariates: forecaster(past, **covariates)
    raise ValueError(f"forecaster {forecaster!r} is neither callable nor has .predict(past_target, horizon)")


def sampler(forecaster: Any) -> Callable[[Tensor, int, int], Tensor]:
    """``f(past, horizon, num_samples)``: ``.predict_samples(past_target, horizon, num_samples=...)`` or a callable."""
    if hasattr(forecaster, "predict_samples"):
        return lambda past, horizon, n: forecaster.predict_samples(past, horizon, num_samples=n)
    if callable(forecaster):
        return forecaster
    raise ValueError(f"sampler {forecaster!r} is neither callable nor has .predict_samples(...)")


def check_shape(output: Any, expected: tuple[int, ...], what: str) -> Tensor:
    if not isinstance(output, Tensor) or tuple(output.shape) != expected:
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"{what} returned {got}; expected a tensor of shape {expected}")
    return output
