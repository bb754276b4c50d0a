"""A broader synthetic pretraining mix for the embedded tiny MOIRAI: numpy only, seeded, reproducible.

Families (each a function ``(rng, n, length) -> (n, length)`` float64):

- ``kernel``: KernelSynth (Ansari et al., *Chronos*, 2024): a random sum/product of 1-5 kernels from a
  bank (linear, RBF, periodic at several periods, rational quadratic, white noise, constant), then one
  draw of the Gaussian process with that kernel.
- ``walk``: random walks with drift and level shifts (independent increments: the last value, plus the
  drift, is the optimal forecast, and the model must learn to match it), integrated AR(1) (ARIMA(1,1,0))
  and doubly integrated noise (smooth stochastic trends).
- ``seasonal_mult``: a positive level (exponential trend) times ``1 + a * profile`` times log-normal
  noise: the seasonal swing grows with the level.
- ``intermittent``: zero most of the time; demand sizes >= 1 (Croston's setting).
- ``count``: Poisson / negative-binomial counts around a seasonal, trending rate.

Held out (never in the training weights, for the zero-shot report): ``kernel_heldout`` (KernelSynth with
periodic kernels only at `HELDOUT_PERIODS`, none of which is in `KERNEL_PERIODS`) and ``walk_heldout``
(driftless walks with Student-t increments and level shifts: a martingale, so the last value is the
optimal point forecast under MSE).

**Sampling the Gaussian process.** Chronos draws with a dense ``T x T`` covariance (scikit-learn's
``sample_y``: an SVD/Cholesky, O(T^3)); at T = 4096 that is ~10^11 flops per series, seconds each on a
CPU. Every kernel in the bank is either stationary or a rank-one feature map (linear, constant), so a
composition expands into terms ``w * phi(t) * g(t)`` with ``phi`` a product of linear features and ``g``
a Gaussian process with a *stationary* product kernel (``k1*k2`` of stationary kernels is stationary).
Each ``g`` is drawn exactly by **circulant embedding** (Dietrich & Newsam, 1997): the covariance at lags
``0..m/2`` is wrapped into a circulant matrix of size ``m >= 2T`` whose eigenvalues are one FFT, and a
sample is one more FFT: O(m log m), milliseconds at T = 4096. It is exact when those eigenvalues are
non-negative; ``m`` is a multiple of the term's periods (so a periodic covariance wraps smoothly) and
long-range kernels are padded further; the few negative eigenvalues left are set to zero, and
`clipped_share` measures what that drops (the tests bound it for every kernel of the bank). Random
Fourier features would also be O(T) per feature, but are only Gaussian in the limit of many features.

Reproducible: ``PretrainMix.sample(n, length, seed)`` derives one generator per family from the seed
(``numpy.random.default_rng(seed).spawn``), so a draw depends on the seed, ``n``, ``length`` and the
weights only: never on time, machine load or process layout. Bitwise equal on the same numpy build;
numpy may dispatch ``exp``/``sin``/FFT to other SIMD kernels on another CPU and round last bits.

All data here are generated: no third-party data set, no benchmark series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Periods (steps) of the periodic kernels in training: hourly / 15-min / daily data's cycles, short ones.
KERNEL_PERIODS = (4, 7, 12, 24, 48, 52, 96, 168, 365, 672)
#: Periods only the held-out kernel family uses (not in KERNEL_PERIODS, nor the pretraining script's grid).
HELDOUT_PERIODS = (10, 60, 200)
#: Largest circulant used to make a product of periodic kernels wrap exactly (lcm of the periods); beyond
#: it (three or more periods multiplied) negative eigenvalues are clipped.
MAX_PERIODIC_EMBEDDING = 1 << 18


# -- KernelSynth ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stationary:
    """One stationary kernel of the bank: ``kind`` in rbf / periodic / rq / white, lengths in steps."""

    kind: str
    lengthscale: float = 1.0
    period: int = 0
    alpha: float = 1.0
    variance: float = 1.0

    def __call__(self, lag: np.ndarray) -> np.ndarray:
        lag = np.asarray(lag, dtype=np.float64)
        if self.kind == "rbf":
            return self.variance * np.exp(-0.5 * (lag / self.lengthscale) ** 2)
        if self.kind == "rq":
            return self.variance * (1 + lag**2 / (2 * self.alpha * self.lengthscale**2)) ** -self.alpha
        if self.kind == "periodic":  # ExpSineSquared, as scikit-learn's
            return self.variance * np.exp(-2 * np.sin(np.pi * lag / self.period) ** 2 / self.lengthscale**2)
        if self.kind == "white":
            return self.variance * (lag == 0)
        raise ValueError(f"Stationary.kind={self.kind!r}: expected rbf, rq, periodic or white")


@dataclass(frozen=True)
class Term:
    """``weight * prod_i (t/T - offsets[i]) * g(t)`` with ``g ~ GP(0, prod(factors))`` (or g = one N(0,1)
    constant when there are no stationary factors)."""

    weight: float
    offsets: tuple[float, ...] = ()
    factors: tuple[Stationary, ...] = ()


def kernel_bank_entry(rng: np.random.Generator, length: int, periods: Sequence[int]) -> list[Term]:
    """One random kernel of the bank, as the terms of its expansion (Chronos' bank, lengths in steps)."""
    kind = rng.choice(["linear", "rbf", "periodic", "rq", "white", "constant"], p=[0.15, 0.15, 0.35, 0.15, 0.1, 0.1])
    if kind == "linear":  # DotProduct: sigma0^2 + (x - c)(x' - c), x = t / T
        sigma0 = float(rng.choice([0.0, 1.0, 10.0]))
        terms = [Term(1.0, (float(rng.uniform(0, 1)),))]
        return terms + ([Term(sigma0**2)] if sigma0 > 0 else [])
    if kind == "constant":
        return [Term(float(rng.uniform(0.1, 2.0)))]
    if kind == "white":
        return [Term(1.0, (), (Stationary("white", variance=float(rng.choice([0.01, 0.1, 1.0]))),))]
    if kind == "periodic":
        k = Stationary("periodic", lengthscale=float(rng.choice([0.5, 1.0, 2.0])), period=int(rng.choice(periods)))
    else:  # rbf, rq: from a few steps to a quarter of the series
        scale = max(1.0, float(rng.choice([0.005, 0.02, 0.1, 0.25])) * length)
        alpha = float(rng.choice([0.1, 1.0, 10.0]))
        k = Stationary(str(kind), lengthscale=scale, alpha=alpha)
    return [Term(1.0, (), (k,))]


def random_kernel(rng: np.random.Generator, length: int, periods: Sequence[int], max_kernels: int = 5) -> list[Term]:
    """1..max_kernels bank kernels joined left to right by a random + or *, expanded into terms."""
    terms = kernel_bank_entry(rng, length, periods)
    for _ in range(int(rng.integers(1, max_kernels + 1)) - 1):
        other = kernel_bank_entry(rng, length, periods)
        if rng.uniform() < 0.5:
            terms = terms + other
        else:  # (sum a_i)(sum b_j) = sum a_i b_j; a product of terms multiplies weights, features, kernels
            terms = [
                Term(a.weight * b.weight, a.offsets + b.offsets, a.factors + b.factors) for a in terms for b in other
            ]
    return terms


def _embedding_size(length: int, factors: Sequence[Stationary]) -> int:
    """Circulant size m >= 2T: a multiple of the periods (smooth wrap), padded for long-range kernels."""
    reach = max(
        [
            4 * f.lengthscale * (1 if f.kind == "rbf" else 1 + 3 / math.sqrt(f.alpha))
            for f in factors
            if f.kind in ("rbf", "rq")
        ]
        or [0]
    )
    base = max(2 * length, int(2 * reach))
    periods = [f.period for f in factors if f.kind == "periodic"]
    if periods:
        lcm = math.lcm(*periods)
        if lcm <= max(8 * length, MAX_PERIODIC_EMBEDDING):
            return lcm * math.ceil(base / lcm)
    return 1 << (base - 1).bit_length()


def circulant_spectrum(length: int, factors: Sequence[Stationary]) -> tuple[np.ndarray, float]:
    """Eigenvalues (m,) of the circulant embedding of ``prod(factors)`` and the share of |eigenvalue| mass
    that was negative (set to zero)."""
    m = _embedding_size(length, factors)
    lag = np.minimum(np.arange(m), m - np.arange(m))  # wrapped lags 0..m/2..1
    cov = np.ones(m)
    for f in factors:
        cov = cov * f(lag)
    eig = np.fft.fft(cov).real  # symmetric, real cov -> real spectrum
    negative = -eig[eig < 0].sum()
    return np.maximum(eig, 0.0), float(negative / max(np.abs(eig).sum(), 1e-300))


def clipped_share(length: int, factors: Sequence[Stationary]) -> float:
    """How far the circulant embedding of ``prod(factors)`` is from exact (0 = exact)."""
    return circulant_spectrum(length, factors)[1]


def stationary_gp(rng: np.random.Generator, n: int, length: int, factors: Sequence[Stationary]) -> np.ndarray:
    """(n, length) draws of a zero-mean GP with the stationary kernel ``prod(factors)`` (circulant embedding)."""
    eig, _ = circulant_spectrum(length, factors)
    m = len(eig)
    z = rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))
    x = np.fft.fft(np.sqrt(eig / m) * z, axis=-1)  # real and imaginary parts: two independent draws
    return x.real[:, :length]


