"""MSFT on a real uni2ts MoiraiModule with the MOIRAI-1.1-R-small geometry and random weights."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from einops import rearrange

import msft
from msft_backbones import moirai as moirai_backbone
from msft_backbones.moirai import HubUnreachableError, load_moirai, moirai_from_config, pack_series
from msft_backbones.moirai.load import GEOMETRY_DIR
from msft_backbones.moirai.sampling import sample_mixture

pytest.importorskip("uni2ts")
from uni2ts.loss.packed import PackedNLLLoss  # noqa: E402
from uni2ts.model.moirai.forecast import MoiraiForecast  # noqa: E402

from tests.conftest import float32_tolerance  # noqa: E402

# The published MOIRAI 1.1-R small geometry, shipped with msft (checked against shared/reference below).
CONFIG = GEOMETRY_DIR / "moirai-1.1-R-small.json"
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "moirai-1.1-R-small" / "config.json"
PATCH = 16
CONTEXT, HORIZON = 8 * PATCH + 5, 20  # not multiples of the patch size: exercises MOIRAI's padding


@pytest.fixture(scope="module")
def pristine():
    """One randomly initialised 1.1-R-small module; tests take deep copies."""
    return moirai_from_config(CONFIG, seed=0)


@pytest.fixture
def module(pristine):
    return copy.deepcopy(pristine)


def series(batch=2, variates=2, context=CONTEXT, horizon=HORIZON, seed=0):
    g = torch.Generator().manual_seed(seed)
    past = torch.randn(batch, context, variates, generator=g).cumsum(1) + 10
    future = torch.randn(batch, horizon, variates, generator=g) + past[:, -1:]
    return past, future


def forecast_reference(module, patch, context, horizon):
    return MoiraiForecast(
        prediction_length=horizon,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
        context_length=context,
        module=module,
        patch_size=patch,
    )


def capture_params(module):
    """Record every output of the mixture head ``param_proj``."""
    seen = []
    handle = module.param_proj.register_forward_hook(lambda mod, args, out: seen.append(out))
    return seen, handle


def leaves(tree):
    return torch.utils._pytree.tree_flatten(tree)[0]


# -- packing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, context, horizon, nan_slices",
    [
        (8, 64, 16, []),
        (16, 133, 20, [(0, slice(0, 40))]),  # leading unobserved patches: time ids start late
        (32, 100, 7, [(1, slice(50, 90))]),  # a fully unobserved patch inside the context
        (64, 130, 96, [(0, slice(10, 11)), (1, slice(0, 3))]),
    ],
)
def test_packing_matches_moirai_forecast(pristine, patch, context, horizon, nan_slices):
    past, future = series(batch=2, variates=1, context=context, horizon=horizon)
    for row, where in nan_slices:
        past[row, where, 0] = float("nan")
    observed = ~torch.isnan(past)
    fc = forecast_reference(pristine, patch, context, horizon)
    expected = fc._convert(
        patch,
        torch.nan_to_num(past),  # gluonts' AddObservedValuesIndicator fills NaN with 0
        observed,
        torch.zeros(past.shape[:2], dtype=torch.bool),
        future_target=future,
        future_observed_target=torch.ones_like(future, dtype=torch.bool),
    )
    packed = pack_series(past[..., 0], observed[..., 0], horizon, patch, 128, future=future[..., 0])
    for name, want, got in zip(
        ("target", "observed_mask", "sample_id", "time_id", "variate_id", "prediction_mask"),
        expected,
        packed.module_inputs(),
    ):
        assert torch.equal(want, got), name


# -- scales=[1] is the unwrapped module -----------------------------------------------------------


def test_single_scale_equals_unwrapped_module(module):
    past, future = series()
    past[0, :30, 1] = float("nan")
    flat = rearrange(past, "b t v -> (b v) t")
    packed = pack_series(flat, ~torch.isnan(flat), HORIZON, PATCH, 128, future=rearrange(future, "b t v -> (b v) t"))

    seen, handle = capture_params(module)
    reprs, norm_handle = [], module.encoder.norm.register_forward_hook(lambda mod, args, out: reprs.append(out))
    with torch.no_grad():
        distr = module(*packed.module_inputs())
        expected_nll = PackedNLLLoss()(
            distr, packed.target, packed.prediction_mask, packed.observed_mask, packed.sample_id, packed.variate_id
        )
    handle.remove()
    model = msft.wrap(module, scales=[1], patch_size=PATCH)
    outputs = []
    head = model.spec.head
    model.spec.head = lambda *args: outputs.append(head(*args)) or outputs[-1]
    with torch.no_grad():
        nll = model.loss(past, future)
    norm_handle.remove()
    # Bitwise up to the head: with one scale msft calls MoiraiModule's own in_proj and encoder layers
    # on the same (series, tokens, d_model) tensors, and its identity adapter and B=0 LoRA add exact zeros.
    expected_reprs, got_reprs = reprs
    assert torch.equal(expected_reprs[:, packed.num_context :], got_reprs)
    # The head is a different computation: msft projects the horizon tokens with the one patch size's
    # weights (einsum), uni2ts every token with all patch sizes' masked weights, so the matrix products
    # have other shapes and round differently per CPU. Each parameter is a d_model-long dot product
    # (then a softplus/softmax domain map): float32 rounding over d_model terms of the output's size.
    (expected_params,), params = seen, outputs[0].params
    assert len(leaves(params)) == len(leaves(expected_params)) > 0
    for want, got in zip(leaves(expected_params), leaves(params)):
        if want.dim():  # (series, tokens, max_patch); 0-dim leaves are fixed scales
            want = want[:, packed.num_context :]
        torch.testing.assert_close(got, want, **float32_tolerance(module.d_model, want.abs().max()))
    # The NLL reads those parameters (log-densities of O(1) slope in them) and averages in another order.
    torch.testing.assert_close(nll, expected_nll, **float32_tolerance(module.d_model, expected_nll.abs()))


def test_single_scale_samples_are_moirai_forecast_paths(module):
    """Same distribution, same random stream: the paths MoiraiForecast formats from its prediction tokens."""
    past, _ = series(batch=2, variates=3)
    flat = rearrange(past, "b t v -> (b v) t")
    packed = pack_series(flat, torch.ones_like(flat, dtype=torch.bool), HORIZON, PATCH, 128)
    seen, handle = capture_params(module)
    with torch.no_grad():
        distr = module(*packed.module_inputs())
    handle.remove()
    n = packed.num_context
    params = torch.utils._pytree.tree_map(lambda t: t[:, n:] if t.dim() else t, seen[0])
    prediction = module.distr_output.distribution(params, loc=distr.loc[:, n:], scale=distr.scale[:, n:])
    torch.manual_seed(7)
    # msft draws only the chosen component at the PATCH positions a path reads (`sample_mixture`, the
    # same distribution as uni2ts' sampler: tests/backbones/test_moirai_sampler.py); padded to max_patch
    draws = sample_mixture(module.distr_output, params, prediction, 50, PATCH)  # (samples, series, n_horizon, PATCH)
    draws = torch.nn.functional.pad(draws, (0, 128 - PATCH))  # (samples, series, n_horizon, max_patch)
    draws = torch.cat([draws.new_zeros(50, flat.shape[0], n, 128), draws], dim=2)
    expected = forecast_reference(module, PATCH, CONTEXT, HORIZON)._format_preds(
        PATCH, draws, 1
    )  # (series, samples, H)

    model = msft.wrap(module, scales=[1], patch_size=PATCH)
    torch.manual_seed(7)
    with torch.no_grad():
        samples = model.predict_samples(past, HORIZON, num_samples=50)
    assert samples.shape == (2, 50, HORIZON, 3)
    # Same random stream, parameters equal up to the head's float32 rounding (see the test above);
    # a sample is loc + scale * a standard draw, so it inherits that rounding relative to its size
    # (rtol) or to the series' level (atol).
    tolerance = float32_tolerance(module.d_model, past.abs().max())
    torch.testing.assert_close(rearrange(samples, "b s t v -> (b v) s t"), expected, **tolerance)


# -- multi-scale training ---------------------------------------------------------------------------

CASES = {
    "blocked [1,2,4]": dict(scales=[1, 2, 4]),
    "blocked [1,2,4,8]": dict(scales=[1, 2, 4, 8]),
    "dense [1,2,4]": dict(scales=[1, 2, 4], attention_impl="dense"),
    "no intra-scale [1,2]": dict(scales=[1, 2], intra_scale_attention=False),
    "train head [1,2,4]": dict(scales=[1, 2, 4], backbone_options={"train_head": True}),
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_forward_backward_trains_only_msft(module, options):
    before = {n: t.clone() for n, t in module.state_dict().items()}
    model = msft.wrap(module, patch_size=PATCH, **options)
    past, future = series(context=8 * PATCH * 2 + 3)
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=1e-3), lr=1e-3)
    for _ in range(2):
        loss = model.loss(past, future)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if "msft_" in name:
            assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert not p.requires_grad and p.grad is None, name
    if options.get("backbone_options", {}).get("train_head"):
        assert any(n.startswith("msft_heads.") for n, _ in model.named_parameters())
    samples = model.predict_samples(past, HORIZON, num_samples=8)
    assert samples.shape == (2, 8, HORIZON, 2) and torch.isfinite(samples).all()
    backbone = msft.unwrap(model)
    after = backbone.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)


def perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def test_blocked_attention_equals_dense_mask(pristine):
    past, future = series(context=4 * PATCH * 4)
    blocked = msft.wrap(copy.deepcopy(pristine), scales=[1, 2, 4], patch_size=PATCH)
    perturb(blocked)  # non-zero LoRA / adapters / aggregation
    dense = msft.wrap(copy.deepcopy(pristine), scales=[1, 2, 4], patch_size=PATCH, attention_impl="dense")
    dense.load_state_dict(blocked.state_dict())  # LoRA A is randomly initialised: share every value
    with torch.no_grad():
        torch.testing.assert_close(blocked.loss(past, future), dense.loss(past, future), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scales, variate_bias", [([1, 2], False), ([1, 2, 4, 8], False), ([1, 2, 4], True)])
def test_concatenated_blocks_equal_separate_blocks(pristine, scales, variate_bias):
    """The fast path (token-wise parts over all scales, attention per block) is the per-block layer,
    whether or not it skips the (per-block constant) variate bias."""
    past, future = series(context=4 * PATCH * 8)
    fast = msft.wrap(copy.deepcopy(pristine), scales=scales, patch_size=PATCH)
    perturb(fast)
    if variate_bias:
        join_blocks = fast.spec.join_blocks
        fast.spec.join_blocks = lambda tokens: dataclasses.replace(join_blocks(tokens), uniform_blocks=False)
    reference = msft.wrap(copy.deepcopy(pristine), scales=scales, patch_size=PATCH)
    reference.load_state_dict(fast.state_dict())
    reference.spec.join_blocks = lambda tokens: None  # msft's default: each block through the layer
    losses = [model.loss(past, future) for model in (fast, reference)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    grads = []
    for model, loss in zip((fast, reference), losses):
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.msft_parameters().values()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_scales_as_variates_in_joint_layout(module):
    """Concatenated scales get their own variate ids, time ids from 0, and (block-diagonal) masks."""
    model = msft.wrap(module, scales=[1, 2], patch_size=PATCH, attention_impl="dense")
    flat = torch.randn(3, 4 * PATCH)
    tokens = [model.spec.embed(flat, torch.ones_like(flat, dtype=torch.bool), HORIZON, 0)]
    tokens.append(model.spec.embed(flat[:, ::2], torch.ones_like(flat[:, ::2], dtype=torch.bool), 10, 1))
    n0, n1 = (t.hidden.shape[1] for t in tokens)
    for block_diagonal in (True, False):
        aux = model.spec.join(tokens, block_diagonal)
        assert aux.variate_id[0].tolist() == [0] * n0 + [1] * n1
        assert aux.time_id[0, 0] == 0 and aux.time_id[0, n0] == 0
        assert bool(aux.attn_mask[:, :n0, n0:].any()) is not block_diagonal
        assert bool(aux.attn_mask[:, :n0, :n0].all())


def test_nan_context_and_future_train_with_finite_loss(module):
    model = msft.wrap(module, scales=[1, 2, 4], patch_size=PATCH)
    perturb(model)
    past, future = series(context=4 * PATCH * 4)
    past[0, : 3 * PATCH, 0] = float("nan")  # leading unobserved patches
    past[1, 100:140, 1] = float("nan")  # a gap covering whole patches
    past[0, 7::5, 1] = float("nan")  # scattered
    future[1, 3:9, 0] = float("nan")
    observed = torch.ones_like(past, dtype=torch.bool)
    observed[1, -10:, 0] = False  # masked but not NaN
    loss = model.loss(past, future, past_observed=observed)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.msft_parameters().items():
        assert torch.isfinite(p.grad).all(), name
    assert torch.isfinite(model.predict(past, HORIZON, past_observed=observed)).all()


def test_predict_is_median_of_fused_samples(module):
    model = msft.wrap(module, scales=[1, 2], patch_size=PATCH)
    past, _ = series(context=4 * PATCH * 2)
    torch.manual_seed(3)
    samples = model.predict_samples(past, HORIZON, num_samples=100)
    torch.manual_seed(3)
    point = model.predict(past, HORIZON)
    assert torch.equal(point, samples.median(dim=1).values)
    per_scale = model.predict_scales(past, HORIZON)
    assert [p.shape for p in per_scale] == [(2, HORIZON, 2), (2, HORIZON // 2, 2)]


def test_point_forecast_mean_is_the_unwrapped_distribution_mean(module):
    """scales=[1], point_forecast="mean": exactly the mean of MoiraiModule's own distribution."""
    past, _ = series()
    flat = rearrange(past, "b t v -> (b v) t")
    packed = pack_series(flat, ~torch.isnan(flat), HORIZON, PATCH, 128)
    with torch.no_grad():
        distr = module(*packed.module_inputs())
    mean = distr.mean[:, packed.num_context :, :PATCH]  # (series, horizon tokens, patch)
    expected = rearrange(rearrange(mean, "n t p -> n (t p)")[:, :HORIZON], "(b v) t -> b t v", v=past.shape[2])
    model = msft.wrap(module, scales=[1], patch_size=PATCH, point_forecast="mean")
    with torch.no_grad():
        torch.testing.assert_close(model.predict(past, HORIZON), expected)


