"""Per-scale context lengths (`MSFTConfig.context_lengths`): which past each scale pools, on every
registered backbone that takes them, the aggregation over overlapping time only, and clear errors."""

from __future__ import annotations

import pytest
import torch

import msft
from msft.config import MSFTConfig
from msft.layers import CrossScaleAggregation
from msft.registry import registered_backbones

from .test_contract import assert_blocked_equals_dense, perturb, series, wrap

SPECS = registered_backbones()
#: Time-DPD sizes its per-scale heads and prompts by its fixed context_length: it refuses the option.
REFUSES = {"time_dpd"}


@pytest.fixture(params=sorted(SPECS), scope="module")
def setup(request):
    if request.param in REFUSES:
        pytest.skip(f"{request.param} refuses context_lengths (tested below)")
    return SPECS[request.param].tiny()


def test_config_resolves_the_steps_of_each_scale():
    assert MSFTConfig(scales=(1, 2, 4)).scale_context_steps(300) == [300, 300, 300]
    assert MSFTConfig(scales=(1, 2, 4), context_lengths="equal_tokens").scale_context_steps(2048) == [512, 1024, 2048]
    assert MSFTConfig(scales=(1, 2, 4), context_lengths="equal_tokens").scale_context_steps(1001) == [251, 501, 1001]
    assert MSFTConfig(scales=(1, 2), context_lengths=[100, 400]).scale_context_steps(500) == [100, 400]
    restored = MSFTConfig.from_dict(MSFTConfig(scales=(1, 2), context_lengths=[100, 400]).to_dict())
    assert restored.context_lengths == (100, 400)


@pytest.mark.parametrize(
    "value, message",
    [("longest", "expected None, ('equal_tokens',)"), ([64], "one positive integer per scale"), ([64, 0, 8], "one")],
)
def test_bad_context_lengths_are_named(value, message):
    with pytest.raises(ValueError, match=rf"context_lengths={value!r}".replace("[", r"\[")[:20]):
        MSFTConfig(scales=(1, 2, 4), context_lengths=value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MSFTConfig(scales=(1, 2, 4), context_lengths=value)


def test_single_scale_sees_exactly_its_window(setup):
    """scales=[1]: "equal_tokens" is the whole past and a step count is the last steps, whatever the
    backbone: the same slice of the same tensor, so the forecasts are identical by construction."""
    past, _ = series(setup)
    n = setup.context_length - setup.context_length // 4
    with torch.no_grad():
        full = _predict(setup, past, scales=[1])
        equal = _predict(setup, past, scales=[1], context_lengths="equal_tokens")
        last = _predict(setup, past, scales=[1], context_lengths=[n])
        cut = _predict(setup, past[:, -n:], scales=[1])
    assert torch.equal(equal, full)
    assert torch.equal(last, cut)


def test_each_scale_pools_its_own_window(setup):
    """With "equal_tokens" a change older than scale 1's window reaches no scale-1 token before the
    cross-scale aggregation; it does change the coarse scales, which see further back."""
    past, _ = series(setup, batch=1, variates=2)
    model = wrap(setup, context_lengths="equal_tokens", c2f=False, f2c=False).eval()
    perturb(model)
    steps = model.config.scale_context_steps(past.shape[1])
    older = past.clone()
    older[:, : past.shape[1] - steps[0]] += 3.0  # before scale 1's window, inside the others'
    try:
        with torch.no_grad():
            a = _seeded(model.predict_scales, past, setup.horizon)  # MOIRAI's point is a sampled median
            b = _seeded(model.predict_scales, older, setup.horizon)
    finally:
        msft.unwrap(model)
    assert torch.equal(a[0], b[0])  # scale 1 read the same window: identical by construction
    assert not torch.equal(a[-1], b[-1])


def _seeded(fn, *args):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return fn(*args)


def test_blocked_attention_equals_the_dense_reference_with_equal_tokens(setup):
    model = wrap(setup, context_lengths="equal_tokens").eval()
    try:
        assert_blocked_equals_dense(model, setup)
    finally:
        msft.unwrap(model)


def test_a_past_shorter_than_the_longest_window_is_named(setup):
    past, _ = series(setup)
    length = past.shape[1]
    model = wrap(setup, scales=[1, 2], context_lengths=[length // 2, length + 8])
    with pytest.raises(ValueError, match=rf"past_target has {length} time steps: .* needs {length + 8}"):
        model.predict(past, setup.horizon)
    msft.unwrap(model)


def test_time_dpd_refuses_per_scale_contexts():
    setup = SPECS["time_dpd"].tiny()
    with pytest.raises(ValueError, match="context_lengths='equal_tokens': Time-DPD"):
        msft.wrap(setup.backbone, scales=[1, 2], context_lengths="equal_tokens")


def test_aggregation_pairs_only_tokens_that_overlap_in_time():
    """A coarse scale reaching further back than the fine one covers: its extra (oldest) context
    tokens neither send to nor receive from the fine scale."""
    torch.manual_seed(0)
    agg = CrossScaleAggregation([1, 2], d_model=8, c2f=True, f2c=True)
    with torch.no_grad():
        for p in agg.parameters():
            p.normal_()
    fine = torch.randn(1, 6 + 2, 8)  # 6 context tokens, 2 horizon tokens
    coarse = torch.randn(1, 10 + 1, 8)  # 10 context tokens: the last 3 overlap the fine context
    layouts = [(0, 6, 2), (0, 10, 1)]
    out = agg([fine, coarse], layouts)
    changed = coarse.clone()
    changed[:, :7] += 100.0  # the 7 oldest coarse context tokens have no fine partner
    again = agg([fine, changed], layouts)
    assert torch.equal(out[0], again[0])  # the fine scale never read them: identical by construction
    assert torch.equal(out[1][:, :7], coarse[:, :7])  # and they received nothing
    assert not torch.equal(out[1][:, 7:10], coarse[:, 7:10])  # the overlapping ones did


def _predict(setup, past, **options):
    torch.manual_seed(0)
    model = msft.wrap(
        setup.backbone, **{"horizon": setup.horizon, "point_forecast": "mean", **setup.options, **options}
    )
    try:
        return model.eval().predict(past, setup.horizon)
    finally:
        msft.unwrap(model)
