"""S2 series-symbol data from the authors' generator: seeded, cached, symbols that reproduce their series."""

import time

import numpy as np
import pytest

pytest.importorskip("s2generator")
from s2generator.symbol import Generator  # noqa: E402

from msft.data.s2 import S2DrawTimeout, evaluate_symbol, generate_pool, load_pool, pool_dir  # noqa: E402
from tests.conftest import TINY_S2  # noqa: E402


def test_pool_shape_and_symbols(tiny_s2_cache):
    pool = load_pool(**{k: TINY_S2[k] for k in ("n", "length", "seed")}, cache_dir=tiny_s2_cache)
    assert len(pool) == 4 and pool.excitation.shape == pool.response.shape == (4, 128)
    assert np.isfinite(pool.excitation).all() and np.isfinite(pool.response).all()
    assert all(isinstance(s, str) and "x_0" in s for s in pool.symbol)
    assert np.all(np.diff(pool.draw) > 0) and not set(pool.draw) & set(pool.skipped)


def assert_same_pool(a, b):
    # Bitwise: the same draws by the same code on the same machine (only their order of work and
    # process differ), so the same operations on the same arrays.
    np.testing.assert_array_equal(a.response, b.response)
    np.testing.assert_array_equal(a.excitation, b.excitation)
    assert a.symbol == b.symbol and list(a.draw) == list(b.draw) and a.skipped == b.skipped


def test_same_seed_same_pool_whatever_the_shards(tiny_s2_cache, tmp_path):
    """Draw i has its own seed, so another shard layout (and a resumed generation) gives the same pool."""
    first = load_pool(4, 128, 0, cache_dir=tiny_s2_cache)
    generate_pool(2, 128, 0, shard_size=3, cache_dir=tmp_path)  # then extended to 4
    again = generate_pool(4, 128, 0, shard_size=3, cache_dir=tmp_path)
    assert_same_pool(first, again)
    assert sorted(p.name for p in pool_dir(128, 0, cache_dir=tmp_path).glob("shard_*.npz"))


def _burn_cpu(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def test_which_draws_are_kept_does_not_depend_on_time(tmp_path, monkeypatch):
    """A machine that is slower (or busier) makes the same pool: a draw is kept or skipped by the
    package's trial budget, counted in work; no clock takes part in the decision."""
    budget = {"max_trials": 4}  # seed 0 has draws that need more trials: skipped by the budget
    quick = generate_pool(4, 128, 0, symbol_params=budget, shard_size=4, cache_dir=tmp_path / "quick")
    excite = Generator.generate_excitation

    def slow_excite(self, *args, **kwargs):  # every trial costs 0.01 s more CPU, as on a slower machine
        _burn_cpu(0.01)
        return excite(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "generate_excitation", slow_excite)
    slow = generate_pool(4, 128, 0, symbol_params=budget, shard_size=4, cache_dir=tmp_path / "slow")
    assert_same_pool(quick, slow)
    assert quick.skipped  # the budget did reject a draw, on both machines alike


def test_a_runaway_draw_stops_generation_loudly(tmp_path, monkeypatch):
    """The time limit is a safety net: past it a draw raises, naming itself, instead of being skipped."""
    run = Generator.run

    def runaway(self, *args, **kwargs):
        _burn_cpu(0.5)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "run", runaway)
    with pytest.raises(S2DrawTimeout, match="S2 draw 0 of seed 3 .*time_limit=0.05"):
        generate_pool(1, 128, 3, time_limit=0.05, shard_size=1, cache_dir=tmp_path)
    assert not list(pool_dir(128, 3, cache_dir=tmp_path).glob("shard_*.npz"))  # nothing silently written


def test_recorded_symbol_reproduces_the_response(tiny_s2_cache):
    """Y is the package's z-scored f(X) times a random scale: evaluating the recorded string on X with the
    package's own parser gives Y up to that normalisation (for symbols without a random leaf)."""
    pool = load_pool(4, 128, 0, cache_dir=tiny_s2_cache)
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
    a = load_pool(1, 128, 0, cache_dir=tiny_s2_cache)
    b = generate_pool(1, 128, 1, shard_size=1, cache_dir=tmp_path)
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
