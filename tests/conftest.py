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


#: A tiny S2 pool (msft.data.s2, the authors' s2generator): short draws, a short time limit.
# time_limit: CPU seconds per draw; generous, so that a loaded machine does not time out a draw
# that a quiet one finishes (which series the pool holds would then differ)
TINY_S2 = {"n": 4, "length": 128, "seed": 0, "time_limit": 2.0, "shard_size": 4}


@pytest.fixture(scope="session")
def tiny_s2_cache(tmp_path_factory):
    """A cache directory holding the tiny S2 pool, generated once per test session."""
    pytest.importorskip("s2generator")
    from msft.data.s2 import generate_pool

    cache = tmp_path_factory.mktemp("msft_cache") / "s2"  # MSFT_CACHE_DIR=its parent finds it too
    generate_pool(**TINY_S2, cache_dir=cache)
    return cache
