"""``scales="auto"`` (`msft.scales.choose_scales`) on synthetic series with known periods."""

import numpy as np
import pytest

from msft.scales import choose_scales, dominant_period, scales_for_period


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
        (24, 512, 8, (1, 2)),  # 24/4 = 6 samples per period < 8
        (48, 512, 8, (1, 2, 4)),  # 48/8 = 6
        (12, 512, 8, (1,)),  # 12/2 = 6: no coarser scale resolves the period
        (96, 512, 8, (1, 2, 4, 8)),  # 96/16 = 6
        (96, 512, 32, (1, 2, 4, 8)),  # 96/8 = 12 and 512/(8*32) = 2 tokens; scale 16 would leave 1
        (192, 512, 32, (1, 2, 4, 8)),  # 192/16 = 12 samples, but 512/(16*32) = 1 token < 2
        (168, 2048, 8, (1, 2, 4, 8, 16)),  # max_scale
    ],
)
def test_coarse_scales_kept_while_they_resolve_the_period_and_leave_tokens(period, context, patch, expected):
    choice = choose_scales([seasonal(period, seed=s) for s in range(2)], context, patch)
    assert choice.scales == expected, choice.reason
    assert choice.period == pytest.approx(period, rel=0.05)


def test_the_thresholds_are_options():
    series = [seasonal(96, seed=s) for s in range(2)]
    assert choose_scales(series, 512, 32, min_tokens=4).scales == (1, 2, 4)  # scale 8: 2 tokens < 4
    assert choose_scales(series, 512, 8, min_per_period=4).scales == (1, 2, 4, 8, 16)  # 96/16 = 6 >= 4
    scales, why = scales_for_period(96.0, 512, 32)  # what choose_scales does once the period is found
    assert scales == choose_scales(series, 512, 32).scales == (1, 2, 4, 8) and "1 tokens" in why
    assert scales_for_period(None, 512, 8) == ((1, 2, 4), "no dominant period: at most scale 4")


def test_a_trend_is_not_a_season():
    choice = choose_scales([seasonal(24, trend=0.01)], 512, 8)
    assert choice.period == pytest.approx(24, rel=0.05) and choice.scales == (1, 2)


def test_without_a_period_only_the_token_budget_decides_up_to_four():
    walks = [np.random.default_rng(s).standard_normal(3000) for s in range(3)]  # white noise: no peak
    choice = choose_scales(walks, 512, 8)
    assert choice.period is None and choice.scales == (1, 2, 4)
    assert "no dominant period" in choice.reason
    assert choose_scales(walks, 32, 8).scales == (1, 2)  # 32/(4*8) = 1 token at scale 4


@pytest.mark.parametrize("option", ["patch_size", "min_tokens", "min_per_period"])
def test_bad_arguments_are_named(option):
    arguments = dict(context_length=512, patch_size=8)
    arguments[option] = 0
    with pytest.raises(ValueError, match=f"{option}=0"):
        choose_scales([seasonal(24)], **arguments)
