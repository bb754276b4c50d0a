import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_configure(config):
    # Every test model is tiny: one intra-op thread is faster than two, and immune to a busy machine
    # where oversubscribed OpenMP threads spin (seen: 10-50x slower steps).
    import torch

    torch.set_num_threads(1)


#: One ulp of float32 at 1.0 (``torch.finfo(torch.float32).eps``).
FLOAT32_EPS = 2.0**-23


def float32_tolerance(reduction: int, scale: float = 1.0, ulps: float = 4.0) -> dict[str, float]:
    """``rtol`` / ``atol`` for `torch.testing.assert_close` between two float32 computations of the
    same value that are *not* identical by construction (matrix products of different shapes, another
    summation order, another kernel): what float32 rounding allows, derived, not a fudge factor.

    A sum of ``reduction`` terms rounds once per addition, each time by at most half an ulp of the
    partial sum; the roundings behave as a random walk, so two summation orders differ by about
    ``sqrt(reduction)`` ulps of the terms' magnitude ``scale`` (the largest |term|, which bounds the
    partial sums; not the result, which may cancel). ``ulps`` covers both paths' errors and the few
    elementwise ops chained after the sum (norms, softplus, exp). ``rtol`` is the same bound relative
    to each element, for outputs whose size varies widely (heavy-tailed samples).
    A wrong weight, token or scale changes a value by orders of magnitude more.
    """
    rtol = ulps * FLOAT32_EPS * math.sqrt(reduction)
    return {"rtol": rtol, "atol": rtol * float(scale)}


#: A tiny S2 pool (msft.data.s2, the authors' s2generator): four short draws (which draws it keeps
#: depends on the seed alone, not on how fast or busy the machine is).
TINY_S2 = {"n": 4, "length": 128, "seed": 0, "shard_size": 4}


@pytest.fixture(scope="session")
def tiny_s2_cache(tmp_path_factory):
    """A cache directory holding the tiny S2 pool, generated once per test session."""
    pytest.importorskip("s2generator")
    from msft.data.s2 import generate_pool

    cache = tmp_path_factory.mktemp("msft_cache") / "s2"  # MSFT_CACHE_DIR=its parent finds it too
    generate_pool(**TINY_S2, cache_dir=cache)
    return cache
