import math

import numpy as np
import pytest
import torch

from msft.sampling import downsample, upsample


def _hand_pool(values, scale, side):
    """Plain-Python reference: pad, then mean of the non-NaN points of each window."""
    pad = math.ceil(len(values) / scale) * scale - len(values)
    padded = [math.nan] * pad + values if side == "left" else values + [math.nan] * pad
    out, seen = [], []
    for start in range(0, len(padded), scale):
        window = [v for v in padded[start : start + scale] if not math.isnan(v)]
        out.append(sum(window) / len(window) if window else 0.0)
        seen.append(bool(window))
    return out, seen


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [1, 7, 10, 13])
def test_downsample_matches_hand_computation(side, scale, length):
    rng = np.random.default_rng(length * 10 + scale)
    values = rng.normal(size=length).tolist()
    for i in rng.choice(length, size=length // 3, replace=False):
        values[i] = math.nan
    series = torch.tensor([values], dtype=torch.float64)
    pooled, observed = downsample(series, torch.ones_like(series, dtype=torch.bool), scale, side)
    expected, expected_seen = _hand_pool(values, scale, side)
    assert pooled.shape == (1, math.ceil(length / scale))
    torch.testing.assert_close(pooled[0], torch.tensor(expected, dtype=torch.float64))
    assert observed[0].tolist() == expected_seen


def test_downsample_respects_observed_mask_and_side():
    series = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    observed = torch.tensor([[True, True, False, True, True]])
    left, left_seen = downsample(series, observed, 2, "left")  # windows: [pad,1] [2,x] [4,5]
    right, _ = downsample(series, observed, 2, "right")  # windows: [1,2] [x,4] [5,pad]
    assert left.tolist() == [[1.0, 2.0, 4.5]] and left_seen.all()
    assert right.tolist() == [[1.5, 4.0, 5.0]]


def test_upsample_repeats_and_truncates():
    forecast = torch.tensor([[1.0, 2.0, 3.0]])
    assert upsample(forecast, 2, 5).tolist() == [[1.0, 1.0, 2.0, 2.0, 3.0]]
    assert upsample(forecast, 1, 2).tolist() == [[1.0, 2.0]]
