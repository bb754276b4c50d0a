"""The backbone contract, checked on every registered backbone (its spec's ``tiny()`` builder).

A new backbone file is tested here by adding nothing but its ``tiny()``: identity at
initialisation, frozen weights, exact `unwrap`, adapter round trip, blocked == dense attention,
gradient checkpointing, and every method config of the runner (configs/method/*.yaml).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import msft
from msft.config import MSFTConfig
from msft.registry import BackboneSpec, PointForecast, build_spec, registered_backbones

SPECS = registered_backbones()
METHOD_DIR = Path(__file__).resolve().parents[2] / "configs" / "method"
METHODS = sorted(p.stem for p in METHOD_DIR.glob("*.yaml"))
SCALES = [1, 2, 4]


@pytest.fixture(params=sorted(SPECS), scope="module")
def spec(request) -> type[BackboneSpec]:
    return SPECS[request.param]


def tiny(spec: type[BackboneSpec]):
    return spec.tiny()


def series(setup, batch: int = 2, variates: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random walk with a few missing steps ``(batch, context, variate)`` and its future."""
    g = torch.Generator().manual_seed(seed)
    walk = torch.randn(batch, setup.context_length + setup.horizon, variates, generator=g).cumsum(1) + 5
    past, future = walk[:, : setup.context_length].clone(), walk[:, setup.context_length :]
    past[0, 3:7, 1] = float("nan")
    return past, future


def wrap(setup, **options) -> msft.MSFTModel:
    torch.manual_seed(0)  # LoRA A is drawn at random
    defaults = {"scales": SCALES, "horizon": setup.horizon, "point_forecast": "mean"}
    return msft.wrap(setup.backbone, **{**defaults, **setup.options, **options})


