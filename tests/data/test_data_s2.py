"""S2 series-symbol data from the authors' generator: seeded, cached, symbols that reproduce their series."""

import numpy as np
import pytest

pytest.importorskip("s2generator")
from msft.data.s2 import evaluate_symbol, generate_pool, load_pool, pool_dir  # noqa: E402
from tests.conftest import TINY_S2  # noqa: E402


def test_pool_shape_and_symbols(tiny_s2_cache):
    pool = load_pool(**{k: TINY_S2[k] for k in ("n", "length", "seed", "time_limit")}, cache_dir=tiny_s2_cache)
    assert len(pool) == 4 and pool.excitation.shape == pool.response.shape == (4, 128)
    assert np.isfinite(pool.excitation).all() and np.isfinite(pool.response).all()
    assert all(isinstance(s, str) and "x_0" in s for s in pool.symbol)
    assert np.all(np.diff(pool.draw) > 0) and not set(pool.draw) & set(pool.skipped)


def test_same_seed_same_pool_whatever_the_shards(tiny_s2_cache, tmp_path):
    """Draw i has its own seed, so another shard layout (and a resumed generation) gives the same pool."""
    first = load_pool(4, 128, 0, time_limit=TINY_S2["time_limit"], cache_dir=tiny_s2_cache)
    generate_pool(2, 128, 0, time_limit=TINY_S2["time_limit"], shard_size=3, cache_dir=tmp_path)  # then extended to 4
    again = generate_pool(4, 128, 0, time_limit=TINY_S2["time_limit"], shard_size=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.response, again.response)
    np.testing.assert_array_equal(first.excitation, again.excitation)
    assert first.symbol == again.symbol and list(first.draw) == list(again.draw)
    assert sorted(
        p.name for p in pool_dir(128, 0, cache_dir=tmp_path, time_limit=TINY_S2["time_limit"]).glob("shard_*.npz")
    )


def test_recorded_symbol_reproduces_the_response(tiny_s2_cache):
    """Y is the package's z-scored f(X) times a random scale: evaluating the recorded string on X with the
    package's own parser gives Y up to that normalisation (for symbols without a random leaf)."""
    pool = load_pool(4, 128, 0, time_limit=TINY_S2["time_limit"], cache_dir=tiny_s2_cache)
    checked = 0
    for symbol, x, y in zip(pool.symbol, pool.excitation, pool.response):
        if "rand" in symbol:
            continue
        f = evaluate_symbol(symbol, x)
        z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
        np.testing.assert_allclose(z(f), z(y.astype(np.float64)), atol=1e-3)
        checked += 1
    assert checked >= 1


def test_different_seed_different_pool(tiny_s2_cache, tmp_path):
    a = load_pool(1, 128, 0, time_limit=TINY_S2["time_limit"], cache_dir=tiny_s2_cache)
    b = generate_pool(1, 128, 1, time_limit=TINY_S2["time_limit"], shard_size=1, cache_dir=tmp_path)
    assert not np.allclose(a.response, b.response)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n=0"),
        ({"length": 4}, "length=4"),
        ({"time_limit": 0}, "time_limit=0"),
        ({"seed": -1}, "seed=-1"),
        ({"series_params": {"not_a_param": 1}}, "series_params"),
        ({"symbol_params": {"prob_rand": 2.0}}, "symbol_params.*Probability"),
    ],
)
def test_bad_parameters_are_rejected(tmp_path, kwargs, match):
    args = {"n": 1, "length": 64, "seed": 0, "cache_dir": tmp_path} | kwargs
    with pytest.raises(ValueError, match=match):
        generate_pool(**args)


def test_missing_pool_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate_pool"):
        load_pool(4, 128, 0, cache_dir=tmp_path)
    assert len(load_pool(4, 128, 0, cache_dir=tmp_path, partial=True)) == 0
