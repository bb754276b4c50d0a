"""Chronos-2 (chronos-forecasting) as an msft backbone: equal to its own pipeline at initialisation,
quantile averaging across scales, its training loss, group-attention LoRA, and loading.

The contract suite (tests/core/test_contract.py) runs the tiny geometry; here the published
amazon/chronos-2 geometry (random weights, shipped in backbones/chronos2_geometry/) is compared with
`Chronos2Pipeline.predict_quantiles` on real ETTh1 windows with missing values.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import msft
from msft.sampling import downsample, upsample

pytest.importorskip("chronos")

from chronos.chronos2 import Chronos2Pipeline  # noqa: E402

from msft_backbones.chronos2 import (  # noqa: E402
    Chronos2Quantiles,
    Chronos2Spec,
    predict_quantiles,
    quantile_function,
    quantile_mean,
)

CONTEXT = 500  # no multiple of the patch (16, tiny: 8): Chronos-2 pads the first patch with NaN
# The same float32 operations in another order (the [REG] token is stored first; on joined scales
# group attention runs in (series, tokens) layout): equal up to float32 rounding, relative to the
# series' magnitude (z-scored ETTh1).
RTOL, ATOL = 1e-4, 1e-4


@pytest.fixture(scope="module", params=["tiny", pytest.param("chronos-2", marks=pytest.mark.slow)])
def published(request):
    """``(model, pipeline, horizon)``: the tiny geometry, or (``-m slow``, minutes on a loaded CPU)
    amazon/chronos-2's published geometry (120M parameters), both with random weights. The horizon
    stays within one forward pass (``max_output_patches``), where the pipeline does not unroll."""
    if request.param == "tiny":
        model, horizon = Chronos2Spec.tiny().backbone, 24
    else:
        model, horizon = Chronos2Spec.load(config=request.param, seed=0), 96
    return model, Chronos2Pipeline(model), horizon


@pytest.fixture(scope="module")
def etth1_windows() -> torch.Tensor:
    """``(2, CONTEXT, 7)``: two ETTh1 windows, z-scored on the train split, with missing values:
    a run of 40 steps, a whole patch, scattered points, and a channel missing its first 100 steps."""
    import pandas as pd

    from msft.data.files import DataNotFoundError, locate
    from msft.data.registry import get_spec

    try:
        path = locate(get_spec("ETTh1"))  # MSFT_DATA_DIR, else the copy shipped with msft
    except DataNotFoundError as err:
        pytest.skip(f"no ETTh1 data: {err}")
    values = pd.read_csv(path).iloc[:, 1:].to_numpy(np.float32)  # (time, 7)
    train = values[:8640]
    values = (values - train.mean(0)) / train.std(0)
    starts = (9000, 11000)
    windows = torch.tensor(np.stack([values[s : s + CONTEXT] for s in starts]))
    windows[0, 200:240, 0] = float("nan")
    windows[1, 300:316, 3] = float("nan")  # a whole patch of the pipeline's grid
    windows[1, ::37, 5] = float("nan")
    windows[1, :100, 6] = float("nan")
    return windows


def pipeline_quantiles(pipeline, past: torch.Tensor, horizon: int, levels) -> torch.Tensor:
    """Chronos2Pipeline.predict_quantiles on each series of ``past (batch, time, variate)`` alone
    (univariate: msft is channel-independent) -> ``(batch, levels, horizon, variate)``."""
    series = past.permute(0, 2, 1).reshape(-1, 1, past.shape[1])  # (batch * variate, 1, time)
    quantiles, _ = pipeline.predict_quantiles(series, prediction_length=horizon, quantile_levels=list(levels))
    out = torch.stack([q[0] for q in quantiles])  # (batch * variate, horizon, levels)
    return out.reshape(past.shape[0], past.shape[2], horizon, len(levels)).permute(0, 3, 2, 1)


LEVELS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def test_single_scale_at_init_gives_the_pipelines_quantiles(published, etth1_windows):
    model, pipeline, horizon = published
    expected = pipeline_quantiles(pipeline, etth1_windows, horizon, LEVELS)
    wrapped = msft.wrap(model, scales=[1], horizon=horizon).eval()
    try:
        with torch.no_grad():
            got = predict_quantiles(wrapped, etth1_windows, horizon, LEVELS)
            median = wrapped.predict_scales(etth1_windows, horizon)[0]  # the head's median, Chronos-2's point forecast
    finally:
        msft.unwrap(wrapped)
    assert got.shape == expected.shape == (2, len(LEVELS), horizon, 7)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(median, expected[:, LEVELS.index(0.5)], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("logits", [None, (1.0, -0.5, 0.25)], ids=["uniform", "learned"])
def test_multi_scale_at_init_averages_the_per_scale_quantiles(published, etth1_windows, logits):
    """Scales [1, 2, 4] at init: each scale is Chronos-2 on the pooled context, and the fused quantile
    at level q is sum_s w_s upsample(q_s) (uniform weights at init, or any logits)."""
    model, pipeline, horizon = published
    scales = [1, 2, 4]
    # the published up-sampling (each coarse quantile repeated over its block), to compare with the pipeline
    wrapped = msft.wrap(model, scales=scales, horizon=horizon, coarse_paths="repeat").eval()
    try:
        if logits is not None:
            with torch.no_grad():
                wrapped.msft_fusion.msft_fusion_logits.copy_(torch.tensor(logits))
        weights = wrapped.fusion_weights.detach()
        with torch.no_grad():
            got = predict_quantiles(wrapped, etth1_windows, horizon, LEVELS)
    finally:
        msft.unwrap(wrapped)
    flat = etth1_windows.permute(0, 2, 1).reshape(-1, CONTEXT)  # (series, time)
    expected = 0
    for w, s in zip(weights, scales):
        pooled, observed = downsample(flat, ~torch.isnan(flat), s, side="left")
        pooled = torch.where(observed, pooled, torch.nan).reshape(2, 7, -1).permute(0, 2, 1)  # (batch, time, variate)
        per_scale = pipeline_quantiles(pipeline, pooled, math.ceil(horizon / s), LEVELS)
        expected = expected + w * upsample(per_scale.transpose(2, 3), s, horizon).transpose(2, 3)
    if logits is None:
        torch.testing.assert_close(weights, torch.full((3,), 1 / 3))
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)


def test_loss_is_chronos2s_own_training_loss():
    """With every target observed and a horizon of whole patches, msft's scale-1 loss is the loss
    Chronos2Model computes itself from ``future_target`` (the same float32 terms, summed in another order)."""
    setup = Chronos2Spec.tiny()
    g = torch.Generator().manual_seed(1)
    past = torch.randn(4, 100, 1, generator=g).cumsum(1)
    future = torch.randn(4, 16, 1, generator=g).cumsum(1) + past[:, -1:]
    with torch.no_grad():
        own = setup.backbone(context=past[..., 0], num_output_patches=2, future_target=future[..., 0]).loss
        wrapped = msft.wrap(setup.backbone, scales=[1], horizon=16).eval()
        got = wrapped.loss(past, future)
    torch.testing.assert_close(got, own, rtol=1e-5, atol=1e-6)


def test_quantile_forecast_sample_paths_fuse_to_quantile_averaging():
    """Sample path j is every scale's quantile at level (j + 1/2) / n, so the core's linear fusion of
    paths equals quantile averaging at those levels; the mean is the distribution's exact mean."""
    setup = Chronos2Spec.tiny()
    wrapped = msft.wrap(setup.backbone, scales=[1, 2, 4], horizon=setup.horizon).eval()
    with torch.no_grad():
        wrapped.msft_fusion.msft_fusion_logits.copy_(torch.tensor([0.3, -0.2, 0.7]))
    past = torch.randn(2, setup.context_length, 3).cumsum(1)
    n = 20
    with torch.no_grad():
        paths = wrapped.predict_samples(past, setup.horizon, num_samples=n)  # (batch, n, horizon, variate)
        fused = predict_quantiles(wrapped, past, setup.horizon, ((torch.arange(n) + 0.5) / n).tolist())
    torch.testing.assert_close(paths, fused, rtol=1e-5, atol=1e-5)
    values = torch.randn(5, 7).sort(-1).values
    levels = torch.tensor([0.02, 0.1, 0.3, 0.5, 0.6, 0.9, 0.97])
    grid = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    numeric = quantile_function(values.double(), levels.double(), grid).mean(-1)
    torch.testing.assert_close(quantile_mean(values.double(), levels.double()), numeric, rtol=0, atol=1e-6)