def test_fused_mean_is_the_mean_of_fused_samples(module):
    model = msft.wrap(module, scales=[1, 2, 4], patch_size=PATCH, point_forecast="mean")
    perturb(model)
    past, _ = series(context=4 * PATCH * 2)
    torch.manual_seed(0)
    with torch.no_grad():
        mean = model.predict(past, HORIZON)
        samples = model.predict_samples(past, HORIZON, num_samples=4000)
    spread = samples.std(dim=1) / 4000**0.5  # standard error of the sample mean
    assert ((samples.mean(dim=1) - mean).abs() <= 6 * spread + 1e-4).all()


def test_adapter_round_trip(pristine, tmp_path):
    options = dict(scales=[1, 2, 4], patch_size=PATCH, backbone_options={"train_head": True})
    model = msft.wrap(copy.deepcopy(pristine), **options)
    past, future = series(context=4 * PATCH * 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    model.loss(past, future).backward()
    optimizer.step()
    with torch.no_grad():
        expected = model.loss(past, future)
    model.save_adapter(tmp_path / "adapter")
    loaded = msft.load_adapter(copy.deepcopy(pristine), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(loaded.loss(past, future), expected)
    assert loaded.spec.patch_size() == PATCH


# -- options and loading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(patch_size=12), "patch_size=12"),
        (dict(backbone_options={"heads": 1}), "heads"),
        (dict(backbone_options={"train_head": "yes"}), "train_head"),
        (dict(backbone_options={"freq": "fortnight"}), "fortnight"),
    ],
)
def test_bad_options_raise_before_touching_the_module(module, options, match):
    with pytest.raises(ValueError, match=match):
        msft.wrap(module, scales=[1, 2], **options)
    assert type(module.in_proj).__name__ == "MultiInSizeLinear"


