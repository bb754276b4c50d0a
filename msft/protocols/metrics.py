"""Forecast metrics, numerically identical to GluonTS's (``gluonts.ev``, aggregated over everything).

Point: MSE, MAE. Probabilistic, from sample paths: CRPS (mean weighted quantile loss over 0.1…0.9),
MSIS, sMAPE, MASE, ND, NRMSE. As in GluonTS, quantiles of samples are order statistics
(``sorted[round((S-1) q)]``), the point forecast is the median for sMAPE/MASE/ND and the sample
mean for NRMSE, and unobserved targets are left out of every sum and mean.

Shapes: ``target (n, horizon)``, ``samples (n, num_samples, horizon)``, ``seasonal_error (n,)``,
``mask`` like ``target`` (True = observed). Any extra trailing axes ride along with ``horizon``.
"""

from __future__ import annotations

import numpy as np

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 10))


def sample_quantiles(samples: np.ndarray, levels, axis: int = 1) -> np.ndarray:
    """GluonTS ``SampleForecast.quantile``: the ``round((S-1) q)``-th order statistic; levels on axis 0."""
    ordered = np.sort(samples, axis=axis)
    idx = np.round((samples.shape[axis] - 1) * np.asarray(levels, dtype=float)).astype(int)
    return np.moveaxis(np.take(ordered, idx, axis=axis), axis, 0)


def _masked(x: np.ndarray, mask: np.ndarray | None) -> np.ma.MaskedArray:
    return np.ma.masked_array(x, mask=None if mask is None else ~np.asarray(mask, dtype=bool))


def mse(target: np.ndarray, forecast: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.ma.mean(_masked(np.square(target - forecast), mask)))


def mae(target: np.ndarray, forecast: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.ma.mean(_masked(np.abs(target - forecast), mask)))


def quantile_loss(target: np.ndarray, quantile_forecast: np.ndarray, q: float) -> np.ndarray:
    """Elementwise ``2 |(y - ŷ_q)(1{ŷ_q ≥ y} - q)|`` (GluonTS's factor 2 included)."""
    return 2 * np.abs((target - quantile_forecast) * ((quantile_forecast >= target) - q))


def crps(target: np.ndarray, samples: np.ndarray, mask: np.ndarray | None = None, levels=QUANTILES) -> float:
    """Mean over ``levels`` of Σ quantile loss / Σ |y| (GluonTS ``MeanWeightedSumQuantileLoss``)."""
    quantiles = sample_quantiles(samples, levels)  # (levels, n, horizon)
    scale = np.ma.sum(_masked(np.abs(target), mask))
    losses = [np.ma.sum(_masked(quantile_loss(target, qf, q), mask)) / scale for q, qf in zip(levels, quantiles)]
    return float(np.mean(losses))


def _per_series(seasonal_error: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.asarray(seasonal_error, dtype=float).reshape((-1,) + (1,) * (target.ndim - 1))


def pf_metrics(
    target: np.ndarray,
    samples: np.ndarray,
    seasonal_error: np.ndarray,
    mask: np.ndarray | None = None,
    levels=QUANTILES,
    alpha: float = 0.05,
) -> dict[str, float]:
    """CRPS, MSIS, sMAPE, MASE, ND, NRMSE of sample forecasts, as GluonTS computes them."""
    target = np.asarray(target, dtype=float)
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != target.ndim + 1 or samples.shape[0] != target.shape[0] or samples.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"samples have shape {samples.shape}; expected (n, num_samples) + {target.shape[1:]} "
            f"for target {target.shape}"
        )
    scale = _per_series(seasonal_error, target)
    lower, median, upper = sample_quantiles(samples, (alpha / 2, 0.5, 1 - alpha / 2))
    mean = samples.mean(axis=1)
    abs_err = np.abs(target - median)
    interval = (
        upper
        - lower
        + 2 / alpha * (lower - target) * (target < lower)
        + 2 / alpha * (target - upper) * (target > upper)
    )
    abs_target = _masked(np.abs(target), mask)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "crps": crps(target, samples, mask, levels),
            "msis": float(np.ma.mean(_masked(interval / scale, mask))),
            "smape": float(np.ma.mean(_masked(2 * abs_err / (np.abs(target) + np.abs(median)), mask))),
            "mase": float(np.ma.mean(_masked(abs_err / scale, mask))),
            "nd": float(np.ma.sum(_masked(abs_err, mask)) / np.ma.sum(abs_target)),
            "nrmse": float(np.sqrt(np.ma.mean(_masked(np.square(target - mean), mask))) / np.ma.mean(abs_target)),
        }