def sample_kernel(rng: np.random.Generator, terms: Sequence[Term], n: int, length: int) -> np.ndarray:
    """(n, length) draws of the GP with the kernel whose expansion is ``terms`` (independent terms add)."""
    x = np.arange(length) / length
    out = np.zeros((n, length))
    for term in terms:
        feature = np.ones(length)
        for c in term.offsets:
            feature = feature * (x - c)
        g = stationary_gp(rng, n, length, term.factors) if term.factors else rng.standard_normal((n, 1))
        out += math.sqrt(term.weight) * feature * g
    return out


def kernel_synth(
    rng: np.random.Generator, n: int, length: int, periods: Sequence[int] = KERNEL_PERIODS, max_kernels: int = 5
) -> np.ndarray:
    """(n, length) KernelSynth series, a new random kernel composition per series."""
    return np.stack(
        [sample_kernel(rng, random_kernel(rng, length, periods, max_kernels), 1, length)[0] for _ in range(n)]
    )


# -- random walks and integrated processes ---------------------------------------------------------
def random_walk(
    rng: np.random.Generator, n: int, length: int, drift: bool = True, heavy: bool = False, jumps: bool = True
) -> np.ndarray:
    """(n, length) walks whose increments are i.i.d. per series: unit noise (Gaussian, or Student-t(3)
    scaled to unit variance), a constant drift in half the series, rare level shifts (compound Poisson,
    zero mean) in half; started at a random level."""
    eps = rng.standard_t(3, (n, length)) / math.sqrt(3) if heavy else rng.standard_normal((n, length))
    mu = rng.normal(0, 0.05, (n, 1)) * (rng.uniform(size=(n, 1)) < 0.5) if drift else 0.0
    if jumps:
        rate = rng.uniform(0, 0.01, (n, 1)) * (rng.uniform(size=(n, 1)) < 0.5)
        eps = eps + (rng.uniform(size=(n, length)) < rate) * rng.normal(0, 10, (n, length))
    return rng.normal(0, 5, (n, 1)) + np.cumsum(eps + mu, axis=1)


