"""Joint variates (``mode="M"``) and covariates on tensors: multi-scale mechanics, training, errors."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import msft
from msft.registry import registered_backbones
from msft.sampling import downsample
from msft_backbones.moirai import load_tiny_moirai
from tests.conftest import float32_tolerance

PATCH, CONTEXT, HORIZON = 16, 4 * 4 * 16 + 4, 20  # context: 4 patches at scale 4, plus a partial one


@pytest.fixture(scope="module")
def pristine():
    return load_tiny_moirai()


def data(batch=2, targets=3, known=1, past=2, seed=0):
    """Random walks: ``(past_target, future_target, past_covariates, known_covariates)``."""
    g = torch.Generator().manual_seed(seed)
    walk = torch.randn(batch, CONTEXT + HORIZON, targets + known + past, generator=g).cumsum(1)
    target = walk[..., :targets]
    return (
        target[:, :CONTEXT],
        target[:, CONTEXT:],
        walk[:, :CONTEXT, targets + known :],
        walk[..., targets : targets + known],
    )


def perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def pool(x, scale, side):
    """``(batch, time, k)`` pooled like msft pools a series (NaN-aware mean; NaN where nothing observed)."""
    flat = x.transpose(1, 2).reshape(-1, x.shape[1])
    values, seen = downsample(flat, ~torch.isnan(flat), scale, side=side)
    values = torch.where(seen, values, torch.nan)
    return values.reshape(x.shape[0], x.shape[2], -1).transpose(1, 2)


@pytest.mark.parametrize("mode", ["M", "S"])
def test_each_scale_at_init_is_the_single_scale_model_on_pooled_data(pristine, mode):
    """Cross-scale aggregation is zero at init and attention stays in each scale's block: scale 2's
    forecast of a [1, 2] model is a [1] model's forecast of the pooled target and covariates."""
    past, _, past_cov, known_cov = data()
    options = dict(patch_size=PATCH, mode=mode, point_forecast="mean", past_covariates=2, known_covariates=1)
    two = msft.wrap(copy.deepcopy(pristine), scales=[1, 2], **options)
    one = msft.wrap(copy.deepcopy(pristine), scales=[1], **options)
    with torch.no_grad():
        scales = two.predict_all(past, HORIZON, past_covariates=past_cov, known_covariates=known_cov)["scales"]
        pooled_known = torch.cat([pool(known_cov[:, :CONTEXT], 2, "left"), pool(known_cov[:, CONTEXT:], 2, "right")], 1)
        coarse = one.predict_all(
            pool(past, 2, "left"),
            HORIZON // 2,
            past_covariates=pool(past_cov, 2, "left"),
            known_covariates=pooled_known,
        )["mean"]
        fine = one.predict_all(past, HORIZON, past_covariates=past_cov, known_covariates=known_cov)["mean"]
    # Concatenated scales share the projections and split attention per block (another summation
    # order than one scale alone): float32 rounding over d_model terms per layer, of the series' size.
    tolerance = float32_tolerance(pristine.d_model, past.abs().max(), ulps=4 * pristine.num_layers)
    torch.testing.assert_close(scales[1], coarse, **tolerance)
    torch.testing.assert_close(scales[0], fine, **tolerance)


CASES = {
    "M blocked [1,2,4]": dict(scales=[1, 2, 4], mode="M"),
    "M dense [1,2]": dict(scales=[1, 2], mode="M", attention_impl="dense"),
    "M no intra-scale [1,2]": dict(scales=[1, 2], mode="M", intra_scale_attention=False),
    "S + covariates [1,2,4]": dict(scales=[1, 2, 4], mode="S"),
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_training_with_covariates_trains_only_msft(pristine, options):
    module = copy.deepcopy(pristine)
    before = {n: t.clone() for n, t in module.state_dict().items()}
    model = msft.wrap(module, patch_size=PATCH, past_covariates=2, known_covariates=["hour"], **options)
    past, future, past_cov, known_cov = data()
    past[0, :40, 1] = float("nan")
    past_cov[1, 10:50, 0] = float("nan")
    known_cov[0, :30, 0] = float("nan")  # missing in the context only: allowed
    covariates = dict(past_covariates=past_cov, known_covariates=known_cov)
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=1e-3), lr=1e-3)
    for _ in range(2):
        loss = model.loss(past, future, **covariates)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if "msft_" in name:
            assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert not p.requires_grad and p.grad is None, name
    with torch.no_grad():
        samples = model.predict_samples(past, HORIZON, num_samples=8, **covariates)
        quantiles = model.predict_quantiles(past, HORIZON, (0.1, 0.9), num_samples=8, **covariates)
    assert samples.shape == (2, 8, HORIZON, 3) and torch.isfinite(samples).all()
    assert quantiles.shape == (2, 2, HORIZON, 3)
    backbone = msft.unwrap(model)
    assert all(torch.equal(before[n], t) for n, t in backbone.state_dict().items())


