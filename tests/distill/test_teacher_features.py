"""Distillation from msft teachers on every backbone: features from `MSFTModel.forward_features`,
pooled over the finest scale's real data tokens only."""

import json

import numpy as np
import pytest
import torch

import msft
from msft.data import Windows
from msft.distill import DistillConfig, MLPStudent, cache_teacher, fit_student, teacher_outputs


def noise_windows(context, horizon, n_time=300, variates=2, seed=0):
    rng = np.random.default_rng(seed)
    return Windows(rng.standard_normal((n_time, variates)).astype(np.float32) + 5, context, horizon, stride=7)


def distil_one_epoch(teacher, context, horizon, width):
    windows = noise_windows(context, horizon)
    cache = cache_teacher(teacher, windows, horizon, batch_size=64)
    assert cache.features.shape == (len(windows), 1, width) and torch.isfinite(cache.features).all()
    student = MLPStudent(context_length=context, horizon=horizon, hidden=16)
    result = fit_student(student, windows, DistillConfig(), cache, epochs=1, batch_size=32)
    assert result.history[0]["feature"] > 0 and np.isfinite(result.history[0]["total"])


def test_distillation_from_a_multi_scale_moirai_teacher():
    pytest.importorskip("uni2ts")
    from msft_backbones.moirai import moirai_from_config
    from msft_backbones.moirai.load import GEOMETRY_DIR

    geometry = {**json.loads((GEOMETRY_DIR / "moirai-1.1-R-small.json").read_text()), "d_model": 64, "num_layers": 2}
    teacher = msft.wrap(
        moirai_from_config(geometry, seed=0), scales=[1, 2, 4], patch_size=8, point_forecast="mean"
    ).eval()
    past = torch.randn(2, 60, 1)
    with torch.no_grad():
        out = teacher.forward_features(past, 16)
    # 60 steps: 8 patches at scale 1 (4 padded steps), 4 at scale 2, 2 at scale 4 (15 steps, 1 padded)
    assert [s.layout for s in out.scales] == [(0, 8, 2), (0, 4, 1), (0, 2, 1)]
    assert all(s.valid.all() for s in out.scales)  # every patch holds observed steps
    with torch.no_grad():
        padded = teacher.forward_features(torch.cat([torch.full((2, 16, 1), float("nan")), past], 1), 16)
    # 76 steps: 10 patches at scale 1, the first two empty (4 padded + 12 NaN steps); horizon tokens are valid
    assert padded.scales[0].valid.sum(1).tolist() == [10, 10] and not padded.scales[0].valid[:, :2].any()
    distil_one_epoch(teacher, context=64, horizon=16, width=64)


def test_distillation_from_a_moment_teacher_pools_only_real_patches():
    pytest.importorskip("momentfm")
    from msft_backbones.moment import build_moment

    torch.manual_seed(0)
    t5 = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "vocab_size": 8, "dropout_rate": 0.0}
    moment = build_moment(t5, forecast_horizon=16, seq_len=64, head_dropout=0.0)
    teacher = msft.wrap(moment, scales=[1, 2], horizon=16).eval()
    past = torch.randn(3, 48, 2) + 3
    with torch.no_grad():
        out = teacher.forward_features(past, 16)
        # MOMENT left-pads every scale to seq_len 64: 6 of 8 patches hold data at scale 1, 3 at scale 2
        assert [s.valid.sum(1).unique().tolist() for s in out.scales] == [[6], [3]]
        forecast, feats = teacher_outputs(teacher, past, 16)
        # NaN in front is the same padding: same forecast, same features
        again, feats_again = teacher_outputs(teacher, torch.cat([torch.full((3, 16, 2), float("nan")), past], 1), 16)
    torch.testing.assert_close(forecast, teacher.predict(past, 16))
    torch.testing.assert_close(again, forecast)
    torch.testing.assert_close(feats_again, feats)
    fine = out.scales[0]
    torch.testing.assert_close(feats.reshape(6, 32), fine.hidden[:, 2:].mean(1))  # the 6 real patches only
    distil_one_epoch(teacher, context=48, horizon=16, width=32)


def tiny_time_dpd_teacher(description="a univariate time series."):
    from msft_backbones.time_dpd.tiny import tiny_time_dpd

    model = tiny_time_dpd(
        context_length=64,
        horizon=16,
        d_model=8,
        num_heads=2,
        d_keys=8,
        num_prototypes=16,
        head_channels=16,
        dropout=0.0,
        description=description,
    )
    # Attention writes nothing (o_proj = 0): a patch token's last hidden state depends on its own patch
    # only, so whatever the pooled features take from the prompt shows up as a change.
    with torch.no_grad():
        for layer in model.llm.layers:
            layer.self_attn.o_proj.weight.zero_()
    return msft.wrap(model, scales=[1, 2], horizon=16).eval()


def test_time_dpd_teacher_features_ignore_prompt_padding_and_prompt_length():
    pytest.importorskip("transformers")
    teacher = tiny_time_dpd_teacher()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 64, 1, generator=g)
    b = -50 + 1e3 * torch.randn(1, 64, 1, generator=g)  # other statistics: another prompt length
    with torch.no_grad():
        out = teacher.forward_features(torch.cat([a, b]), 16)
        _, alone = teacher_outputs(teacher, a, 16)
        _, together = teacher_outputs(teacher, torch.cat([a, b]), 16)
    fine = out.scales[0]
    prefix = fine.layout[0]
    padding = ~fine.valid[:, :prefix]
    assert padding.any()  # one of the two prompts is left-padded in the batch
    assert fine.valid[:, prefix:].all() and fine.layout[1] == 8  # 64 steps, patches of 16 every 8
    torch.testing.assert_close(together[:1], alone)  # batch composition (prompt padding) changes nothing
    assert not torch.allclose(fine.hidden.mean(1)[0], fine.pooled()[0], atol=1e-3)

    longer = tiny_time_dpd_teacher(description="a univariate time series of the trend and the seasonality. " * 4)
    longer.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        long_out = longer.forward_features(a, 16).scales[0]
        _, long_feats = teacher_outputs(longer, a, 16)
    assert long_out.layout[0] > teacher.forward_features(a, 16).scales[0].layout[0]
    torch.testing.assert_close(long_feats, alone)  # a longer prompt: the same patch-token features
