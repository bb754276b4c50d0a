"""MSFT on uni2ts' Moirai2Module (a causal decoder with a quantile head), random weights, offline."""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import msft
from msft.sampling import downsample, scaled_length, upsample

pytest.importorskip("uni2ts")
from uni2ts.model.moirai2 import Moirai2Forecast  # noqa: E402

from msft_backbones.moirai.load import GEOMETRY_DIR, HubUnreachableError  # noqa: E402
from msft_backbones.moirai2 import (  # noqa: E402
    TINY_GEOMETRY,
    Moirai2Output,
    Moirai2Spec,
    fused_quantiles,
    moirai2_from_config,
    uni2ts_quantiles,
)
from tests.conftest import float32_tolerance  # noqa: E402

SMALL = GEOMETRY_DIR / "moirai-2.0-R-small.json"


def causal_wrap(backbone, **options) -> msft.MSFTModel:
    """msft.wrap with LoRA's random A fixed (the spec's ``causal = True`` makes the aggregation causal)."""
    torch.manual_seed(0)
    return msft.wrap(backbone, **options)


def perturb(model: msft.MSFTModel, seed: int = 3) -> None:
    """Move every msft parameter off its initial value, as training would (LoRA B, maps, adapters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def walk(batch=2, time_steps=128, variates=1, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, time_steps, variates, generator=g).cumsum(1) + 5


def etth1_windows(context: int, count: int = 4) -> torch.Tensor:
    """``(count, context, 1)`` windows of ETTh1's oil temperature with a few missing steps."""
    from msft.data.files import DataNotFoundError
    from msft.data.lsf import load_lsf

    try:
        frame = load_lsf("ETTh1")
    except DataNotFoundError as err:
        pytest.skip(f"ETTh1 not available: {err}")
    values = torch.tensor(frame["OT"].to_numpy(), dtype=torch.float32)
    starts = [0, 3000, 7001, 11000][:count]
    windows = torch.stack([values[s : s + context] for s in starts])[..., None]
    windows[0, 10:30] = float("nan")  # a gap inside a patch and across patch borders
    windows[1, :40] = float("nan")  # leading missing patches (they share time id 0)
    windows[2, -5:] = float("nan")  # missing just before the forecast origin
    return windows


# -- equal to uni2ts at initialisation ---------------------------------------------------------------
# 64 = num_predict_token * patch_size: one token's reach; 509 steps are not whole patches (left padding)
@pytest.mark.parametrize(("context", "horizon"), [(512, 64), (509, 41)])
def test_single_scale_at_init_gives_uni2ts_quantiles_on_etth1(context, horizon):
    """wrap(scales=[1]) on the published 2.0-R-small geometry (random weights) gives the quantiles of
    uni2ts' public `Moirai2Forecast.predict` on real ETTh1 windows with missing values."""
    module = moirai2_from_config(SMALL, seed=0)
    past = etth1_windows(context)
    forecaster = Moirai2Forecast(
        prediction_length=horizon,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
        context_length=context,
        module=module,
    )
    # copies: predict imputes in place (univariate gaps become 0, observed mask 0)
    expected = torch.from_numpy(forecaster.predict([w.numpy().copy() for w in past]))  # (batch, levels, horizon)
    model = msft.wrap(module, scales=[1], horizon=horizon).eval()
    with torch.no_grad():
        got = fused_quantiles(model, past, horizon)[..., 0]
        median = model.predict(past, horizon)[..., 0]
    assert got.shape == expected.shape == (4, 9, horizon)
    # Not identical by construction: uni2ts runs the prediction tokens too, so its matrix products
    # have other shapes. Float32 rounding of sums over d_ff = 1024 terms, at the series' magnitude.
    tol = float32_tolerance(reduction=1024, scale=float(expected.abs().max()))
    torch.testing.assert_close(got, expected, **tol)
    torch.testing.assert_close(median, expected[:, 4], **tol)  # the point forecast is the 0.5 level