@pytest.mark.parametrize(
    "freq, patch", [(None, 32), ("h", 32), ("15min", 32), ("D", 16), ("W-SUN", 16), ("MS", 8), ("10s", 64)]
)
def test_default_patch_size_per_frequency(module, freq, patch):
    assert moirai_backbone.default_patch_size(freq) == patch
    model = msft.wrap(module, scales=[1, 2], backbone_options={} if freq is None else {"freq": freq})
    assert model.spec.patch_size() == patch


def test_context_too_short_for_coarsest_scale(module):
    model = msft.wrap(module, scales=[1, 2, 4], patch_size=32)
    with pytest.raises(ValueError, match="4 \\* 32"):
        model.loss(*series(context=100))


def test_load_from_local_directory(pristine, tmp_path):
    pristine.save_pretrained(tmp_path / "ckpt")
    loaded = load_moirai(tmp_path / "ckpt")
    expected = pristine.state_dict()
    assert all(torch.equal(expected[n], t) for n, t in loaded.state_dict().items())
    assert tuple(loaded.patch_sizes) == tuple(pristine.patch_sizes)


def test_load_from_config_file_directory_or_shipped_name(tmp_path):
    (tmp_path / "config.json").write_text(CONFIG.read_text())
    a = moirai_from_config(CONFIG, seed=1)
    b = moirai_from_config(tmp_path, seed=1)
    c = moirai_from_config("moirai-1.1-R-small", seed=1)
    assert a.d_model == 384 and len(a.encoder.layers) == 6
    for other in (b, c):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values()))