def test_blocked_attention_equals_dense_mask_with_joint_variates(pristine):
    past, future, past_cov, known_cov = data()
    covariates = dict(past_covariates=past_cov, known_covariates=known_cov)
    options = dict(scales=[1, 2, 4], patch_size=PATCH, mode="M", past_covariates=2, known_covariates=1)
    blocked = msft.wrap(copy.deepcopy(pristine), **options)
    perturb(blocked)  # non-zero LoRA / adapters / aggregation
    dense = msft.wrap(copy.deepcopy(pristine), attention_impl="dense", **options)
    dense.load_state_dict(blocked.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            blocked.loss(past, future, **covariates), dense.loss(past, future, **covariates), rtol=1e-5, atol=1e-5
        )


def test_covariates_move_the_loss(pristine):
    """The covariates are read (the loss scores the targets only: one row per target variate)."""
    past, future, past_cov, known_cov = data(known=0, past=2)
    model = msft.wrap(copy.deepcopy(pristine), scales=[1, 2], patch_size=PATCH, mode="M", past_covariates=2)
    with torch.no_grad():
        loss = model.loss(past, future, past_covariates=past_cov)
        target_only = msft.wrap(msft.unwrap(model), scales=[1, 2], patch_size=PATCH, mode="M")
        assert not torch.allclose(loss, target_only.loss(past, future))  # the covariates are read


# -- errors ------------------------------------------------------------------------------------------


def channel_independent():
    specs = [s for s in registered_backbones().values() if not s.supports_variates]
    slow = {"chronos2"}  # its tiny model takes seconds to build
    return [pytest.param(s, marks=pytest.mark.slow) if s.name in slow else s for s in specs]


@pytest.mark.parametrize("spec", channel_independent(), ids=lambda s: s.name)
@pytest.mark.parametrize("options", [dict(mode="M"), dict(past_covariates=1), dict(known_covariates=["hour"])])
def test_channel_independent_backbones_refuse_joint_variates(spec, options):
    tiny = spec.tiny()
    with pytest.raises(ValueError, match=f"the {spec.name} backbone is channel-independent.*expected mode='S'"):
        msft.wrap(tiny.backbone, scales=[1], horizon=tiny.horizon, **tiny.options, **options)
    msft.unwrap(msft.wrap(tiny.backbone, scales=[1], horizon=tiny.horizon, **tiny.options))  # left as it came


def test_moirai_supports_joint_variates():
    assert registered_backbones()["moirai"].supports_variates


@pytest.fixture(scope="module")
def model(pristine):
    return msft.wrap(copy.deepcopy(pristine), scales=[1, 2], patch_size=PATCH, past_covariates=2, known_covariates=1)


def test_bad_covariates_raise_clear_errors(model):
    past, future, past_cov, known_cov = data()
    ok = dict(past_covariates=past_cov, known_covariates=known_cov)
    cases = [
        (dict(past_covariates=past_cov), r"known_covariates missing: .*known_covariates=\['known_covariates_0'\]"),
        (dict(ok, known_covariates=known_cov[:, :-1]), "do not cover the horizon; expected context \\+ horizon"),
        (
            dict(ok, past_covariates=past_cov[..., :1]),
            r"past_covariates has shape \(2, 260, 1\): expected .*\(2, 260, 2\)",
        ),
        (dict(ok, known_covariates=known_cov.repeat(1, 1, 2)), "known_covariates has shape"),
        (dict(ok, past_covariates=past_cov[:1]), "past_covariates has shape"),
    ]
    for covariates, message in cases:
        with pytest.raises(ValueError, match=message):
            model.loss(past, future, **covariates)
        with pytest.raises(ValueError, match=message):
            model.predict(past, HORIZON, **covariates)
    gap = known_cov.clone()
    gap[1, CONTEXT + 3, 0] = float("nan")
    with pytest.raises(
        ValueError, match=r"known_covariates\[1, 263, 0\] \('known_covariates_0'\) is NaN over the horizon"
    ):
        model.predict_samples(past, HORIZON, num_samples=2, past_covariates=past_cov, known_covariates=gap)


def test_covariates_to_a_model_built_without_them(pristine):
    past, _, past_cov, _ = data()
    plain = msft.wrap(copy.deepcopy(pristine), scales=[1], patch_size=PATCH, mode="M")
    with pytest.raises(ValueError, match="past_covariates given, but this model was built without them"):
        plain.predict(past, HORIZON, past_covariates=past_cov)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(mode="MS"), r"mode='MS': expected one of \('S', 'M'\)"),
        (dict(past_covariates=-1), "expected a count >= 0"),
        (dict(past_covariates=["a", "a"]), r"\['a'\] appear more than once"),
        (dict(past_covariates=["a"], known_covariates=["a"]), "both past_covariates and known_covariates"),
        (dict(mode="M", prompt_tokens=2), "soft prompts are per series"),
    ],
)
def test_bad_options(pristine, options, message):
    with pytest.raises(ValueError, match=message):
        msft.wrap(copy.deepcopy(pristine), scales=[1], patch_size=PATCH, **options)


def test_adapter_round_trip_checks_covariate_names(model, pristine, tmp_path):
    model.save_adapter(tmp_path)
    names = dict(past_covariates=["past_covariates_0", "past_covariates_1"], known_covariates=["known_covariates_0"])
    loaded = msft.load_adapter(copy.deepcopy(pristine), tmp_path, **names)
    assert loaded.config.past_covariates == model.config.past_covariates
    with pytest.raises(ValueError, match="was trained with known_covariates"):
        msft.load_adapter(copy.deepcopy(pristine), tmp_path, known_covariates=["hour"])
