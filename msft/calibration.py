"""Conformal calibration of quantile forecasts, fitted on validation windows (docs/design.md §2.6).

Split-conformal quantile regression (conformalized quantile regression, Romano et al. 2019, one level
at a time): for each quantile level ``q`` the residuals ``r = (y - yhat_q) / sigma`` of the model's own
q-quantile on ``n`` validation windows give a correction ``c_q``, their order statistic

- ``ceil((n + 1) q)``-th smallest for ``q >= 0.5``, ``floor((n + 1) q)``-th for ``q < 0.5``,

so that on exchangeable new windows ``P(y <= yhat_q + c_q sigma)`` is at least ``q`` above the median
and at most ``q`` below it: each central interval covers at least its nominal share. ``sigma`` is the
series' context standard deviation (``scale="context"``), so one correction serves series of any
magnitude, or 1 (``scale="none"``, the data's units). With enough windows the corrections are per
horizon step (``per_step``), otherwise pooled over the steps.

A calibration is applied to quantiles (`ConformalCalibration.adjust_quantiles`, any level: the
correction is interpolated linearly in the level and held constant beyond the fitted ones) and to
sample paths (`ConformalCalibration.adjust_paths`: per step, the path of rank k among S is moved by
the correction at level ``k / (S - 1)``, the level whose order statistic ``predict_quantiles`` reads).
Torch only: no runner, no Lightning.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from msft.checks import check_levels

CALIBRATION_FILE = "calibration.json"
METHODS = ("conformal",)
SCALES = ("context", "none")
#: the levels whose central intervals PF tables read (50%, 80%, 90%) and the CRPS grid 0.1 ... 0.9
DEFAULT_LEVELS = (0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95)
#: with at least this many windows ``per_step=None`` fits one correction per horizon step: the
#: coverage of a correction from n residuals is off by about sqrt(q (1 - q) / n) (0.014 at q = 0.05)
PER_STEP_WINDOWS = 250
#: below this many windows `ConformalCalibration.fit` warns: sqrt(0.25 / n) > 0.05 at the median
FEW_WINDOWS = 100


def minimum_windows(levels: Any) -> int:
    """Fewest windows for which every level's order statistic exists: ``ceil((n + 1) q) <= n`` for
    ``q >= 0.5`` and ``floor((n + 1) q) >= 1`` below, i.e. ``n >= max(q, 1 - q) / min(q, 1 - q)``."""
    ratios = [max(q, 1 - q) / min(q, 1 - q) for q in check_levels(levels, increasing=True)]
    return max(math.ceil(r - 1e-9) for r in ratios)


def context_scale(past: Tensor, observed: Tensor) -> Tensor:
    """``(batch, variate)`` standard deviation of each series' observed context ``(batch, time, variate)``,
    floored at 1e-6 of its largest magnitude (and at 1e-12) so a flat context cannot divide by 0."""
    seen = observed & ~torch.isnan(past)
    values = torch.where(seen, past, torch.zeros_like(past)).double()
    count = seen.sum(1).clamp(min=1)
    mean = values.sum(1) / count
    var = torch.where(seen, (values - mean[:, None]) ** 2, torch.zeros_like(values)).sum(1) / count
    largest = values.abs().amax(1)
    return var.sqrt().clamp(min=0).maximum(1e-6 * largest).clamp(min=1e-12).to(past.dtype)


@dataclass(frozen=True)
class ConformalCalibration:
    """Per-level (and per-step) additive corrections in units of ``sigma`` (see the module docstring)."""

    levels: tuple[float, ...]
    corrections: tuple[tuple[float, ...], ...]  # (levels, steps): one step when pooled
    per_step: bool
    scale: str = "context"
    windows: int = 0  # validation windows it was fitted on (series x windows)
    method: str = "conformal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", check_levels(self.levels, increasing=True))
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {METHODS}")
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r}: expected one of {SCALES}")
        rows = tuple(tuple(float(c) for c in row) for row in self.corrections)
        steps = {len(row) for row in rows}
        if len(rows) != len(self.levels) or len(steps) != 1 or 0 in steps:
            raise ValueError(
                f"corrections: expected one non-empty row of equal length per level ({len(self.levels)} levels)"
            )
        if not all(math.isfinite(c) for row in rows for c in row):
            raise ValueError("corrections: expected finite numbers")
        object.__setattr__(self, "corrections", rows)

    # -- fitting --------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        quantiles: Tensor,
        levels: Any,
        future: Tensor,
        future_observed: Tensor,
        past: Tensor,
        past_observed: Tensor,
        per_step: bool | None = None,
        scale: str = "context",
    ) -> ConformalCalibration:
        """Fit on the model's uncalibrated ``quantiles (batch, levels, horizon, variate)`` of validation
        windows with truth ``future (batch, horizon, variate)`` and context ``past (batch, time, variate)``.

        Every series of every window is one window here (channel independence). ``per_step=None``
        chooses per-step corrections from `PER_STEP_WINDOWS` windows on. Too few windows for a level
        raise ``ValueError`` naming the minimum (`minimum_windows`).
        """
        levels = check_levels(levels, increasing=True)
        if scale not in SCALES:
            raise ValueError(f"scale={scale!r}: expected one of {SCALES}")
        if quantiles.dim() != 4 or quantiles.shape[1] != len(levels):
            raise ValueError(
                f"quantiles has shape {tuple(quantiles.shape)}: expected (batch, {len(levels)} levels, horizon, variate)"
            )
        b, _, h, v = quantiles.shape
        if future.shape != (b, h, v) or future_observed.shape != future.shape:
            raise ValueError(f"future has shape {tuple(future.shape)}: expected {(b, h, v)} like the quantiles")
        sigma = context_scale(past, past_observed) if scale == "context" else past.new_ones(b, v)  # (b, v)
        residual = (future[:, None] - quantiles) / sigma[:, None, None, :]  # (b, Q, H, v)
        residual = residual.permute(1, 2, 0, 3).reshape(len(levels), h, b * v).double()  # (Q, H, windows)
        seen = (future_observed & ~torch.isnan(future)).permute(1, 0, 2).reshape(h, b * v)  # (H, windows)
        windows = int(seen.any(0).sum())
        needed = minimum_windows(levels)
        if windows < needed:
            raise ValueError(
                f"calibrate: {windows} validation window(s) with an observed future; the quantile levels "
                f"{list(levels)} need at least {needed} (split conformal reads the ceil((n + 1) q)-th "
                "residual of n windows); give more validation windows or levels closer to 0.5"
            )
        if windows < FEW_WINDOWS:
            spread = max(math.sqrt(q * (1 - q) / windows) for q in levels)
            warnings.warn(
                f"calibrate: {windows} validation windows; a level's calibrated coverage is uncertain by about "
                f"sqrt(q (1 - q) / n) = {spread:.2f} (from {FEW_WINDOWS} windows on: below 0.05); "
                "more validation windows give steadier corrections",
                stacklevel=3,
            )
        if per_step is None:
            per_step = windows >= PER_STEP_WINDOWS and h > 1
        if per_step:
            counts = seen.sum(1)  # (H,)
            if int(counts.min()) < needed:
                step = int(counts.argmin())
                raise ValueError(
                    f"calibrate(per_step=True): horizon step {step} has {int(counts[step])} observed "
                    f"window(s); the levels {list(levels)} need at least {needed} per step"
                )
            columns = [[residual[i, t][seen[t]] for t in range(h)] for i in range(len(levels))]
        else:
            columns = [[residual[i][seen]] for i in range(len(levels))]
        rows = tuple(tuple(_order_statistic(r, q) for r in row) for q, row in zip(levels, columns))
        return cls(levels, rows, bool(per_step), scale, windows)

    # -- applying -------------------------------------------------------------------------------------
    def correction(self, levels: Any, horizon: int, like: Tensor) -> Tensor:
        """``(len(levels), horizon)`` corrections at any levels in (0, 1): linear in the level between the
        fitted ones, constant beyond them; steps past the fitted horizon take its last step's."""
        table = torch.tensor(self.corrections, dtype=torch.float64)  # (Q, steps)
        steps = torch.arange(horizon).clamp(max=table.shape[1] - 1)
        table = table[:, steps]  # (Q, horizon)
        fitted = torch.tensor(self.levels, dtype=torch.float64)
        wanted = torch.as_tensor(levels, dtype=torch.float64).clamp(float(fitted[0]), float(fitted[-1]))
        upper = torch.searchsorted(fitted, wanted).clamp(1, len(fitted) - 1) if len(fitted) > 1 else None
        if upper is None:
            out = table.expand(len(wanted), -1)
        else:
            lo, hi = fitted[upper - 1], fitted[upper]
            t = ((wanted - lo) / (hi - lo))[:, None]
            out = table[upper - 1] * (1 - t) + table[upper] * t
        return out.to(dtype=like.dtype, device=like.device)

    def adjust_quantiles(self, quantiles: Tensor, levels: Any, past: Tensor, past_observed: Tensor) -> Tensor:
        """``quantiles (batch, levels, horizon, variate)`` moved by the corrections and re-sorted in the
        level (corrections of neighbouring levels may cross)."""
        sigma = self._sigma(past, past_observed)  # (b, v)
        shift = self.correction(levels, quantiles.shape[2], quantiles)  # (Q, H)
        return (quantiles + shift[None, :, :, None] * sigma[:, None, None, :]).sort(dim=1).values

    def adjust_paths(self, paths: Tensor, past: Tensor, past_observed: Tensor) -> Tensor:
        """``paths (batch, S, horizon, variate)``: per step, the path of rank k moved by the correction at
        level ``k / (S - 1)`` (0.5 for one path); every path keeps its place in the batch."""
        b, s, h, v = paths.shape
        sigma = self._sigma(past, past_observed)  # (b, v)
        ranks = [k / (s - 1) for k in range(s)] if s > 1 else [0.5]
        shift = self.correction(ranks, h, paths)  # (S, H): by rank
        order = paths.argsort(dim=1)  # (b, S, H, v): order[:, k] is the path of rank k
        moved = torch.empty_like(paths)
        moved.scatter_(1, order, shift[None, :, :, None].expand(b, s, h, v).contiguous())  # path -> its shift
        return paths + moved * sigma[:, None, None, :]

    def _sigma(self, past: Tensor, past_observed: Tensor) -> Tensor:
        if self.scale == "none":
            return past.new_ones(past.shape[0], past.shape[2])
        return context_scale(past, past_observed)

    # -- storage --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "levels": list(self.levels),
            "corrections": [list(row) for row in self.corrections],
            "per_step": self.per_step,
            "scale": self.scale,
            "windows": self.windows,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ConformalCalibration:
        known = {"method", "levels", "corrections", "per_step", "scale", "windows"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"calibration: unknown field(s) {unknown}: expected some of {sorted(known)}")
        return cls(**values)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ConformalCalibration | None:
        """The calibration saved in ``directory``, or None when it holds none."""
        path = Path(directory) / CALIBRATION_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else None


def _order_statistic(residuals: Tensor, q: float) -> float:
    """The split-conformal correction of level ``q`` from ``n`` residuals (1-based order statistic
    ``ceil((n + 1) q)`` at or above the median, ``floor((n + 1) q)`` below it)."""
    n = residuals.numel()
    rank = math.ceil((n + 1) * q - 1e-9) if q >= 0.5 else math.floor((n + 1) * q + 1e-9)
    return float(residuals.sort().values[min(max(rank, 1), n) - 1])