def test_multi_scale_at_init_is_the_weighted_average_of_per_scale_uni2ts_forecasts():
    """At init (identity adapters, zero LoRA B and aggregation maps) scales [1, 2, 4] fuse uni2ts'
    forecast of each pooled context: every quantile level is sum_s w_s upsample(q_s)."""
    module = moirai2_from_config(SMALL, seed=0)
    past, horizon = etth1_windows(context=512), 64
    # the published up-sampling (each coarse quantile repeated over its block), to compare with uni2ts
    model = msft.wrap(module, scales=[1, 2, 4], horizon=horizon, fusion_prior=1.0, coarse_paths="repeat").eval()
    with torch.no_grad():
        got = fused_quantiles(model, past, horizon)[..., 0]
        weights = model.fusion_weights
        flat, observed = past[..., 0], ~torch.isnan(past[..., 0])
        expected = 0
        for w, s in zip(weights, model.scales):
            pooled, seen = downsample(flat, observed, s, side="left")
            pooled = torch.where(seen, pooled, torch.full_like(pooled, float("nan")))[..., None]
            own = uni2ts_quantiles(module, pooled, scaled_length(horizon, s))[..., 0]  # (batch, levels, H / s)
            expected = expected + w * upsample(own, s, horizon)
    assert not torch.allclose(weights, weights[:1].expand(3))  # an unequal average: the weights matter
    tol = float32_tolerance(reduction=1024, scale=float(expected.abs().max()))
    torch.testing.assert_close(got, expected, **tol)


def test_a_long_horizon_starts_with_the_single_pass_forecast():
    """Beyond num_predict_token patches the horizon enters as missing patches; causality leaves the
    first group (what the last context token predicts) exactly as in the short forecast."""
    setup = Moirai2Spec.tiny()
    reach = TINY_GEOMETRY["patch_size"] * TINY_GEOMETRY["num_predict_token"]  # 16 steps
    model = causal_wrap(setup.backbone, scales=[1, 2, 4], horizon=5 * reach).eval()
    perturb(model)
    past = walk()
    with torch.no_grad():
        long = fused_quantiles(model, past, 5 * reach)
        short = fused_quantiles(model, past, reach)
    assert long.shape == (2, 9, 5 * reach, 1) and torch.isfinite(long).all()
    # other token counts, so other matrix shapes: float32 rounding of sums over d_model = 128 terms
    torch.testing.assert_close(long[:, :, :reach], short, **float32_tolerance(128, float(short.abs().max())))
    assert not torch.allclose(long[:, :, reach : 2 * reach], long[:, :, :reach])  # later groups differ


