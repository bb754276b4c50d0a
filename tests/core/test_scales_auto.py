"""``scales="auto"`` (`msft.scales.choose_scales`) on synthetic series with known periods."""

import numpy as np
import pytest

from msft.scales import choose_scales, dominant_period


def seasonal(period, length=4000, seed=0, trend=0.0, noise=0.3):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return np.sin(2 * np.pi * t / period) + trend * t + noise * rng.standard_normal(length)


@pytest.mark.parametrize("period", [12, 24, 96, 168])
def test_the_dominant_period_is_found(period):
    found = dominant_period([seasonal(period, seed=s) for s in range(3)], max_period=256)
    assert found == pytest.approx(period, rel=0.05)  # the frequency grid is 2048 points over [1/256, 0.5]


@pytest.mark.parametrize(
    "period, context, patch, expected",
    [
        (24, 512, 8, (1, 2, 4)),  # 24/8 = 3 samples per period < 4
        (12, 512, 8, (1, 2)),  # 12/4 = 3
        (96, 512, 8, (1, 2, 4, 8, 16)),  # 96/16 = 6, 512/(16*8) = 4 tokens
        (96, 512, 32, (1, 2, 4)),  # scale 8 would leave 512/256 = 2 tokens
        (168, 2048, 8, (1, 2, 4, 8, 16)),  # max_scale
    ],
)
def test_coarse_scales_kept_while_they_resolve_the_period_and_leave_tokens(period, context, patch, expected):
    choice = choose_scales([seasonal(period, seed=s) for s in range(2)], context, patch)
    assert choice.scales == expected, choice.reason
    assert choice.period == pytest.approx(period, rel=0.05)


def test_a_trend_is_not_a_season():
    choice = choose_scales([seasonal(24, trend=0.01)], 512, 8)
    assert choice.period == pytest.approx(24, rel=0.05) and choice.scales == (1, 2, 4)


def test_without_a_period_only_the_token_budget_decides_up_to_four():
    walks = [np.random.default_rng(s).standard_normal(3000) for s in range(3)]  # white noise: no peak
    choice = choose_scales(walks, 512, 8)
    assert choice.period is None and choice.scales == (1, 2, 4)
    assert "no dominant period" in choice.reason
    assert choose_scales(walks, 64, 8).scales == (1, 2)  # 64/(4*8) = 2 tokens at scale 4


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="patch_size=0"):
        choose_scales([seasonal(24)], 512, 0)
