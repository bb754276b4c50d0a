import numpy as np
import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MSFT_CACHE_DIR", str(tmp_path / "cache"))


def long_frame(items=3, length=160, freq="h", seed=0, start="2024-01-01"):
    """A long-format frame of noisy daily cycles: item_id, timestamp, target."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(items):
        t = np.arange(length)
        y = 10 + 3 * np.sin(2 * np.pi * t / 24 + i) + 0.3 * rng.standard_normal(length)
        frames.append(
            pd.DataFrame(
                {"item_id": f"s{i}", "timestamp": pd.date_range(start, periods=length, freq=freq), "target": y}
            )
        )
    return pd.concat(frames, ignore_index=True)