def integrated_ar(rng: np.random.Generator, n: int, length: int, phi: np.ndarray | float | None = None) -> np.ndarray:
    """(n, length) ARIMA(1,1,0): the increments are AR(1) with coefficient ``phi`` (drawn in [-0.5, 0.9])."""
    phi = rng.uniform(-0.5, 0.9, (n, 1)) if phi is None else np.broadcast_to(np.asarray(phi, float), (n, 1))
    eps = rng.standard_normal((n, length))
    inc = np.empty((n, length))
    inc[:, 0] = eps[:, 0] / np.sqrt(1 - phi[:, 0] ** 2)  # stationary start
    for t in range(1, length):  # the recursion is over time only, vectorised over series
        inc[:, t] = phi[:, 0] * inc[:, t - 1] + eps[:, t]
    return np.cumsum(inc, axis=1)


def walks(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """The ``walk`` family: 60% random walks (drift, level shifts), 30% ARIMA(1,1,0), 10% I(2)."""
    kind = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    out = np.empty((n, length))
    for k, make in enumerate(
        (
            random_walk,
            integrated_ar,
            lambda r, m, t: np.cumsum(np.cumsum(r.standard_normal((m, t)), 1), 1) * r.uniform(0.01, 0.1, (m, 1)),
        )
    ):
        rows = np.flatnonzero(kind == k)
        if rows.size:
            out[rows] = make(rng, rows.size, length)
    return out


def heldout_walks(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """Driftless walks, Student-t(3) increments, level shifts: a martingale (last value is optimal)."""
    return random_walk(rng, n, length, drift=False, heavy=True, jumps=True)


# -- multiplicative seasonality, intermittent and count series -------------------------------------
def seasonal_profile(rng: np.random.Generator, n: int, length: int, periods: Sequence[int]) -> np.ndarray:
    """(n, length) zero-mean periodic shapes (1-4 random harmonics of one period), max |value| = 1."""
    t = np.arange(length)
    period = rng.choice(np.asarray(periods), (n, 1)).astype(float)
    shape = np.zeros((n, length))
    for h in range(1, 5):
        on = rng.uniform(size=(n, 1)) < (1.0 if h == 1 else 0.5)
        shape += (
            on * rng.normal(0, 1, (n, 1)) / h * np.sin(2 * np.pi * h * t / period + rng.uniform(0, 2 * np.pi, (n, 1)))
        )
    shape -= shape.mean(1, keepdims=True)
    return shape / np.maximum(np.abs(shape).max(1, keepdims=True), 1e-12)


def multiplicative_seasonal(
    rng: np.random.Generator, n: int, length: int, periods: Sequence[int] = KERNEL_PERIODS
) -> np.ndarray:
    """(n, length) positive series ``level(t) * (1 + a * profile(t)) * exp(noise)``, the level an
    exponential trend (log-level changes by up to +-3 over the series) with a slow random wobble."""
    t = np.arange(length) / length
    log_level = rng.uniform(-3, 3, (n, 1)) * t + np.cumsum(rng.normal(0, 0.3 / math.sqrt(length), (n, length)), 1)
    amplitude = rng.uniform(0.1, 0.8, (n, 1))
    noise = rng.normal(0, 1, (n, length)) * rng.uniform(0.01, 0.1, (n, 1))
    base = 10 ** rng.uniform(0, 3, (n, 1))
    return base * np.exp(log_level + noise) * (1 + amplitude * seasonal_profile(rng, n, length, periods))


def intermittent(rng: np.random.Generator, n: int, length: int, zero_fraction: float | None = None) -> np.ndarray:
    """(n, length) intermittent demand: a demand occurs with probability ``1 - zero_fraction`` (drawn in
    [0.3, 0.95] per series unless given), its size is 1 + Poisson or 1 + negative binomial, so every
    zero is a step without demand."""
    p_zero = rng.uniform(0.3, 0.95, (n, 1)) if zero_fraction is None else np.full((n, 1), float(zero_fraction))
    if not np.all((0 <= p_zero) & (p_zero <= 1)):
        raise ValueError(f"zero_fraction={zero_fraction}: expected a probability in [0, 1]")
    occurs = rng.uniform(size=(n, length)) >= p_zero
    mean = 10 ** rng.uniform(-0.5, 1.5, (n, 1))
    r = rng.uniform(0.5, 5, (n, 1))
    negbin = rng.negative_binomial(r, r / (r + mean), (n, length))
    size = 1 + np.where(rng.uniform(size=(n, 1)) < 0.5, rng.poisson(mean, (n, length)), negbin)
    return (occurs * size).astype(np.float64)


def counts(
    rng: np.random.Generator,
    n: int,
    length: int,
    rate: float | None = None,
    dispersion: float | None = None,
    periods: Sequence[int] = KERNEL_PERIODS,
) -> np.ndarray:
    """(n, length) counts around a rate ``exp(log base + a * profile + trend)`` (or a constant ``rate``):
    Poisson (``dispersion`` None, half the series when not given) or negative binomial with variance
    ``mu + mu^2 / dispersion``."""
    if rate is None:
        t = np.arange(length) / length
        log_rate = rng.uniform(np.log(0.3), np.log(50), (n, 1)) + rng.uniform(-1, 1, (n, 1)) * t
        log_rate = log_rate + rng.uniform(0, 1, (n, 1)) * seasonal_profile(rng, n, length, periods)
        mu = np.exp(log_rate)
    else:
        mu = np.full((n, length), float(rate))
    if dispersion is None:
        r = np.where(rng.uniform(size=(n, 1)) < 0.5, np.inf, rng.uniform(0.5, 10, (n, 1)))
    else:
        r = np.full((n, 1), float(dispersion))
    finite_r = np.where(np.isinf(r), 1.0, r)
    negbin = rng.negative_binomial(finite_r, finite_r / (finite_r + mu))
    return np.where(np.isinf(r), rng.poisson(mu), negbin).astype(np.float64)


# -- the mix ---------------------------------------------------------------------------------------
Generator = Callable[[np.random.Generator, int, int], np.ndarray]

FAMILIES: dict[str, Generator] = {
    "kernel": kernel_synth,
    "walk": walks,
    "seasonal_mult": multiplicative_seasonal,
    "intermittent": intermittent,
    "count": counts,
    "kernel_heldout": lambda rng, n, length: kernel_synth(rng, n, length, periods=HELDOUT_PERIODS),
    "walk_heldout": heldout_walks,
}
#: Families kept out of every training mix, for the zero-shot report.
HELDOUT_FAMILIES = ("kernel_heldout", "walk_heldout")
#: Non-negative integer families: keep them unshifted and unscaled (MOIRAI's NegBin component).
INTEGER_FAMILIES = ("intermittent", "count")
TRAIN_WEIGHTS = {"kernel": 0.4, "walk": 0.25, "seasonal_mult": 0.15, "intermittent": 0.1, "count": 0.1}


@dataclass(frozen=True)
class MixSample:
    values: np.ndarray  # (n, length) float64
    family: np.ndarray  # (n,) family name of each row


@dataclass(frozen=True)
class PretrainMix:
    """Families and their relative weights; ``sample(n, length, seed)`` draws a reproducible batch."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(TRAIN_WEIGHTS))

    def __post_init__(self):
        unknown = sorted(set(self.weights) - set(FAMILIES))
        if unknown:
            raise ValueError(f"PretrainMix.weights: unknown families {unknown}; expected some of {sorted(FAMILIES)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError(f"PretrainMix.weights={dict(self.weights)}: expected non-negative weights, not all zero")

    @classmethod
    def heldout(cls) -> PretrainMix:
        """The held-out families only (zero-shot report)."""
        return cls({name: 1.0 for name in HELDOUT_FAMILIES})

    @property
    def names(self) -> list[str]:
        return [name for name, w in self.weights.items() if w > 0]

    def sample(self, n: int, length: int, seed: int | Sequence[int]) -> MixSample:
        """``n`` series of ``length`` steps; the family of each row drawn by weight, each family's series
        from its own generator spawned from ``seed``."""
        if n < 0 or length < 1:
            raise ValueError(f"PretrainMix.sample(n={n}, length={length}): expected n >= 0 and length >= 1")
        names = self.names
        rng = np.random.default_rng(seed)
        p = np.array([self.weights[name] for name in names], dtype=float)
        which = rng.choice(len(names), n, p=p / p.sum())
        children = rng.spawn(len(names))
        values = np.empty((n, length))
        for k, (name, child) in enumerate(zip(names, children)):
            rows = np.flatnonzero(which == k)
            if rows.size:
                values[rows] = FAMILIES[name](child, rows.size, length)
        return MixSample(values, np.asarray(names, dtype=object)[which])
