"""Backbones whose head predicts quantiles (`Forecast.quantiles`: Chronos-2, Moirai-2): the core fuses
their own quantiles by quantile averaging, exactly, for every such registered backbone."""

import pytest
import torch

from msft.registry import registered_backbones
from msft.sampling import upsample_paths

from .test_contract import perturb, series, wrap

QUANTILE_HEADS = sorted(n for n, s in registered_backbones().items() if s.forecast_type.gives_quantiles())
LEVELS = (0.1, 0.5, 0.9)


@pytest.fixture(params=QUANTILE_HEADS)
def setup(request):
    return registered_backbones()[request.param].tiny()


def test_there_are_quantile_heads_to_test():
    assert {"chronos2", "moirai2"} <= set(QUANTILE_HEADS)


def test_predict_quantiles_is_the_weighted_average_of_each_scales_quantiles(setup):
    model = wrap(setup).eval()
    perturb(model)
    past, _ = series(setup)
    with torch.no_grad():
        got = model.predict_quantiles(past, setup.horizon, LEVELS)  # (batch, Q, H, variate)
        outputs = model._forward(*model._check_past(past, None), setup.horizon)
        fine = outputs[0].quantiles(LEVELS)  # coarse_paths="residual" (default): scale 1's within-block shape
        by_hand = sum(
            w * upsample_paths(out.quantiles(LEVELS), s, setup.horizon, fine)
            for w, s, out in zip(model.fusion_weights, model.scales, outputs)
        )  # (batch * variate, Q, H)
    by_hand = by_hand.unflatten(0, (past.shape[0], past.shape[2])).permute(0, 2, 3, 1)
    # the same operations in another association order: float32 rounding, a few ulps of values ~10
    torch.testing.assert_close(got, by_hand, rtol=1e-5, atol=1e-5)
    reversed_levels = model.predict_quantiles(past, setup.horizon, LEVELS[::-1])
    assert torch.equal(reversed_levels, got.flip(1))  # values follow the levels asked, in their order
    again = model.predict_quantiles(past, setup.horizon, LEVELS)
    assert torch.equal(got, again)  # no sampling: deterministic


def test_huge_magnitudes_give_scaled_quantiles(setup):
    """Series beyond 2**40 are divided by a power of two inside and their quantiles multiplied back."""
    model = wrap(setup).eval()
    past, _ = series(setup)
    factor = 2.0**45
    with torch.no_grad():
        small = model.predict_quantiles(past, setup.horizon, LEVELS)
        huge = model.predict_quantiles(past * factor, setup.horizon, LEVELS)
    assert torch.isfinite(huge).all()
    # scaling by a power of two is exact in float32; the instance scaling divides it out again
    torch.testing.assert_close(huge / factor, small, rtol=1e-4, atol=1e-4)