# -- causality --------------------------------------------------------------------------------------
def first_tokens_kept(model, past, horizon, cut: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Per scale: the last hidden states ``(series, tokens, d)`` without and with noise in every token
    entering the layers that ends less than ``cut`` steps before the forecast origin (later context
    and the horizon), and how many tokens end by the cut. The noise goes in after the instance
    scaling: uni2ts normalises each scale with its whole context's statistics, which every token reads."""
    patch = model.spec.patch_size()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        clean = model.forward_features(past, horizon).scales
    # context token j of n ends (n - 1 - j) * s * patch steps before the origin: kept while that is >= cut
    kept = [f.layout[1] - -(-cut // (s * patch)) for f, s in zip(clean, model.scales)]

    def hook(module, args, out):
        idx = hook.calls
        hook.calls += 1
        noisy = out.clone()
        noisy[:, kept[idx] :] = 3 * torch.randn(noisy[:, kept[idx] :].shape, generator=g)
        return noisy

    hook.calls = 0
    handle = model.backbone.in_proj.register_forward_hook(hook)
    try:
        with torch.no_grad():
            noisy = model.forward_features(past, horizon).scales
    finally:
        handle.remove()
    assert hook.calls == len(model.scales)
    return [(c.hidden, n.hidden, k) for c, n, k in zip(clean, noisy, kept)]


CAUSAL_CASES = {
    "blocked": {},
    "dense": {"attention_impl": "dense"},
    "no_intra_scale": {"intra_scale_attention": False},
}


@pytest.mark.parametrize("case", sorted(CAUSAL_CASES))
@pytest.mark.parametrize("cut", [32, 24, 8])  # steps before the origin: 32 = 1 token at scale 4, 24 = 3 at scale 1
def test_no_token_sees_the_future_through_another_scale(case, cut):
    """scales [1, 2, 4] with trained (non-zero) adapters, LoRA and aggregation, and a horizon beyond
    one token's reach: noise in every token after the cut leaves every earlier token's last hidden
    state unchanged, at every scale, and changes the later ones (the test can fail)."""
    setup = Moirai2Spec.tiny()
    model = causal_wrap(setup.backbone, scales=[1, 2, 4], horizon=40, **CAUSAL_CASES[case]).eval()
    perturb(model)
    for clean, noisy, kept in first_tokens_kept(model, walk(), 40, cut):
        assert 0 < kept < clean.shape[1]
        # the same computation on the same numbers for the kept tokens; masked keys add exact zeros
        torch.testing.assert_close(noisy[:, :kept], clean[:, :kept], rtol=1e-6, atol=1e-6)
        assert (noisy[:, kept:] - clean[:, kept:]).abs().amax() > 1e-2


@pytest.mark.parametrize("case", sorted(CAUSAL_CASES))
def test_without_instance_scaling_the_raw_future_changes_no_earlier_token(case):
    """With uni2ts' scaler off (``scaling=False``), perturbing the series itself after the cut leaves
    every token that ends by the cut unchanged at every scale (pooling, adapters, LoRA, attention and
    aggregation alike)."""
    backbone = moirai2_from_config({**TINY_GEOMETRY, "scaling": False}, seed=0)
    model = causal_wrap(backbone, scales=[1, 2, 4], horizon=40, **CAUSAL_CASES[case]).eval()
    perturb(model)
    past, cut = walk(), 24
    changed = past.clone()
    changed[:, -cut:] += 3 * torch.randn(changed[:, -cut:].shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        clean = model.forward_features(past, 40).scales
        noisy = model.forward_features(changed, 40).scales
    for s, c, n in zip(model.scales, clean, noisy):
        kept = c.layout[1] - -(-cut // (s * model.spec.patch_size()))
        torch.testing.assert_close(n.hidden[:, :kept], c.hidden[:, :kept], rtol=1e-6, atol=1e-6)
        assert (n.hidden[:, kept:] - c.hidden[:, kept:]).abs().amax() > 1e-2


def test_the_encoder_aggregation_would_leak_the_future():
    """The same check on the core's default (encoder) aggregation fails: C2F hands a fine token the
    coarse token that covers it, which ends after it. What ``causal = True`` is for."""
    setup = Moirai2Spec.tiny()
    model = causal_wrap(setup.backbone, scales=[1, 2, 4], horizon=40).eval()
    perturb(model)
    for aggregation in model.msft_aggregation:
        aggregation.causal = False
    fine_clean, fine_noisy, kept = first_tokens_kept(model, walk(), 40, cut=8)[0]
    assert (fine_noisy[:, :kept] - fine_clean[:, :kept]).abs().amax() > 1e-3


def test_wrap_makes_the_aggregation_causal():
    model = msft.wrap(Moirai2Spec.tiny().backbone, scales=[1, 2, 4], horizon=12)
    assert all(aggregation.causal for aggregation in model.msft_aggregation)


# -- the quantile head -------------------------------------------------------------------------------
def test_output_point_is_the_median_and_the_loss_is_the_scaled_pinball_loss():
    levels = (0.1, 0.25, 0.5, 0.9)
    scaled = torch.tensor([[[-1.0, 0.0], [-0.5, 0.5], [0.0, 1.0], [1.0, 2.0]]])  # (1, levels, 2)
    out = Moirai2Output(scaled, loc=torch.full((1, 1, 1), 10.0), scale=torch.full((1, 1, 1), 2.0), levels=levels)
    torch.testing.assert_close(out.point(), torch.tensor([[10.0, 12.0]]))
    torch.testing.assert_close(out.level(0.3), torch.tensor([[9.2, 11.2]]))  # a fifth of the way 0.25 -> 0.5
    target, observed = torch.tensor([[10.0, 20.0]]), torch.tensor([[True, False]])
    # step 0 in scaled units is 0: level q costs q * (0 - y_q) above y_q and (1 - q) * (y_q - 0) below
    expected = (0.1 * 1.0 + 0.25 * 0.5 + 0.0 + 0.1 * 1.0) / 4
    torch.testing.assert_close(out.loss(target, observed), torch.tensor(expected))


def test_options_are_checked():
    backbone = Moirai2Spec.tiny().backbone
    with pytest.raises(ValueError, match="single patch size 8"):
        msft.wrap(backbone, scales=[1], patch_size=16)
    with pytest.raises(ValueError, match="takes no backbone options"):
        msft.wrap(backbone, scales=[1], backbone_options={"freq": "H"})


# -- loading -----------------------------------------------------------------------------------------
def test_claims_hub_ids_and_saved_directories(tmp_path):
    from msft_backbones.moirai import moirai_from_config

    assert Moirai2Spec.claims("Salesforce/moirai-2.0-R-small")
    assert not Moirai2Spec.claims("Salesforce/moirai-1.1-R-small")
    assert not Moirai2Spec.claims("amazon/chronos-2")
    moirai2_from_config(TINY_GEOMETRY, seed=0).save_pretrained(tmp_path / "m2")
    moirai_from_config("moirai-1.1-R-small", seed=0).save_pretrained(tmp_path / "m1")
    assert Moirai2Spec.claims(str(tmp_path / "m2"))
    assert not Moirai2Spec.claims(str(tmp_path / "m1"))
    assert not Moirai2Spec.claims(str(tmp_path))  # no config.json


def test_load_a_saved_directory_and_random_geometries(tmp_path):
    saved = moirai2_from_config(TINY_GEOMETRY, seed=0)
    saved.save_pretrained(tmp_path / "m2")
    loaded = Moirai2Spec.load(str(tmp_path / "m2"))
    assert not loaded.training
    state = saved.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(t, state[k]) for k, t in loaded.state_dict().items())
    again = Moirai2Spec.load(None, config=TINY_GEOMETRY, seed=0)
    assert all(torch.equal(t, state[k]) for k, t in again.state_dict().items())
    small = Moirai2Spec.load(config=str(SMALL), seed=1)
    assert small.d_model == 384 and small.num_predict_token == 4 and len(small.encoder.layers) == 6
    with pytest.raises(ValueError, match="'config' and 'seed'"):
        Moirai2Spec.load(None, revision="main")


def test_load_backbone_finds_the_family_from_the_source(tmp_path):
    registry = msft.registry
    assert registry.family_of("Salesforce/moirai-2.0-R-small") is Moirai2Spec
    moirai2_from_config(TINY_GEOMETRY, seed=0).save_pretrained(tmp_path / "m2")
    assert registry.family_of(str(tmp_path / "m2")) is Moirai2Spec
    loaded = registry.load_backbone(str(tmp_path / "m2"), horizon=96)  # the runner passes the horizon
    random = registry.load_backbone(family="moirai2", config=TINY_GEOMETRY, seed=0)
    assert all(torch.equal(t, random.state_dict()[k]) for k, t in loaded.state_dict().items())


def test_the_shipped_geometry_is_the_published_small_model():
    """The 2.0-R-small config as published (11.4M parameters in the Moirai 2.0 paper)."""
    config = json.loads(SMALL.read_text())
    assert config["patch_size"] == 16 and config["num_predict_token"] == 4 and config["d_ff"] == 1024
    assert round(sum(p.numel() for p in moirai2_from_config(SMALL).parameters()) / 1e6, 1) == 11.4


def test_an_unreachable_hub_fails_fast_with_a_clear_error():
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match="Moirai-2 checkpoint 'Salesforce/moirai-2.0-R-small'"):
        Moirai2Spec.load("Salesforce/moirai-2.0-R-small", cache_dir="/nonexistent-msft-cache")
    assert time.monotonic() - start < 30


def test_the_wrapped_model_trains_and_unwraps_exactly():
    setup = Moirai2Spec.tiny()
    before = {k: v.clone() for k, v in setup.backbone.state_dict().items()}
    model = causal_wrap(setup.backbone, scales=[1, 2, 4], horizon=40).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    series = walk(time_steps=168, variates=2)
    losses = []
    for _ in range(3):
        loss = model.loss(series[:, :128], series[:, 128:])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    restored = msft.unwrap(model)
    assert all(torch.equal(v, before[k]) for k, v in restored.state_dict().items())


def test_the_layers_get_uni2ts_causal_mask():
    """The mask the layers read is uni2ts' packed causal mask of the same time ids."""
    from uni2ts.common.torch_util import packed_causal_attention_mask

    setup = Moirai2Spec.tiny()
    model = msft.wrap(setup.backbone, scales=[1], horizon=40)
    past = walk()
    past[0, :20] = float("nan")  # leading missing patches share time id 0
    tokens = model.spec.embed(past[..., 0], ~torch.isnan(past[..., 0]), 40, 0)
    aux = tokens.aux
    expected = packed_causal_attention_mask(torch.ones_like(aux.time_id), aux.time_id)
    assert torch.equal(aux.attn_mask, expected)
    assert tokens.layout == (0, 16, 4) and aux.time_id[0, 2] == 0  # 16 context tokens, 4 horizon inputs
