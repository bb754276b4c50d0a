"""MSFT on the real momentfm MOMENT, built offline from a tiny T5 geometry with random weights."""

from __future__ import annotations

import dataclasses
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import msft
from msft_backbones.moment import MomentSpec, build_moment, load_moment, moment_config

HORIZON = 24
TINY_T5 = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "vocab_size": 8}


def tiny_moment(seed: int = 0, dropout: bool = False, **model_kwargs):
    """A real MOMENTPipeline (forecasting head for HORIZON) with a tiny encoder; dropout off unless asked."""
    torch.manual_seed(seed)
    t5 = {**TINY_T5, "dropout_rate": 0.1 if dropout else 0.0}
    if not dropout:
        model_kwargs = {"head_dropout": 0.0, "patch_dropout": 0.0, **model_kwargs}
    return build_moment(t5, forecast_horizon=HORIZON, **model_kwargs)


def series(batch: int = 2, length: int = 512, variates: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    base = torch.sin(t / 7.0)[None, :, None] * torch.rand(batch, 1, variates, generator=g) * 3
    return base + 5 + 0.3 * torch.randn(batch, length, variates, generator=g)


def moment_forecast(model, past: torch.Tensor) -> torch.Tensor:
    """The unwrapped MOMENT forecast of (batch, L <= 512, variate), one variate at a time (MOMENT's
    input_mask is per series, not per channel): left-padded with NaN, input_mask 0 where NaN."""
    out = []
    for v in range(past.shape[2]):
        x = torch.nn.functional.pad(past[:, None, :, v], (512 - past.shape[1], 0), value=float("nan"))
        mask = (~torch.isnan(x[:, 0])).float()  # (batch, 512)
        out.append(model(x_enc=x, input_mask=mask).forecast[:, 0])  # (batch, horizon)
    return torch.stack(out, dim=-1)


def perturb_msft(model: msft.MSFTModel, seed: int = 3) -> None:
    """Give every msft parameter a non-trivial value (LoRA B, adapters and aggregation start at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


# -- equality with the unwrapped backbone -------------------------------------------------------
@pytest.mark.parametrize(
    "length, nan_steps",
    [(512, ()), (200, ()), (512, (5, 77, 78, 300, 511)), (96, (40,))],
    ids=["full", "short", "nans", "short-nans"],
)
def test_single_scale_at_init_equals_moment_forecast(length, nan_steps):
    model = tiny_moment().eval()
    past = series(length=length)
    past[:, list(nan_steps), 0] = float("nan")
    # MOMENT's head reads its padding tokens' outputs too: msft does that with padding="seq_len"
    # (at 512 steps nothing is padded and the default trimmed path is the same computation)
    options = {} if length == 512 else {"backbone_options": {"padding": "seq_len"}}
    with torch.no_grad():
        expected = moment_forecast(model, past)
        wrapped = msft.wrap(model, scales=[1], horizon=HORIZON, **options).eval()
        got = wrapped.predict(past, HORIZON)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_single_scale_equals_moment_with_the_msft_head_copied_into_it():
    model = tiny_moment(seed=4).eval()
    wrapped = msft.wrap(model, scales=[1], horizon=HORIZON, backbone_options={"padding": "seq_len"}).eval()
    with torch.no_grad():  # a head that is not the backbone's own (as after training msft's heads)
        for p in wrapped.msft_heads.parameters():
            p.normal_(0, 0.02)
    past = series(length=300)
    with torch.no_grad():
        got = wrapped.predict(past, HORIZON)
        plain = msft.unwrap(wrapped)
        plain.head.load_state_dict(wrapped.msft_heads[0].state_dict())
        expected = moment_forecast(plain, past)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_reconstruction_backbone_gets_fresh_heads_of_the_right_sizes():
    torch.manual_seed(0)
    model = build_moment(TINY_T5, forecast_horizon=None)  # the hub checkpoints' task
    wrapped = msft.wrap(model, scales=[1, 2, 4], horizon=96)
    assert [h.linear.out_features for h in wrapped.msft_heads] == [96, 48, 24]
    assert [h.linear.in_features for h in wrapped.msft_heads] == [32 * 64] * 3
    assert wrapped.predict(series(length=128), 96).shape == (2, 96, 2)


# -- training ------------------------------------------------------------------------------------
def test_forward_backward_multiscale_only_msft_parameters_get_gradients():
    model = tiny_moment(dropout=True)
    backbone_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapped = msft.wrap(model, scales=[1, 2, 4], horizon=HORIZON).train()
    past, future = series(), series(length=HORIZON, seed=9)
    loss = wrapped.loss(past, future)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    with_grad = {n for n, p in wrapped.named_parameters() if p.grad is not None}
    assert with_grad == set(wrapped.msft_parameters())
    assert all("msft_" in n for n in with_grad)
    for group in ("msft_heads.", "msft_adapter_weight", "msft_lora_B", "msft_c2f", "msft_f2c", "msft_fusion"):
        grads = [p.grad for n, p in wrapped.named_parameters() if group in n]
        assert grads and any(g.abs().sum() > 0 for g in grads), group
    torch.optim.SGD(wrapped.parameters(), lr=0.1).step()
    for n, p in msft.unwrap(wrapped).named_parameters():
        assert torch.equal(p, backbone_before[n]), n


def test_moment_own_gradient_checkpointing_is_done_by_msft_while_wrapped():
    """``enable_gradient_checkpointing=True`` (MOMENT's option) still checkpoints, with the scale
    replayed: the same gradients as without; unwrap gives the blocks their own flag back."""
    grads = []
    for checkpointing in (False, True):
        model = tiny_moment(seed=5, enable_gradient_checkpointing=checkpointing)
        wrapped = msft.wrap(model, scales=[1, 2, 4], horizon=HORIZON).train()
        perturb_msft(wrapped)
        assert wrapped._checkpointing is checkpointing
        wrapped.loss(series(), series(length=HORIZON, seed=9)).backward()
        grads.append({n: p.grad.clone() for n, p in wrapped.msft_parameters().items()})
        assert msft.unwrap(wrapped).encoder.block[0].gradient_checkpointing is checkpointing
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize(
    "length, nan_fraction",
    [(512, 0.0), (200, 0.0), (40, 0.0), (512, 0.2), (300, 0.5)],
    ids=["full", "short", "shortest", "nans", "short-many-nans"],
)
def test_short_and_missing_contexts_give_finite_loss(length, nan_fraction):
    wrapped = msft.wrap(tiny_moment(), scales=[1, 2, 4], horizon=HORIZON).train()
    past = series(length=length)
    g = torch.Generator().manual_seed(2)
    past[torch.rand(past.shape, generator=g) < nan_fraction] = float("nan")
    past[:, -1] = 1.0  # at least one observed value per series
    future = series(length=HORIZON, seed=9)
    future[0, :3, 0] = float("nan")
    loss = wrapped.loss(past, future)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in wrapped.msft_parameters().values() if p.grad is not None)


# -- padding and masking --------------------------------------------------------------------------
@pytest.mark.parametrize("scales", [[1], [1, 2, 4]])
def test_unobserved_steps_do_not_influence_the_forecast(scales):
    options = {"backbone_options": {"padding": "seq_len"}}  # c: padding tokens feed the heads as in a
    wrapped = msft.wrap(tiny_moment(), scales=scales, horizon=HORIZON, **options).eval()
    perturb_msft(wrapped)
    past = series(length=512)
    observed = torch.ones_like(past, dtype=torch.bool)
    observed[:, :312] = False  # the first 312 steps: masked padding
    observed[:, 400:403, 1] = False  # and a short gap
    noisy = past.clone()
    noisy[~observed] = torch.randn(int((~observed).sum())) * 1e3
    with torch.no_grad():
        a = wrapped.predict(past, HORIZON, observed)
        b = wrapped.predict(noisy, HORIZON, observed)
        # masking the first 312 steps is the same as passing only the last 200 (200 divides by 4):
        # internal left padding to 512 and masked steps are one and the same thing
        short_obs = observed[:, 312:]
        c = wrapped.predict(past[:, 312:], HORIZON, short_obs)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_padding_is_masked_in_attention_and_revin():
    spec = msft.wrap(tiny_moment(), scales=[1], horizon=HORIZON, backbone_options={"padding": "trim"}).spec
    context = torch.tensor([[1.0, 2.0, 3.0, 4.0] * 10])  # 40 steps: 5 patches
    observed = torch.ones_like(context, dtype=torch.bool)
    tokens = spec.embed(context, observed, HORIZON, 0)
    assert tokens.layout == (0, 5, 0)  # only the patches that hold data run
    assert tokens.aux.key_valid.all() and tokens.aux.positions.tolist() == list(range(59, 64))
    padded = msft.wrap(tiny_moment(), scales=[1], horizon=HORIZON, backbone_options={"padding": "seq_len"}).spec
    tokens = padded.embed(context, observed, HORIZON, 0)
    assert tokens.layout == (0, 64, 0)
    assert tokens.aux.key_valid.sum() == 5 and tokens.aux.key_valid[0, -5:].all()
    torch.testing.assert_close(tokens.aux.loc, torch.tensor([[2.5]]))
    torch.testing.assert_close(tokens.aux.scale, torch.tensor([[math.sqrt(1.25) + 1e-5]]))


# -- only tokens that hold data run (padding="trim") ----------------------------------------------
def _head_inputs(wrapped, past, padding):
    """Each scale's patch-token outputs as the head receives them, with the given padding."""
    seen, head = [], wrapped.spec.head
    wrapped.spec.padding = padding

    def record(hidden, tokens, *args):
        seen.append(hidden[:, tokens.num_prefix :])
        return head(hidden, tokens, *args)

    wrapped.spec.head = record
    try:
        with torch.no_grad():
            forecast = wrapped.predict(past, HORIZON)
    finally:
        del wrapped.spec.head
        wrapped.spec.padding = "trim"
    return seen, forecast


@pytest.mark.parametrize(
    "scales, length, options",
    [
        ([1, 2, 4], 512, {}),
        ([1, 2, 4], 300, {}),
        ([1, 2, 4], 200, {"attention_impl": "dense"}),
        ([1, 3], 512, {}),
        ([1, 2, 4, 8], 96, {"prompt_tokens": 2}),
    ],
    ids=["512", "300", "200-dense", "1-3", "96-prompt"],
)
def test_trimmed_tokens_equal_the_padded_computation(scales, length, options):
    wrapped = msft.wrap(tiny_moment(), scales=scales, horizon=HORIZON, **options).eval()
    perturb_msft(wrapped)  # aggregation and LoRA active: a kept token must not read a dropped one
    past = series(length=length)
    past[0, -150:-140, 1] = float("nan")
    trimmed, forecast = _head_inputs(wrapped, past, "trim")
    padded, _ = _head_inputs(wrapped, past, "seq_len")
    kept = [t.shape[1] for t in trimmed]
    if length == 512:
        assert kept == ([64, 32, 16] if scales == [1, 2, 4] else [64, 22])  # 171 steps at scale 3: 22 patches
    for scale, trim, pad in zip(scales, trimmed, padded):
        assert pad.shape[1] == 64 and trim.shape[1] >= math.ceil(math.ceil(length / scale) / 8)
        torch.testing.assert_close(trim, pad[:, -trim.shape[1] :], atol=1e-5, rtol=1e-5)
    # the heads read zeros at the dropped positions: with those weights zeroed, the forecasts agree
    with torch.no_grad():
        for head, n in zip(wrapped.msft_heads, kept):
            head.linear.weight[:, : (64 - n) * 32] = 0.0
        _, padded_forecast = _head_inputs(wrapped, past, "seq_len")
        _, forecast = _head_inputs(wrapped, past, "trim")
    torch.testing.assert_close(forecast, padded_forecast, atol=1e-5, rtol=1e-5)


def test_trimmed_token_counts_and_bad_padding():
    trim = {"padding": "trim"}
    spec = msft.wrap(tiny_moment(), scales=[1, 2, 4], horizon=HORIZON, backbone_options=trim).spec
    assert [spec.kept_patches(math.ceil(512 / s), i) for i, s in enumerate([1, 2, 4])] == [64, 32, 16]
    # 300 steps: the coarsest scale needs ceil(75 / 8) = 10 patches, the finer ones 20 and 40
    assert [spec.kept_patches(math.ceil(300 / s), i) for i, s in enumerate([1, 2, 4])] == [40, 20, 10]
    with pytest.raises(ValueError, match="padding"):
        msft.wrap(tiny_moment(), scales=[1, 2], horizon=HORIZON, backbone_options={"padding": "none"})
    with pytest.raises(ValueError, match="backbone_options"):
        msft.wrap(tiny_moment(), scales=[1, 2], horizon=HORIZON, backbone_options={"freq": "H"})


# -- attention implementations and ablations -----------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"adapters": False}, {"lora": False}, {"c2f": False, "f2c": False}, {"learned_fusion": False}],
    ids=["all", "no-adapters", "no-lora", "no-aggregation", "fixed-fusion"],
)
def test_blocked_and_dense_intra_scale_attention_agree(options):
    wrapped = msft.wrap(tiny_moment(), scales=[1, 2, 4], horizon=HORIZON, **options).eval()
    perturb_msft(wrapped)
    past = series(length=300)
    with torch.no_grad():
        blocked = wrapped.predict(past, HORIZON)
        wrapped.config = dataclasses.replace(wrapped.config, attention_impl="dense")
        dense = wrapped.predict(past, HORIZON)
        wrapped.config = dataclasses.replace(wrapped.config, intra_scale_attention=False)
        across = wrapped.predict(past, HORIZON)
    torch.testing.assert_close(dense, blocked, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(across).all() and not torch.allclose(across, blocked)


def test_channel_independence():
    wrapped = msft.wrap(tiny_moment(), scales=[1, 2, 4], horizon=HORIZON).eval()
    perturb_msft(wrapped)
    past = series(variates=3)
    with torch.no_grad():
        joint = wrapped.predict(past, HORIZON)
        single = torch.cat([wrapped.predict(past[..., i : i + 1], HORIZON) for i in range(3)], dim=-1)
        shorter = wrapped.predict(past, 8)
        partial = wrapped.predict(past, 10)
        wrapped.set_coarse_paths("repeat")
        repeated = wrapped.predict(past, HORIZON)
        repeated_partial = wrapped.predict(past, 10)
    torch.testing.assert_close(joint, single, atol=1e-5, rtol=1e-5)
    # a shorter horizon is the longer one's prefix when it ends on a block boundary of every scale
    # (8: scales 2 and 4); with coarse_paths="residual" a partial last block (10 at scale 4) reads
    # scale 1's within-block deviations over the steps the horizon has, so only "repeat" keeps it
    torch.testing.assert_close(shorter, joint[:, :8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(partial[:, :8], joint[:, :8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(repeated_partial, repeated[:, :10], atol=1e-5, rtol=1e-5)


# -- loading ----------------------------------------------------------------------------------------
def test_load_from_local_directory(tmp_path):
    torch.manual_seed(0)
    saved = build_moment(TINY_T5, forecast_horizon=None)  # what the hub holds: the reconstruction task
    saved.save_pretrained(tmp_path / "moment")
    loaded = load_moment(tmp_path / "moment", forecast_horizon=HORIZON)
    assert loaded.task_name == "forecasting" and loaded.head.linear.out_features == HORIZON
    mine = {n: p for n, p in loaded.state_dict().items() if not n.startswith("head.")}
    for name, tensor in saved.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(mine[name], tensor), name
    wrapped = msft.wrap(loaded, scales=[1, 2], horizon=HORIZON)
    assert wrapped.predict(series(length=64), HORIZON).shape == (2, HORIZON, 2)


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    """Offline and uncached, msft's own error names the repository and the way out; it is raised by the
    reachability check before momentfm is imported or the hub is retried."""
    from huggingface_hub import constants

    from msft.hub import HubUnreachableError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="MOMENT checkpoint 'AutonLab/MOMENT-1-small'.*pass that folder"):
        load_moment("small")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: msft.wrap(tiny_moment(), scales=[1, 2]), r"horizon=None"),
        (lambda: msft.wrap(tiny_moment(), scales=[1, 2], horizon=8).predict(series(), 16), r"horizon=16"),
        (lambda: msft.wrap(tiny_moment(), scales=[1], horizon=8).predict(series(length=600), 8), r"600 time steps"),
        (lambda: msft.wrap(tiny_moment(), scales=[1, 2, 4], horizon=8).predict(series(length=16), 8), r"16 time steps"),
        (lambda: load_moment("not a hub id"), r"neither a directory"),
        (lambda: moment_config("tiny"), r"t5_config='tiny'"),
        (lambda: moment_config({"d_model": 8}), r"lacks 'num_layers'"),
        (lambda: moment_config("small", seq_len=500), r"seq_len=500"),
    ],
    ids=[
        "no-horizon",
        "horizon-too-long",
        "context-too-long",
        "context-too-short",
        "bad-id",
        "bad-size",
        "bad-t5",
        "bad-seq-len",
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_missing_horizon_leaves_the_backbone_untouched():
    model = tiny_moment()
    with pytest.raises(ValueError):
        msft.wrap(model, scales=[1, 2])
    assert all(p.requires_grad for p in model.head.parameters())
    assert msft.wrap(model, scales=[1, 2], horizon=HORIZON).spec.__class__ is MomentSpec


def test_real_geometries():
    for size, (d_model, layers, heads) in {
        "small": (512, 8, 6),
        "base": (768, 12, 12),
        "large": (1024, 24, 16),
    }.items():
        t5 = moment_config(size)["t5_config"]
        assert (t5["d_model"], t5["num_layers"], t5["num_heads"]) == (d_model, layers, heads)


def test_soft_prompt_trains_alone_and_blocked_equals_dense():
    backbone = tiny_moment()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    only_prompt = dict(adapters=False, lora=False, c2f=False, f2c=False, learned_fusion=False)
    wrapped = msft.wrap(backbone, scales=[1, 2], horizon=HORIZON, prompt_tokens=3, **only_prompt)
    trainable = {n.split(".")[0] for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable == {"msft_prompt", "msft_heads"}  # MOMENT's heads are always trained
    past = series(length=300)
    future = torch.randn(past.shape[0], HORIZON, past.shape[2])
    wrapped.loss(past, future).backward()
    assert wrapped.msft_prompt.grad is not None and wrapped.msft_prompt.grad.abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    wrapped.eval()
    with torch.no_grad():
        blocked = wrapped.predict(past, HORIZON)
        wrapped.config = dataclasses.replace(wrapped.config, attention_impl="dense")
        dense = wrapped.predict(past, HORIZON)
    torch.testing.assert_close(dense, blocked, atol=1e-5, rtol=1e-5)