def perturb(model: msft.MSFTModel, seed: int = 3) -> None:
    """Move every msft parameter off its (identity) initial value, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def train(model: msft.MSFTModel, setup, steps: int = 2, tuner=None) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2) if params else None
    past, future = series(setup)
    losses = []
    for step in range(steps):
        loss = model.loss(past, future)
        losses.append(loss.item())
        if opt is None:
            continue
        opt.zero_grad()
        loss.backward()
        opt.step()
        if tuner is not None:
            tuner.update_and_allocate(step)
    return losses


def test_every_registered_spec_is_complete(spec):
    assert not spec.__abstractmethods__
    assert spec.probabilistic is spec.forecast_type.can_sample()
    assert spec.supports_prefix is (spec.add_prefix is not BackboneSpec.add_prefix)


def test_capabilities_follow_what_a_spec_implements():
    toy = SPECS["toy"]
    plain = type("PlainToy", (toy,), {"add_prefix": BackboneSpec.add_prefix})
    assert toy.supports_prefix and not plain.supports_prefix and not toy.probabilistic
    incomplete = type("Incomplete", (BackboneSpec,), {"name": "x", "module_types": (), "input_projection": "p"})
    with pytest.raises(TypeError, match="must implement"):
        msft.registry.register_backbone(incomplete)
    assert PointForecast(torch.zeros(2, 3)).point().shape == (2, 3)
    with pytest.raises(ValueError, match="point forecast"):
        PointForecast(torch.zeros(2, 3)).sample(4)


def test_single_scale_at_init_is_the_backbone(spec):
    setup = tiny(spec)
    setup.backbone.eval()
    past, _ = series(setup)
    with torch.no_grad():
        expected = setup.forecast(past)
        got = wrap(setup, scales=[1]).eval().predict(past, setup.horizon)
    assert got.shape == expected.shape == (2, setup.horizon, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_training_leaves_the_backbone_untouched_and_unwrap_is_exact(spec):
    setup = tiny(spec)
    backbone = setup.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    modules = {n: type(m) for n, m in backbone.named_modules()}
    grad_flags = {n: p.requires_grad for n, p in backbone.named_parameters()}
    model = wrap(setup).train()
    msft_before = {k: v.clone() for k, v in model.msft_parameters().items()}
    train(model, setup)
    assert all(p.grad is None for n, p in model.named_parameters() if "msft_" not in n)
    assert any(not torch.equal(v, msft_before[k]) for k, v in model.msft_parameters().items())
    restored = msft.unwrap(model)
    assert restored is backbone
    assert {n: type(m) for n, m in restored.named_modules()} == modules
    assert {n: p.requires_grad for n, p in restored.named_parameters()} == grad_flags
    after = restored.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_adapter_save_load_round_trip(spec, tmp_path):
    setup = tiny(spec)
    model = wrap(setup).eval()
    perturb(model)
    past, _ = series(setup)
    with torch.no_grad():
        expected = model.predict(past, setup.horizon)
    model.save_adapter(tmp_path / "adapter")
    loaded = msft.load_adapter(tiny(spec).backbone, tmp_path / "adapter").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(past, setup.horizon), expected, rtol=0, atol=0)


def test_blocked_attention_equals_the_dense_reference(spec):
    setup = tiny(spec)
    assert_blocked_equals_dense(wrap(setup).eval(), setup)


def assert_blocked_equals_dense(model: msft.MSFTModel, setup) -> None:
    """Forecast and loss of ``model`` (msft parameters moved off init) under blocked and dense attention."""
    perturb(model)
    past, future = series(setup)
    results = []
    with torch.no_grad():
        for impl in ("blocked", "dense"):
            model.config = dataclasses.replace(model.config, attention_impl=impl)
            results.append((model.predict(past, setup.horizon), model.loss(past, future)))
    for blocked, dense in zip(*results):
        # per-block vs one masked softmax: other reduction orders, float32 rounding (~1e-7 relative per
        # operation, a few hundred operations deep) stays far below 1e-5
        torch.testing.assert_close(dense, blocked, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["blocked", "dense"])
def test_gradient_checkpointing_gives_the_same_gradients(spec, impl):
    setup = tiny(spec)
    past, future = series(setup)
    grads = []
    for checkpointing in (False, True):
        model = wrap(tiny(spec), attention_impl=impl, gradient_checkpointing=checkpointing).train()
        perturb(model)
        torch.manual_seed(0)
        model.loss(past, future).backward()
        grads.append({n: p.grad for n, p in model.msft_parameters().items() if p.grad is not None})
    assert grads[0] and grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


def method_config(name: str) -> dict:
    """configs/method/<name>.yaml with its defaults (the msft base of the ablations) merged in."""
    cfg = OmegaConf.load(METHOD_DIR / f"{name}.yaml")
    bases = [OmegaConf.create(method_config(d)) for d in cfg.pop("defaults", []) if d != "_self_"]
    # resolve: data-dependent values (msft_authors_fusion's oc.select) fall back to their defaults
    return OmegaConf.to_container(OmegaConf.merge(*bases, cfg), resolve=True)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_trains(spec, method):
    from msft_runner.methods import build_model

    cfg = method_config(method)
    setup = tiny(spec)
    if cfg["kind"] == "prompt_tuning" and not spec.supports_prefix:
        pytest.skip(f"the {spec.name} backbone has no add_prefix")
    scales = (cfg.get("options") or {}).get("scales", [1])
    patch = build_spec(setup.backbone, MSFTConfig(horizon=setup.horizon, **setup.options)).patch_size()
    if max(scales) * patch > setup.context_length:  # msft rejects it with a clear error (tested elsewhere)
        pytest.skip(
            f"scales {scales} x patch {patch} need more than the tiny {spec.name} context {setup.context_length}"
        )
    lengths = (cfg.get("options") or {}).get("context_lengths")
    if isinstance(lengths, list) and max(lengths) > setup.context_length:  # per-scale contexts: test_context_lengths
        pytest.skip(f"context_lengths {lengths} need a longer past than the tiny {spec.name} context")
    args = (setup.backbone, cfg["kind"], setup.horizon, cfg.get("options"), cfg.get("peft"))
    if lengths is not None and spec.name == "time_dpd":  # its heads are sized by one context: a clear refusal
        with pytest.raises(ValueError, match="context_lengths="):
            build_model(*args, total_steps=10, wrap_options=setup.options)
        return
    if (cfg.get("options") or {}).get("fusion_objective") == "fused_crps" and not spec.probabilistic:
        with pytest.raises(ValueError, match=f"the {spec.name} backbone gives point forecasts"):
            build_model(*args, total_steps=10, wrap_options=setup.options)
        return
    targets = (cfg.get("peft") or {}).get("targets")
    if targets:  # module names of one family (lora_matched: MOIRAI's encoder)
        from msft.ops import match_modules

        try:
            match_modules(setup.backbone, targets)
        except ValueError:
            with pytest.raises(ValueError, match="peft.targets"):
                build_model(*args, total_steps=10, wrap_options=setup.options)
            return
    built = build_model(*args, total_steps=10, wrap_options=setup.options)
    model = built.model.train()
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert bool(trainable) is built.trains
    losses = train(model, setup, steps=1, tuner=built.tuner)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    if built.trains:
        assert any(not torch.equal(params[n], v) for n, v in trainable.items())
    if cfg["kind"] in ("lora", "adalora"):  # peft took exactly the modules msft's LoRA would (or peft.targets)
        wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in model.backbone.named_modules() if n.endswith(".lora_A")}
        assert wrapped == set(model.spec.lora_modules(tuple(targets) if targets else None))


def test_huge_magnitudes_give_finite_scale_equivariant_forecasts(spec):
    """Values up to 1e30 (float32 instance statistics overflow near 1e19): the core divides such series
    by a power of two, so forecasts stay finite and scale with the input; losses stay finite."""
    setup = tiny(spec)
    model = wrap(setup).eval()
    perturb(model)
    past, future = series(setup)
    with torch.no_grad():
        reference = model.predict(past, setup.horizon)
        huge = model.predict(past * 1e30, setup.horizon)
        loss = model.loss(past * 1e30, future * 1e30)
    assert torch.isfinite(huge).all() and torch.isfinite(loss)
    torch.testing.assert_close(huge / 1e30, reference, rtol=1e-3, atol=1e-3)