def test_shipped_geometry_is_the_published_config():
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found (the shared reference directory is beside the checkout in CI)")
    assert json.loads(CONFIG.read_text()) == json.loads(REFERENCE.read_text())


def test_missing_local_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_moirai(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_moirai(tmp_path / "empty")


def test_hub_offline_error_says_how_to_use_a_directory(tmp_path):
    with pytest.raises(HubUnreachableError, match="moirai-1.1-R-small.*pass that directory"):
        load_moirai("Salesforce/moirai-1.1-R-small", cache_dir=tmp_path)


def test_hub_unreachable_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match="Salesforce/moirai-1.0-R-base"):
        load_moirai("Salesforce/moirai-1.0-R-base", cache_dir=tmp_path, endpoint="http://127.0.0.1:9", timeout=2)
    # hf_hub_download's own retries take ~20 s here; the loader must not wait for them
    assert time.monotonic() - start < 10


def test_prompt_tokens_on_every_attention_path(pristine):
    """Soft prompts: same sample and variate as the series, time ids 0..P-1 with the series shifted
    by P; per-block, blocked (join_blocks) and dense paths agree; only the prompt trains."""
    past, future = series(context=4 * PATCH * 4)
    fast = msft.wrap(copy.deepcopy(pristine), scales=[1, 2, 4], patch_size=PATCH, prompt_tokens=3)
    perturb(fast)
    flat = torch.randn(2, 4 * PATCH)
    plain = fast.spec.embed(flat, torch.ones_like(flat, dtype=torch.bool), HORIZON, 0)
    tokens = fast.spec.add_prefix(plain, torch.zeros(2, 3, fast.spec.d_model()))
    assert tokens.layout == (3, plain.num_context, plain.num_horizon)
    assert tokens.aux.time_id[0].tolist() == [0, 1, 2] + (plain.aux.time_id[0] + 3).tolist()
    assert bool((tokens.aux.sample_id == plain.aux.sample_id[:, :1]).all())
    assert bool(tokens.aux.attn_mask.all()) and bool((tokens.aux.variate_id == 0).all())
    models = {"fast": fast}
    for name, options in {"per_block": {}, "dense": dict(attention_impl="dense")}.items():
        models[name] = msft.wrap(
            copy.deepcopy(pristine), scales=[1, 2, 4], patch_size=PATCH, prompt_tokens=3, **options
        )
        models[name].load_state_dict(fast.state_dict())
    models["per_block"].spec.join_blocks = lambda tokens: None
    losses = {name: model.loss(past, future) for name, model in models.items()}
    for name in ("per_block", "dense"):
        torch.testing.assert_close(losses["fast"], losses[name], rtol=1e-5, atol=1e-5)
    only = msft.wrap(
        copy.deepcopy(pristine),
        scales=[1],
        patch_size=PATCH,
        prompt_tokens=2,
        adapters=False,
        lora=False,
        learned_fusion=False,
    )
    assert {n for n, p in only.named_parameters() if p.requires_grad} == {"msft_prompt"}
    before = {n: t.clone() for n, t in only.backbone.state_dict().items()}
    start = only.msft_prompt.detach().clone()
    optim = torch.optim.Adam([only.msft_prompt], lr=1e-2)
    only.loss(past, future).backward()
    optim.step()
    assert not torch.equal(only.msft_prompt.detach(), start)
    assert all(torch.equal(before[n], t) for n, t in only.backbone.state_dict().items())


