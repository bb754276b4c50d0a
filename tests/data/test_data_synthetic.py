"""The S2 generator: seeded, stationary ARMA, mixtures, compositions, usable by name."""

import numpy as np
import pytest

from msft.data import arma_series, load_lsf, prepare_lsf, s2_series
from msft.data.synthetic import is_stationary, mixture_series


def test_seeded_and_shaped():
    a, b, c = s2_series(16, 300, seed=3), s2_series(16, 300, seed=3), s2_series(16, 300, seed=4)
    assert a.shape == (16, 300) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_arma_coefficients_are_stationary():
    _, phi, theta = arma_series(200, 10, seed=0, p_max=4)
    assert is_stationary(phi).all()
    companion_ok = []
    for row in phi:  # the exact condition, independently: companion-matrix eigenvalues inside |z| = 1
        p = len(row)
        companion = np.eye(p, k=-1)
        companion[0] = row
        companion_ok.append(np.abs(np.linalg.eigvals(companion)).max() < 1)
    assert all(companion_ok)
    assert (np.abs(theta) <= 1).all()
    assert not is_stationary(np.array([[1.2, 0.0]]))[0] and not is_stationary(np.array([[0.5, 0.6]]))[0]


def test_arma_series_are_stationary_in_distribution():
    x, phi, _ = arma_series(400, 4000, seed=1)
    first, second = x[:, :2000], x[:, 2000:]
    # Stationary: the two halves have the same spread (no drift / explosion); pooled over series.
    ratio = second.std(axis=1) / first.std(axis=1)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert np.abs(x).max() < 1e3
    assert np.abs(first.mean(1) - second.mean(1)).mean() < 0.5 * x.std(1).mean()


def test_mixture_draws_are_iid_from_their_components():
    x = mixture_series(5, 20000, seed=2)
    assert x.shape == (5, 20000)
    halves = np.split(x, 2, axis=1)
    np.testing.assert_allclose(halves[0].mean(1), halves[1].mean(1), atol=0.05)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="p_mixture"):
        s2_series(2, 10, p_mixture=0.8)
    with pytest.raises(ValueError, match="length"):
        s2_series(2, 0)


def test_synthetic_by_name():
    frame = load_lsf("synthetic")
    assert frame.columns[0] == "date" and frame.shape == (14400, 9)
    data = prepare_lsf("synthetic", 96)
    assert data.borders["test"] == (11520, 14400)
