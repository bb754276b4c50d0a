"""msft.finetune(..., scales="auto") resolves the scales from the training part of the data."""

import numpy as np
import pytest


def seasonal(period, length):
    t = np.arange(length)
    return np.sin(2 * np.pi * t / period) + 0.3 * np.random.default_rng(0).standard_normal(length)


def test_finetune_resolves_auto_scales_from_the_training_part(tmp_path):
    import pandas as pd

    import msft

    t = pd.date_range("2024-01-01", periods=1200, freq="h")
    frame = pd.DataFrame({"item_id": "a", "timestamp": t, "target": seasonal(24, 1200)})
    forecaster = msft.finetune(
        "toy_tiny", frame, prediction_length=8, context_length=128, max_steps=2, scales="auto", progress=False
    )
    auto = forecaster.training["scales_auto"]
    assert auto["period"] == pytest.approx(24, rel=0.05)
    assert forecaster.model.scales == tuple(auto["scales"]) == (1, 2)  # 24/4 = 6 < 8 samples per period
