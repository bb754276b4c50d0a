"""The broader pretraining mix: seeded, finite, and each family has the statistics it claims."""

import itertools

import numpy as np
import pytest

from msft.data import pretrain_mix as pm
from msft.data.pretrain_mix import PretrainMix, Stationary, Term


def acf(x: np.ndarray, lag: int) -> np.ndarray:
    """(series,) correlation of each row with itself ``lag`` steps later."""
    a, b = x[:, lag:] - x[:, lag:].mean(1, keepdims=True), x[:, :-lag] - x[:, :-lag].mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def test_sample_is_seeded_and_shaped():
    mix = PretrainMix()
    a, b, c = mix.sample(40, 300, seed=(3, 1)), mix.sample(40, 300, seed=(3, 1)), mix.sample(40, 300, seed=(3, 2))
    assert a.values.shape == (40, 300) and a.family.shape == (40,)
    np.testing.assert_array_equal(a.values, b.values)  # the same numpy operations: bitwise equal
    np.testing.assert_array_equal(a.family, b.family)
    assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize("name", sorted(pm.FAMILIES))
@pytest.mark.parametrize("length", [17, 4096])
def test_every_family_is_finite_and_seeded(name, length):
    make = pm.FAMILIES[name]
    x = make(np.random.default_rng(7), 6, length)
    assert x.shape == (6, length) and x.dtype == np.float64 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, make(np.random.default_rng(7), 6, length))


def test_family_weights_and_validation():
    sample = PretrainMix({"walk": 3.0, "count": 1.0}).sample(2000, 32, seed=0)
    assert set(sample.family) == {"walk", "count"}
    assert np.mean(sample.family == "walk") == pytest.approx(0.75, abs=0.04)  # binomial sd 0.01
    counts = sample.values[sample.family == "count"]
    assert (counts >= 0).all() and (counts == np.round(counts)).all()
    with pytest.raises(ValueError, match="unknown families"):
        PretrainMix({"ETTh1": 1.0})
    with pytest.raises(ValueError, match="weights"):
        PretrainMix({"walk": 0.0})


def test_held_out_families_are_not_trained_on():
    assert not set(pm.HELDOUT_FAMILIES) & set(pm.TRAIN_WEIGHTS)
    assert not set(pm.HELDOUT_PERIODS) & set(pm.KERNEL_PERIODS)
    assert set(PretrainMix.heldout().names) == set(pm.HELDOUT_FAMILIES)


def test_held_out_kernels_use_only_held_out_periods(monkeypatch):
    seen = []
    real = pm.stationary_gp

    def spy(rng, n, length, factors):
        seen.extend(f.period for f in factors if f.kind == "periodic")
        return real(rng, n, length, factors)

    monkeypatch.setattr(pm, "stationary_gp", spy)
    pm.FAMILIES["kernel_heldout"](np.random.default_rng(0), 60, 64)
    assert seen and set(seen) <= set(pm.HELDOUT_PERIODS)
    seen.clear()
    pm.FAMILIES["kernel"](np.random.default_rng(0), 60, 64)
    assert seen and set(seen) <= set(pm.KERNEL_PERIODS)


def _bank():
    kernels = [
        Stationary("periodic", lengthscale=s, period=p)
        for p in pm.KERNEL_PERIODS + pm.HELDOUT_PERIODS
        for s in (0.5, 2.0)
    ]
    for frac in (0.005, 0.25):
        kernels += [Stationary("rbf", lengthscale=frac * 4096)]
        kernels += [Stationary("rq", lengthscale=frac * 4096, alpha=a) for a in (0.1, 10.0)]
    return kernels


def test_circulant_embedding_is_nearly_exact_for_the_bank():
    """Every bank kernel alone and every product of two periodic kernels at T = 4096: what clipping the
    negative eigenvalues drops is below 0.1% of the spectrum (a wrap that is not a multiple of the
    period drops ~20%)."""
    singles = [(k,) for k in _bank()]
    pairs = itertools.combinations([Stationary("periodic", period=p) for p in pm.KERNEL_PERIODS], 2)
    worst = max(pm.clipped_share(4096, factors) for factors in [*singles, *pairs])
    assert worst < 1e-3
    assert pm.clipped_share(4096, [Stationary("periodic", period=24)]) < 1e-6


