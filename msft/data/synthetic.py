"""Lightweight synthetic series: S2-style excitations (mixture draws, stationary ARMA) and trend/seasonality.

Only the excitation half of S2 (docs/design.md §5), with no symbols and no dependency beyond numpy and
pandas: the fixture behind ``load_lsf("synthetic")``, the smoke runs and the toy backbone's
pretraining. The S2 series-symbol data proper (random expressions f applied to excitations X) come
from the authors' generator through :mod:`msft.data.s2`, which pretrains the embedded tiny MOIRAI.

Each series is, with probability ``p_mixture`` (≤ 0.5), i.i.d. draws from a mixture of
``k ~ U{1..k_max}`` components with weights ``U(0,1)`` normalised, each component either
``N(μ, σ²)`` with ``μ ~ N(0,1)``, ``σ ~ U(0,1)``, or ``U(0, μ)`` (our reading of the spec: the two
component kinds are equally likely); otherwise it is a stationary ARMA(p, q) with
``p ~ U{1..p_max}``, ``q ~ U{1..q_max}`` and coefficients ``U(-1, 1)``. The spec's conditions
(Σφ < 1, |φ_p| < 1) are necessary but not sufficient for stationarity, so AR coefficient sets are
redrawn until every root of the AR polynomial lies outside the unit circle (the exact condition).

Everything is vectorised over series; the ARMA recursion loops over time only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def is_stationary(phi: np.ndarray) -> np.ndarray:
    """(series, p) AR coefficients (zero-padded) -> (series,) bool: all roots of 1 - Σ φ_i z^i outside |z|=1."""
    phi = np.atleast_2d(phi)
    out = np.empty(len(phi), dtype=bool)
    for i, row in enumerate(phi):  # np.roots is per polynomial; p is tiny so this is cheap
        coeffs = np.r_[1.0, -row]  # 1 - φ1 z - ... - φp z^p, highest degree last
        coeffs = np.trim_zeros(coeffs, "b")
        roots = np.roots(coeffs[::-1]) if len(coeffs) > 1 else np.array([])
        out[i] = bool(np.all(np.abs(roots) > 1.0 + 1e-6))
    return out


def _ar_coefficients(rng: np.random.Generator, n: int, p_max: int) -> np.ndarray:
    """(n, p_max) stationary AR coefficients, zero beyond each series' own order p ~ U{1..p_max}."""
    order = rng.integers(1, p_max + 1, size=n)
    phi = np.zeros((n, p_max))
    todo = np.arange(n)
    while todo.size:  # rejection sampling; acceptance is high for small p
        draw = rng.uniform(-1, 1, size=(todo.size, p_max)) * (np.arange(p_max) < order[todo, None])
        ok = is_stationary(draw)
        phi[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return phi


def arma_series(
    n_series: int, length: int, seed: int | np.random.Generator = 0, p_max: int = 3, q_max: int = 3, burn_in: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stationary ARMA series ``(n_series, length)`` and their ``phi (n, p_max)``, ``theta (n, q_max)``."""
    rng = np.random.default_rng(seed)
    phi = _ar_coefficients(rng, n_series, p_max)
    q_order = rng.integers(1, q_max + 1, size=n_series)
    theta = rng.uniform(-1, 1, size=(n_series, q_max)) * (np.arange(q_max) < q_order[:, None])
    total = length + burn_in
    noise = rng.standard_normal((n_series, total + q_max))  # (series, q_max lead-in + time)
    x = np.zeros((n_series, total + p_max))  # (series, p_max lead-in + time)
    for t in range(total):
        ar = np.einsum("np,np->n", phi, x[:, t + p_max - 1 :: -1][:, :p_max])  # lags 1..p
        ma = np.einsum("nq,nq->n", theta, noise[:, t + q_max - 1 :: -1][:, :q_max])
        x[:, t + p_max] = ar + ma + noise[:, t + q_max]
    return x[:, p_max + burn_in :], phi, theta


def mixture_series(n_series: int, length: int, seed: int | np.random.Generator = 0, k_max: int = 5) -> np.ndarray:
    """I.i.d. mixture draws ``(n_series, length)``: per series k components, normal or uniform."""
    rng = np.random.default_rng(seed)
    k = rng.integers(1, k_max + 1, size=n_series)
    weights = rng.uniform(0, 1, size=(n_series, k_max)) * (np.arange(k_max) < k[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    mu = rng.standard_normal((n_series, k_max))
    sigma = rng.uniform(0, 1, size=(n_series, k_max))
    is_normal = rng.uniform(size=(n_series, k_max)) < 0.5
    # Component of every point: inverse-CDF sampling on the cumulative weights.
    u = rng.uniform(size=(n_series, length, 1))
    comp = (u > np.cumsum(weights, axis=1)[:, None, :]).sum(-1).clip(max=k_max - 1)  # (series, time)
    m, s, normal = (np.take_along_axis(a, comp, axis=1) for a in (mu, sigma, is_normal))
    return np.where(normal, m + s * rng.standard_normal(comp.shape), m * rng.uniform(size=comp.shape))


def s2_series(
    n_series: int, length: int, seed: int = 0, p_mixture: float = 0.5, k_max: int = 5, p_max: int = 3, q_max: int = 3
) -> np.ndarray:
    """S2 series ``(n_series, length)``: mixture draws with probability ``p_mixture``, else stationary ARMA."""
    if not 0.0 <= p_mixture <= 0.5:
        raise ValueError(f"p_mixture={p_mixture!r}; expected a probability in [0, 0.5]")
    for name, value in (
        ("n_series", n_series),
        ("length", length),
        ("k_max", k_max),
        ("p_max", p_max),
        ("q_max", q_max),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive int")
    rng = np.random.default_rng(seed)
    use_mixture = rng.uniform(size=n_series) < p_mixture
    out = np.empty((n_series, length))
    out[use_mixture] = mixture_series(int(use_mixture.sum()), length, rng, k_max)
    out[~use_mixture] = arma_series(int((~use_mixture).sum()), length, rng, p_max, q_max)[0]
    return out


def add_trend_seasonality(
    series: np.ndarray,
    seed: int = 0,
    slope_scale: float = 0.01,
    periods: tuple[int, ...] = (24, 168),
    amplitude_scale: float = 1.0,
) -> np.ndarray:
    """``series (n, length)`` plus a random linear trend and random-phase sinusoids of the given periods."""
    rng = np.random.default_rng(seed)
    n, length = series.shape
    t = np.arange(length)  # (time,)
    out = series + rng.normal(0, slope_scale, size=(n, 1)) * t
    for period in periods:
        amplitude = rng.uniform(0, amplitude_scale, size=(n, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        out = out + amplitude * np.sin(2 * np.pi * t / period + phase)
    return out


def synthetic_frame(
    n_series: int = 8,
    length: int = 14400,
    seed: int = 0,
    trend_seasonality: bool = True,
    freq: str = "h",
    start: str = "2020-01-01",
) -> pd.DataFrame:
    """An LSF-style frame (``date`` + columns ``s0..``) of S2 series, what ``load_lsf("synthetic")`` returns."""
    values = s2_series(n_series, length, seed)
    if trend_seasonality:
        values = add_trend_seasonality(values, seed + 1)
    frame = pd.DataFrame(values.T, columns=[f"s{i}" for i in range(n_series)])
    frame.insert(0, "date", pd.date_range(start, periods=length, freq=freq))
    return frame