# -- the GPU path: bf16 autocast, torch.compile ----------------------------------------------------------
def test_msft_trains_under_bf16_autocast_with_fp32_parameters(module):
    wrapped = msft.wrap(module, scales=[1, 2, 4], patch_size=PATCH).train()
    past, future = series()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = wrapped.loss(past, future)
    loss.backward()
    assert torch.isfinite(loss)
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in trainable)
    assert all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)
    assert wrapped.backbone.encoder.layers[0].self_attn.q_proj.msft_lora_B.grad.abs().sum() > 0


@pytest.mark.slow  # dynamo traces uni2ts and the mixture distribution: minutes on a loaded CPU
def test_compiled_forward_gives_the_same_output_without_graph_breaks():
    """fullgraph=True fails on any graph break, so this also checks that the forward has no host sync."""
    wrapped = msft.wrap(moirai_backbone.load_tiny_moirai(), scales=[1, 2, 4], patch_size=32).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in wrapped.msft_parameters().values():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    past = torch.randn(2, 200, 1, generator=g).cumsum(1)
    observed = torch.ones_like(past, dtype=torch.bool)

    def forecast(past, observed):
        outputs = wrapped._forward(past, observed, 24)
        return wrapped._fuse([o.mean() for o in outputs], 24)  # each scale's Forecast: its closed-form mean

    with torch.no_grad():
        expected = forecast(past, observed)
        got = torch.compile(forecast, backend="aot_eager", fullgraph=True)(past, observed)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
