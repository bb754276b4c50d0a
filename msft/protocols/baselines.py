"""Reference forecasters: last value and seasonal naive.

Both have ``.predict(past_target, horizon)`` (the msft model signature) and, when built with a
horizon, are plain callables ``f(past (batch, L, V)) -> (batch, horizon, V)``. They also provide
``.predict_samples`` (identical samples), so they run through the PF protocol as degenerate samplers.

Default seasonal periods (one day, in steps): ETTh 24, ETTm 96, Weather 144, Electricity/Traffic 24,
Exchange 5 (business days: a week), ILI 52 (weekly data: a year). See ``default_period``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from msft.data.registry import get_spec


def default_period(dataset: str) -> int:
    """Seasonal-naive period of a known dataset (its daily cycle; weekly/yearly for Exchange/ILI)."""
    return get_spec(dataset).season


class _Baseline:
    def __init__(self, horizon: int | None = None):
        if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
            raise ValueError(f"horizon={horizon!r}; expected a positive int or None")
        self.horizon = horizon

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        raise NotImplementedError

    def __call__(self, past_target: Tensor) -> Tensor:
        if self.horizon is None:
            raise ValueError(f"{type(self).__name__} was built without a horizon; call .predict(past, horizon)")
        return self.predict(past_target, self.horizon)

    def predict_samples(self, past_target: Tensor, horizon: int, num_samples: int = 1) -> Tensor:
        point = self.predict(past_target, horizon)  # (batch, horizon, variate)
        return point.unsqueeze(1).expand(-1, num_samples, -1, -1)  # (batch, samples, horizon, variate)


class LastValue(_Baseline):
    """Repeat the last observed context value over the horizon."""

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        return past_target[:, -1:, :].expand(-1, horizon, -1)  # (batch, horizon, variate)


class SeasonalNaive(_Baseline):
    """Repeat the last ``period`` context values: ``ŷ[t] = past[L - period + t mod period]``."""

    def __init__(self, period: int, horizon: int | None = None):
        super().__init__(horizon)
        if not isinstance(period, int) or period < 1:
            raise ValueError(f"period={period!r}; expected a positive int")
        self.period = period

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        length = past_target.shape[1]
        if length < self.period:
            raise ValueError(f"context length {length} is shorter than the seasonal period {self.period}")
        steps = torch.arange(horizon, device=past_target.device) % self.period + length - self.period
        return past_target[:, steps, :]  # (batch, horizon, variate)


def last_value(horizon: int | None = None) -> LastValue:
    return LastValue(horizon)


def seasonal_naive(period: int, horizon: int | None = None) -> SeasonalNaive:
    return SeasonalNaive(period, horizon)