@pytest.mark.parametrize(
    "kernel", [Stationary("rbf", lengthscale=8.0), Stationary("periodic", lengthscale=1.0, period=12)]
)
def test_gp_draws_have_the_kernel_covariance(kernel):
    x = pm.stationary_gp(np.random.default_rng(0), 4000, 48, [kernel])
    empirical = x.T @ x / len(x)  # zero-mean process
    lag = np.abs(np.arange(48)[:, None] - np.arange(48)[None, :])
    # Sampling error of a covariance estimate from 4000 draws: sd <= sqrt(2/4000) = 0.022; 6 sd.
    np.testing.assert_allclose(empirical, kernel(lag), atol=0.14)


def test_linear_term_scales_the_process():
    """A linear x stationary product term is (t/T - c) * g(t): zero where the feature is zero."""
    x = pm.sample_kernel(np.random.default_rng(1), [Term(1.0, (0.5,), (Stationary("rbf", lengthscale=4.0),))], 3, 64)
    np.testing.assert_array_equal(x[:, 32], 0.0)
    assert (np.abs(x[:, 8]) > 0).all()


def test_periodic_kernel_series_repeat_at_their_period():
    x = pm.sample_kernel(np.random.default_rng(2), [Term(1.0, (), (Stationary("periodic", period=24),))], 64, 480)
    assert acf(x, 24).min() > 0.999
    # Exactly periodic: the covariance at lag 24 equals the variance, and the embedding is exact there.
    assert np.abs(x[:, 24:] - x[:, :-24]).max() < 1e-6 * np.abs(x).max()
    assert acf(x, 12).mean() < 0.8  # half a period is not a repeat


def test_random_walk_increments_are_uncorrelated():
    rng = np.random.default_rng(3)
    inc = np.diff(pm.random_walk(rng, 200, 1000), axis=1)  # drift and level shifts included
    # sd of one series' lag-1 acf ~ 1/sqrt(1000); of the mean over 200 series ~ 0.0023.
    assert abs(acf(inc, 1).mean()) < 0.012
    # The test can tell: integrated AR(1) increments are correlated at phi.
    ar = np.diff(pm.integrated_ar(rng, 200, 1000, phi=0.6), axis=1)
    assert acf(ar, 1).mean() == pytest.approx(0.6, abs=0.03)


def test_held_out_walks_have_no_drift():
    inc = np.diff(pm.heldout_walks(np.random.default_rng(4), 200, 1000), axis=1)
    t = inc.mean(1) / (inc.std(1) / np.sqrt(inc.shape[1]))  # per-series t statistic of the mean increment
    assert np.mean(np.abs(t) > 3) < 0.03


def test_intermittent_series_have_the_asked_zero_fraction():
    x = pm.intermittent(np.random.default_rng(5), 64, 1000, zero_fraction=0.8)
    assert np.mean(x == 0) == pytest.approx(0.8, abs=0.01)  # binomial sd 0.0016
    assert (x[x != 0] >= 1).all() and (x == np.round(x)).all()
    with pytest.raises(ValueError, match="zero_fraction"):
        pm.intermittent(np.random.default_rng(5), 2, 10, zero_fraction=1.5)


@pytest.mark.parametrize("dispersion, variance", [(np.inf, 3.0), (2.0, 3.0 + 9.0 / 2.0)])
def test_counts_have_the_asked_dispersion(dispersion, variance):
    x = pm.counts(np.random.default_rng(6), 32, 2000, rate=3.0, dispersion=dispersion)
    assert (x == np.round(x)).all() and (x >= 0).all()
    assert x.mean() == pytest.approx(3.0, rel=0.02)
    assert x.var() == pytest.approx(variance, rel=0.05)


def test_multiplicative_seasonality_grows_with_the_level():
    x = pm.multiplicative_seasonal(np.random.default_rng(8), 64, 24 * 40, periods=(24,))
    cycles = x.reshape(64, 40, 24)
    mean, spread = cycles.mean(2), cycles.std(2)
    moving = mean.max(1) / mean.min(1) > 3  # the level changes enough to see it
    assert moving.sum() >= 16
    corr = [np.corrcoef(np.log(m), np.log(s))[0, 1] for m, s in zip(mean[moving], spread[moving])]
    assert np.median(corr) > 0.9
    assert (x > 0).all()
