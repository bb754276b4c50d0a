"""Bad input fails early with a ValueError naming the value and what was expected."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import msft

from .test_wrap import HORIZON, make_backbone, sine_batch


@pytest.mark.parametrize(
    "scales, message",
    [
        ([1, 4, 2], "strictly increasing"),
        ([1, 1, 2], "strictly increasing"),
        ([2, 4], "first scale to be 1"),
        ([1, 2, 3], "divide the next"),
        ([], "at least one scale"),
        ([1, 2.0], "integers"),
        (4, "sequence of integers"),
    ],
)
def test_bad_scales(scales, message):
    with pytest.raises(ValueError, match=message):
        msft.wrap(make_backbone(), scales=scales)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lora_rank": 0}, "lora_rank=0"),
        ({"lora_alpha": -1}, "lora_alpha=-1"),
        ({"lora_dropout": 1.5}, "lora_dropout=1.5"),
        ({"attention_impl": "flash"}, "attention_impl='flash'"),
        ({"adapters": "yes"}, "adapters='yes'"),
        ({"horizon": 0}, "horizon=0"),
        ({"lora_targets": ["nope"]}, "matched no module"),
        ({"bogus": 1}, r"unknown MSFT option\(s\) \['bogus'\]"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        msft.wrap(make_backbone(), scales=[1, 2], **options)


def test_bad_tensors():
    model = msft.wrap(make_backbone(), scales=[1, 2, 4])  # patch 8: needs >= 32 steps
    past, future = sine_batch()
    with pytest.raises(ValueError, match=r"shape \(8, 96\): expected 3 dims"):
        model.predict(past[..., 0], HORIZON)
    with pytest.raises(ValueError, match="30 time steps: expected at least .* = 32"):
        model.predict(past[:, :30], HORIZON)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"horizon={bad!r}: expected a positive integer"):
            model.predict(past, bad)
    nan_past = past.clone()
    nan_past[3, :, 1] = float("nan")
    with pytest.raises(ValueError, match=r"past_target\[3, :, 1\] has no observed value"):
        model.predict(nan_past, HORIZON)
    with pytest.raises(ValueError, match="past_observed has shape"):
        model.predict(past, HORIZON, past_observed=torch.ones(8, 96, dtype=torch.bool))
    with pytest.raises(ValueError, match="future_target has shape"):
        model.loss(past, future[:, :, :1])
    with pytest.raises(ValueError, match="dtype torch.int64"):
        model.predict(past.long(), HORIZON)
    with pytest.raises(ValueError, match="point forecasts only"):
        model.predict_samples(past, HORIZON)


def test_unknown_backbone_lists_supported_types():
    with pytest.raises(
        ValueError, match=r"no msft backbone spec for torch.nn.modules.linear.Linear: expected one of \[.*ToyForecaster"
    ):
        msft.wrap(nn.Linear(2, 2))


def test_wrapping_twice_is_refused():
    model = msft.wrap(make_backbone(), scales=[1, 2])
    with pytest.raises(ValueError, match="already wrapped"):
        msft.wrap(model.backbone)
    with pytest.raises(ValueError, match="already wrapped"):
        msft.wrap(model)


def test_import_is_light_and_silent():
    # light means no heavy module imported (what a timing would only estimate, and flakily under load)
    code = (
        "import sys; import msft;"
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'backbones') if m in sys.modules];"
        "print(repr(heavy), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == ""
    heavy = eval(result.stderr.strip().splitlines()[-1])
    assert heavy == []


def test_a_failed_wrap_leaves_the_backbone_untouched():
    backbone = make_backbone()
    before = {n: type(m) for n, m in backbone.named_modules()}
    with pytest.raises(ValueError, match="matched no module"):
        msft.wrap(backbone, scales=[1, 2], lora_targets=["nope"])
    assert {n: type(m) for n, m in backbone.named_modules()} == before
    assert all(p.requires_grad for p in backbone.parameters())
    msft.wrap(backbone, scales=[1, 2])  # still wrappable


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_values_are_rejected_with_their_position(value):
    """An infinite value is a data error, not a missing value: it is named, not silently masked."""
    model = msft.wrap(make_backbone(), scales=[1, 2])
    past, future = sine_batch()
    past = past.clone()
    past[1, 5, 0] = value
    with pytest.raises(ValueError, match=r"past_target\[1, 5, 0\] is -?inf: expected finite values"):
        model.predict(past, HORIZON)
    past, future = sine_batch()
    future = future.clone()
    future[0, 2, 0] = value
    with pytest.raises(ValueError, match=r"future_target\[0, 2, 0\] is -?inf"):
        model.loss(past, future)