def test_chronos2_quantiles_point_is_the_median():
    normalized = torch.randn(3, 5, 4).sort(1).values
    levels = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    forecast = Chronos2Quantiles(normalized, levels, torch.zeros(3, 1), torch.ones(3, 1), arcsinh=True)
    torch.testing.assert_close(forecast.point(), torch.sinh(normalized[:, 2]))
    assert forecast.sample(8).shape == (3, 8, 4)


def test_group_attention_lora_trains_and_keeps_blocked_equal_to_dense():
    setup = Chronos2Spec.tiny()
    options = {"horizon": setup.horizon, "backbone_options": {"group_lora": True}}
    wrapped = msft.wrap(setup.backbone, scales=[1, 2, 4], **options)
    group = [n for n in wrapped.spec.lora_modules() if ".layer.1." in n]
    assert len(group) == len(wrapped.spec.layers()) and all(n.endswith(".self_attention.v") for n in group)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in wrapped.msft_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    past = torch.randn(3, setup.context_length, 2, generator=g).cumsum(1)
    past[1, 10:30, 0] = float("nan")
    future = torch.randn(3, setup.horizon, 2, generator=g)
    wrapped.eval()
    results = []
    for impl in ("blocked", "dense"):
        wrapped.config = dataclasses.replace(wrapped.config, attention_impl=impl)
        wrapped.zero_grad()
        loss = wrapped.loss(past, future)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in wrapped.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (blocked, blocked_grads), (dense, dense_grads) = results
    torch.testing.assert_close(dense, blocked, rtol=1e-5, atol=1e-6)
    group_b = [n for n in blocked_grads if ".layer.1.self_attention." in n and "msft_lora_B" in n]
    assert group_b and all(blocked_grads[n].abs().sum() > 0 for n in group_b)
    for name, grad in blocked_grads.items():
        torch.testing.assert_close(dense_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    msft.unwrap(wrapped)
    with pytest.raises(ValueError, match="group_lora"):
        msft.wrap(setup.backbone, scales=[1], horizon=12, backbone_options={"group_lora": "yes"})


def test_a_save_pretrained_folder_is_claimed_and_loads_the_same_weights(tmp_path):
    setup = Chronos2Spec.tiny()
    folder = tmp_path / "my-forecaster"
    Chronos2Pipeline(setup.backbone).save_pretrained(folder)
    assert Chronos2Spec.claims(str(folder))
    loaded = Chronos2Spec.load(str(folder))
    assert type(loaded) is type(setup.backbone) and not loaded.training
    before, after = setup.backbone.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    past = torch.randn(2, setup.context_length, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(context=past[..., 0]).quantile_preds, setup.backbone(context=past[..., 0]).quantile_preds
        )
    from msft.registry import load_backbone

    assert type(load_backbone(str(folder))) is type(setup.backbone)  # the family found from the folder alone


def test_claims_recognises_chronos2_sources_only(tmp_path):
    assert Chronos2Spec.claims("amazon/chronos-2") and Chronos2Spec.claims("autogluon/chronos-2-small")
    assert Chronos2Spec.claims("someone/my-chronos-2-finetuned")
    assert not Chronos2Spec.claims("./chronos-2") and not Chronos2Spec.claims(str(tmp_path / "chronos-2"))
    for other in (
        "Salesforce/moirai-1.1-R-small",
        "AutonLab/MOMENT-1-small",
        "amazon/chronos-bolt-small",
        "amazon/chronos-t5-small",
    ):
        assert not Chronos2Spec.claims(other), other
    moirai = tmp_path / "moirai"
    moirai.mkdir()
    (moirai / "config.json").write_text(json.dumps({"d_model": 384, "patch_sizes": [8, 16]}))
    assert not Chronos2Spec.claims(str(moirai))


def test_an_unreachable_hub_id_fails_fast_naming_it(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(OSError, match=r"'amazon/chronos-2'.*(?i:offline)"):
        Chronos2Spec.load("amazon/chronos-2")
    with pytest.raises(FileNotFoundError, match="neither an existing folder"):
        Chronos2Spec.load(str(tmp_path / "missing"))


def test_random_geometry_is_the_published_one_and_seeded():
    a = Chronos2Spec.load(config="chronos-2", seed=3)
    assert sum(p.numel() for p in a.parameters()) == 119_477_664  # amazon/chronos-2: "120M parameters"
    assert a.config.d_model == 768 and a.config.num_layers == 12 and len(a.chronos_config.quantiles) == 21
    b = Chronos2Spec.load(config="chronos-2", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="take only config= and seed="):
        Chronos2Spec.load(config="chronos-2", dropout=0.1)


def test_a_block_from_its_pieces_is_the_module_on_every_observed_token():
    """`_block_from_pieces` (each series its own group, no (tokens, series, series) mask) against
    `Chronos2EncoderBlock.forward` with Chronos-2's own masks: equal on every token that is an
    attention key; a fully-unobserved patch keeps its own value instead of the batch mean, so its
    state does not depend on the other series of the batch."""
    from msft_backbones.chronos2 import _block_from_pieces

    setup = Chronos2Spec.tiny()
    model = setup.backbone.eval()
    spec = Chronos2Spec(model, msft.MSFTConfig(scales=(1,)))
    context = torch.randn(3, 64).cumsum(-1)
    context[1, 8:24] = float("nan")  # two whole patches missing: tokens that are no attention key
    tokens = spec.embed(torch.nan_to_num(context), ~torch.isnan(context), 16, 0)
    aux = tokens.aux
    group_ids = torch.arange(3)
    group_mask = type(model.encoder)._construct_and_invert_group_time_mask(group_ids, aux.attention_mask, torch.float32)
    block = model.encoder.block[0]
    with torch.no_grad():
        own = block(
            tokens.hidden, position_ids=aux.position_ids, attention_mask=aux.time_mask, group_time_mask=group_mask
        )[0]
        ours = _block_from_pieces(block, tokens.hidden, aux)
        alone = _block_from_pieces(block, tokens.hidden[1:2], spec._aux(aux.attention_mask[1:2], aux.position_ids))
    valid = aux.attention_mask > 0  # (series, tokens)
    assert not valid.all()
    torch.testing.assert_close(ours[valid], own[valid], rtol=1e-5, atol=1e-5)  # float32: the same sums, another layout
    assert not torch.allclose(ours[~valid], own[~valid])  # Chronos-2 gives them the mean over the batch
    torch.testing.assert_close(alone[0], ours[1], rtol=1e-5, atol=1e-5)  # no token depends on the batch


def test_a_context_longer_than_the_models_is_cut_as_the_pipeline_cuts_it():
    """Chronos-2 reads at most ``context_length`` steps (the tiny geometry: 512); scale 1 keeps the
    last ones, as the pipeline does, and the forecasts stay equal (float32 rounding, as above)."""
    setup = Chronos2Spec.tiny()
    past = torch.randn(3, 600, 1, generator=torch.Generator().manual_seed(2)).cumsum(1)
    levels = [0.1, 0.5, 0.9]
    expected = pipeline_quantiles(Chronos2Pipeline(setup.backbone), past, 24, levels)
    wrapped = msft.wrap(setup.backbone, scales=[1], horizon=24).eval()
    with torch.no_grad():
        got = predict_quantiles(wrapped, past, 24, levels)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
