"""Invariants of msft.wrap on the toy backbone (the core's contract, docs/design.md §2)."""

import json

import pytest
import torch
from safetensors import safe_open

import msft
from msft_backbones.toy import ToyForecaster

HORIZON = 24


def make_backbone(seed=0, **overrides):
    torch.manual_seed(seed)
    return ToyForecaster(**overrides)


def sine_batch(batch=8, length=96, horizon=HORIZON, variates=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length + horizon, dtype=torch.float32)
    phase = torch.rand(batch, 1, variates, generator=g) * 6.28
    period = 12 + 12 * torch.rand(batch, 1, variates, generator=g)
    series = torch.sin(2 * torch.pi * t[None, :, None] / period + phase)
    series = series + 0.05 * torch.randn(series.shape, generator=g)
    return series[:, :length], series[:, length:]


def randomize_msft(model, seed=1):
    """Move every msft parameter off its initial value (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def backbone_state(backbone):
    return {k: v.clone() for k, v in backbone.state_dict().items()}


def test_single_scale_wrap_is_exactly_the_backbone():
    backbone = make_backbone()
    past, _ = sine_batch()
    expected = backbone.forecast(past, HORIZON)
    model = msft.wrap(backbone, scales=[1])
    torch.testing.assert_close(model.predict(past, HORIZON), expected, rtol=0, atol=0)


def test_scale_one_of_multiscale_model_is_the_backbone_at_init():
    backbone = make_backbone()
    past, _ = sine_batch(length=100)  # not a multiple of the patch or of the scales
    expected = backbone.forecast(past, HORIZON)
    model = msft.wrap(backbone, scales=[1, 2, 4])
    per_scale = model.predict_scales(past, HORIZON)
    torch.testing.assert_close(per_scale[0], expected, rtol=0, atol=0)
    assert [p.shape[1] for p in per_scale] == [24, 12, 6]
    torch.testing.assert_close(model.fusion_weights, torch.full((3,), 1 / 3))


def test_wrapped_backbone_called_directly_is_unchanged():
    backbone = make_backbone()
    past, _ = sine_batch()
    expected = backbone.forecast(past, HORIZON)
    model = msft.wrap(backbone, scales=[1, 2])
    randomize_msft(model)
    torch.testing.assert_close(model.backbone.forecast(past, HORIZON), expected, rtol=0, atol=0)


def train(model, steps=5, lr=1e-2, seed=0):
    past, future = sine_batch(seed=seed)
    opt = torch.optim.Adam(model.parameter_groups(lr), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss(past, future)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_changes_only_msft_parameters_and_unwrap_restores():
    backbone = make_backbone()
    before = backbone_state(backbone)
    original_modules = {n: type(m) for n, m in backbone.named_modules()}
    model = msft.wrap(backbone, scales=[1, 2, 4])
    msft_before = {k: v.clone() for k, v in model.msft_parameters().items()}
    train(model)
    for name, p in model.named_parameters():
        if "msft_" not in name:
            assert p.grad is None and not p.requires_grad, name
    changed = [k for k, v in model.msft_parameters().items() if not torch.equal(v, msft_before[k])]
    assert changed, "no msft parameter was trained"
    restored = msft.unwrap(model)
    assert restored is backbone
    assert {n: type(m) for n, m in restored.named_modules()} == original_modules
    after = restored.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k  # bit-identical
    assert all(p.requires_grad for p in restored.parameters())
    msft.wrap(restored, scales=[1, 2])  # can be wrapped again after unwrap


def test_save_load_adapter_round_trip(tmp_path):
    model = msft.wrap(make_backbone(), scales=[1, 2, 4], lora_rank=4, fusion_prior=0.5)
    randomize_msft(model)
    past, _ = sine_batch()
    expected = model.predict(past, HORIZON)
    path = model.save_adapter(tmp_path / "adapter")
    assert sorted(p.name for p in path.iterdir()) == ["adapter.safetensors", "msft_config.json"]
    with safe_open(str(path / "adapter.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys and all("msft_" in k for k in keys)
    assert keys == set(model.msft_parameters())
    meta = json.loads((path / "msft_config.json").read_text())
    assert meta["backbone"] == "toy" and meta["config"]["scales"] == [1, 2, 4]

    loaded = msft.load_adapter(make_backbone(), path)  # a fresh copy of the same backbone
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.predict(past, HORIZON), expected, rtol=0, atol=0)


def test_load_adapter_rejects_a_different_geometry(tmp_path):
    path = msft.wrap(make_backbone(), scales=[1, 2]).save_adapter(tmp_path / "a")
    other = make_backbone(d_model=16)
    with pytest.raises(ValueError, match="does not fit"):
        msft.load_adapter(other, path)
    assert not hasattr(other, "_msft_wrapped")  # left unwrapped on failure
    with pytest.raises(FileNotFoundError, match="save_adapter"):
        msft.load_adapter(other, tmp_path / "missing")


def test_parameter_groups_cover_every_trainable_parameter():
    model = msft.wrap(make_backbone(), scales=[1, 2, 4])
    groups = model.parameter_groups(1e-3, xscale_lr=1e-2, head_lr=1e-4, scale_weight_lr=1e-1)
    by_name = {g["name"]: g for g in groups}
    assert {k: g["lr"] for k, g in by_name.items()} == {"lr": 1e-3, "xscale": 1e-2, "fusion": 1e-1}
    grouped = sum(p.numel() for g in groups for p in g["params"])
    assert grouped == sum(p.numel() for p in model.parameters() if p.requires_grad)
