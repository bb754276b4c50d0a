"""Time-DPD backbone and msft on it, with tiny random-weight Qwen2 / Llama / GPT-2 decoders and a
tokenizer built here, so nothing is downloaded (network access fails the test)."""

from __future__ import annotations

import dataclasses
import json
import math
import socket

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model

import msft
from msft.layers import ScaleAdapter, ScaleLoRA
from msft.sampling import downsample
from msft_backbones.time_dpd import TimeDPD, TimeDPDConfig, default_llm_config, format_prompt, prompt_statistics
from msft_backbones.time_dpd.llm import layer_inputs as llm_layer_inputs
from msft_backbones.time_dpd.model import RevIN
from msft_backbones.time_dpd.tiny import tiny_llm, tiny_tokenizer

CONTEXT, HORIZON = 64, 16
SMALL = dict(
    context_length=CONTEXT,
    horizon=HORIZON,
    d_model=8,
    num_heads=2,
    d_keys=8,
    num_prototypes=16,
    head_channels=16,
    dropout=0.0,
    llm_dtype="float32",
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


make_tokenizer = tiny_tokenizer
VOCAB = len(make_tokenizer())


def make_llm(kind: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    return tiny_llm(kind, vocab_size=VOCAB, dtype=dtype)


def make_model(kind: str = "qwen2", dtype: torch.dtype = torch.float32, **overrides) -> TimeDPD:
    config = TimeDPDConfig(**{**SMALL, "llm_dtype": str(dtype).removeprefix("torch."), **overrides})
    torch.manual_seed(1)
    return TimeDPD(config, llm=make_llm(kind, dtype), tokenizer=make_tokenizer())


def sine_batch(batch: int = 4, variates: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, 1, variates, generator=g) * 2 * math.pi
    level = torch.randn(batch, 1, variates, generator=g) * 3
    t = torch.arange(CONTEXT + HORIZON, dtype=torch.float32)[None, :, None]
    series = (
        level
        + 2 * torch.sin(2 * math.pi * t / 16 + phase)
        + 0.05 * torch.randn(batch, CONTEXT + HORIZON, variates, generator=g)
    )
    return series[:, :CONTEXT], series[:, CONTEXT:]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


# -- prompt and RevIN ------------------------------------------------------------------------------
def hand_statistics(x: np.ndarray, observed: np.ndarray, top_k: int):
    values = x[observed]
    t = np.arange(len(x))[observed]
    slope = np.polyfit(t, values, 1)[0]
    filled = np.where(observed, x, 0.0)
    n = len(x)
    autocorr = [sum(filled[i] * filled[(i + lag) % n] for i in range(n)) for lag in range(1, n // 2 + 1)]
    lags = sorted(range(1, n // 2 + 1), key=lambda lag: (-autocorr[lag - 1], lag))[:top_k]
    return values.min(), values.max(), np.median(values), "upward" if slope > 0 else "downward", tuple(lags)


def test_prompt_statistics_equal_a_hand_computation():
    g = torch.Generator().manual_seed(3)
    t = torch.arange(48, dtype=torch.float64)
    series = torch.stack(
        [
            torch.sin(2 * math.pi * t / 12) + 0.02 * t,
            -0.05 * t + torch.randn(48, generator=g, dtype=torch.float64),
            torch.cos(2 * math.pi * t / 7) + 0.3 * torch.sin(2 * math.pi * t / 5),
            torch.sin(2 * math.pi * t / 12) + 0.1 * torch.randn(48, generator=g, dtype=torch.float64),
        ]
    )
    observed = torch.ones_like(series, dtype=torch.bool)
    observed[1, :5] = False
    observed[2, 20:23] = False
    stats = prompt_statistics(series, observed, top_k=5)
    for row, s in enumerate(stats):
        lo, hi, mid, trend, lags = hand_statistics(series[row].numpy(), observed[row].numpy(), 5)
        assert s.minimum == pytest.approx(lo, abs=1e-5)
        assert s.maximum == pytest.approx(hi, abs=1e-5)
        assert s.median == pytest.approx(mid, abs=1e-5)
        assert (s.trend, s.lags) == (trend, lags)
    assert [s.trend for s in stats[:2]] == ["upward", "downward"]
    assert stats[3].lags[0] == 12
    text = format_prompt(stats[3], "toy data.", context=48, horizon=8)
    assert "forecast the next 8 steps given the previous 48 steps" in text
    assert f"min value {stats[3].minimum:.3f}" in text and "top 5 lags are : 12," in text


def test_revin_round_trips_exactly():
    torch.manual_seed(0)
    revin = RevIN()
    with torch.no_grad():
        revin.gamma.fill_(1.7)
        revin.beta.fill_(-0.4)
    x = torch.randn(5, 40) * 10 + 3
    observed = torch.rand(5, 40) > 0.2
    loc, scale = revin.statistics(x, observed)
    back = revin.denormalise(revin.normalise(revin.standardise(x, observed, loc, scale)), loc, scale)
    torch.testing.assert_close(back[observed], x[observed], rtol=1e-6, atol=1e-5)
    # the output is de-normalised: a constant shift and scale of the input moves the forecast alike
    model = make_model().eval()
    past, _ = sine_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(past * 3 + 7), model(past) * 3 + 7, rtol=1e-4, atol=1e-4)


# -- the backbone alone ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["qwen2", "llama", "gpt2"])
def test_forecast_of_a_series_does_not_depend_on_its_batch(kind):
    model = make_model(kind).eval()
    past, _ = sine_batch(batch=3, variates=2)
    with torch.no_grad():
        together = model(past)
        alone = torch.cat([model(past[i : i + 1]) for i in range(3)])
    assert together.shape == (3, HORIZON, 2)
    prompts = model._token_ids(
        [
            format_prompt(s, "x", CONTEXT, HORIZON)
            for s in prompt_statistics(
                past.transpose(1, 2).reshape(6, CONTEXT), torch.ones(6, CONTEXT, dtype=torch.bool)
            )
        ]
    )
    assert len({len(p) for p in prompts}) > 1, "the prompts should differ in length, so padding is exercised"
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_backbone_trains_and_only_its_trainable_parts_change(kind):
    model = make_model(kind)
    trainable = model.trainable_parameters()
    assert set(trainable) == {n for n, _ in model.named_parameters() if not n.startswith("llm.")}
    assert all(not p.requires_grad for p in model.llm.parameters())
    before = snapshot(model)
    optimiser = torch.optim.Adam(trainable.values(), lr=3e-3)
    past, future = sine_batch()
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = model.loss(past, future)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in model.llm.parameters())
    assert len(optimiser.state) == len(trainable)
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (name in trainable), name


def test_bf16_llm_with_fp32_trainable_parts_runs_forward_and_backward():
    model = make_model("qwen2", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.llm.parameters())
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters().values())
    past, future = sine_batch()
    loss = model.loss(past, future)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    for name, p in model.trainable_parameters().items():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
    assert model.soft_prompt.grad.abs().sum() > 0  # gradients flow back through the frozen LLM
    wrapped = msft.wrap(model, scales=[1, 2, 4])
    wrapped.loss(past, future).backward()
    assert all(p.grad is None for p in model.llm.parameters() if not p.requires_grad)


def test_loads_llm_and_tokenizer_from_a_local_directory(tmp_path):
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)  # the hub layout: a causal LM checkpoint
    make_tokenizer().save_pretrained(tmp_path)
    model = TimeDPD(TimeDPDConfig(**{**SMALL, "llm": str(tmp_path), "llm_layers": 2, "llm_dtype": "bfloat16"}))
    assert isinstance(model.llm, Qwen2Model) and len(model.llm.layers) == 2
    assert model.llm.embed_tokens.weight.dtype == torch.bfloat16
    reference = Qwen2ForCausalLM.from_pretrained(tmp_path).model
    torch.testing.assert_close(
        model.llm.layers[1].mlp.up_proj.weight.float(),
        reference.layers[1].mlp.up_proj.weight.to(torch.bfloat16).float(),
    )
    past, _ = sine_batch()
    assert model(past).shape == (4, HORIZON, 2)


def test_default_config_names_deepseek_and_its_sizes():
    assert TimeDPDConfig().llm == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    llm_config = default_llm_config()
    assert (
        llm_config.hidden_size,
        llm_config.num_hidden_layers,
        llm_config.num_attention_heads,
        llm_config.num_key_value_heads,
        llm_config.intermediate_size,
        llm_config.vocab_size,
    ) == (3584, 28, 28, 4, 18944, 152064)


@pytest.mark.parametrize(
    "field, value",
    [
        ("context_length", 0),
        ("llm_dtype", "int8"),
        ("dropout", 1.5),
        ("stride", 32),
        ("llm_layers", 0),
        ("soft_prompt", " "),
        ("prompt_sharing", "per_layer"),
    ],
)
def test_bad_config_values_raise(field, value):
    with pytest.raises(ValueError, match=field):
        TimeDPDConfig(**{**SMALL, field: value})


def test_bad_inputs_raise():
    model = make_model()
    with pytest.raises(ValueError, match="expected 64"):
        model(torch.randn(2, 50, 1))
    with pytest.raises(ValueError, match="batch, time, variate"):
        model(torch.randn(2, 64))
    with pytest.raises(ValueError, match="llm_layers=5"):
        make_model(llm_layers=5)


# -- msft on it ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["qwen2", "llama", "gpt2"])
def test_wrap_with_scale_1_equals_the_backbone_at_init(kind):
    model = make_model(kind).eval()
    past, _ = sine_batch()
    with torch.no_grad():
        expected = model(past)
        wrapped = msft.wrap(model, scales=[1], horizon=HORIZON).eval()
        got = wrapped.predict(past, HORIZON)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "kind, targets",
    [("qwen2", ("q_proj", "k_proj", "v_proj")), ("llama", ("q_proj", "k_proj", "v_proj")), ("gpt2", ("c_attn",))],
)
def test_lora_and_adapters_go_where_the_spec_says(kind, targets):
    model = make_model(kind)
    wrapped = msft.wrap(model, scales=[1, 2, 4])
    lora = [n for n, m in model.named_modules() if isinstance(m, ScaleLoRA)]
    assert len(lora) == 2 * len(targets) and all(n.rsplit(".", 1)[-1] in targets for n in lora)
    assert isinstance(model.reprogramming.out_projection, ScaleAdapter)
    assert [head.linear.out_features for head in wrapped.msft_heads] == [16, 8, 4]
    msft.unwrap(wrapped)
    assert not any(isinstance(m, (ScaleLoRA, ScaleAdapter)) for m in model.modules())


@pytest.mark.parametrize("method", ["lora", "adalora"])
@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_peft_lora_targets_what_msft_lora_targets(kind, method):
    """The runner's peft LoRA / AdaLoRA take the spec's lora_targets(): GPT-2's fused c_attn included."""
    from msft_runner.methods import build_model

    built = build_model(make_model(kind), method, HORIZON, peft={"r": 4, "alpha": 8}, total_steps=10)
    peft_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in built.model.backbone.named_modules() if n.endswith(".lora_A")}
    assert peft_modules == set(built.model.spec.lora_modules()) and len(peft_modules) == (2 if kind == "gpt2" else 6)
    past, future = sine_batch()
    built.model.loss(past, future).backward()
    assert all(p.grad is not None for n, p in built.model.named_parameters() if p.requires_grad and "lora_" in n)


def perturb(model: msft.MSFTModel, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


SHARING = ["shared", "per_scale"]


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_blocked_intra_scale_attention_equals_the_dense_masked_reference(kind, sharing):
    """per_scale: each scale's block through the layer alone against the joined, masked sequence
    (different shapes: float32 rounding, 1e-4 after two layers and a flatten head); shared: both run
    the joined sequence. Causal attention across scales (the ablation) must differ."""
    model = make_model(kind, prompt_sharing=sharing).eval()
    wrapped = msft.wrap(model, scales=[1, 2, 4]).eval()
    perturb(wrapped)
    past, _ = sine_batch()
    with torch.no_grad():
        blocked = wrapped.predict(past, HORIZON)
        wrapped.config = dataclasses.replace(wrapped.config, attention_impl="dense")
        dense = wrapped.predict(past, HORIZON)
        wrapped.config = dataclasses.replace(wrapped.config, intra_scale_attention=False)
        across = wrapped.predict(past, HORIZON)
    torch.testing.assert_close(blocked, dense, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(across).all() and not torch.allclose(across, dense, atol=1e-4)


def scale_tokens(wrapped: msft.MSFTModel, series: torch.Tensor) -> list:
    """Every scale's `ScaleTokens` of ``series`` ``(series, CONTEXT)``, embedded in order as msft does."""
    observed = torch.ones(series.shape, dtype=torch.bool)
    tokens = []
    for idx, scale in enumerate(wrapped.scales):
        context, context_observed = downsample(series, observed, scale)
        with wrapped._state.use(idx):
            tokens.append(wrapped.spec.embed(context, context_observed, math.ceil(HORIZON / scale), idx))
    return tokens


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("impl", ["blocked", "dense"])
def test_a_scale_sees_its_prompt_and_its_own_earlier_tokens_only(impl, sharing):
    """Perturbing the last token of scale 1 changes neither the other scales (intra-scale attention,
    no cross-scale aggregation here) nor scale 1's earlier tokens (causal). Perturbing a prompt token
    changes every scale whose prompt it is: all of them when shared, scale 1 only when per scale."""
    model = make_model(prompt_sharing=sharing).eval()
    wrapped = msft.wrap(model, scales=[1, 2, 4], c2f=False, f2c=False, attention_impl=impl).eval()
    perturb(wrapped)
    past, _ = sine_batch(batch=2, variates=1)
    with torch.no_grad():
        tokens = scale_tokens(wrapped, past[:, :, 0])
        base = [t.hidden for t in tokens]
        last, prompt = [base[0].clone(), *base[1:]], [base[0].clone(), *base[1:]]
        last[0][:, -1] += 1.0
        prompt[0][:, tokens[0].num_prefix - 1] += 1.0  # the prompt's last token (never padding)
        run = wrapped._layer_runner(tokens)
        for layer in wrapped.spec.layers():
            base, last, prompt = run(layer, base), run(layer, last), run(layer, prompt)

    # a masked key gets exactly zero weight, so tokens the change cannot reach keep their values; 1e-6
    # only leaves room for a kernel that would round differently
    def unchanged(a, b):
        return torch.allclose(a, b, rtol=0, atol=1e-6)

    for idx in (1, 2):
        assert unchanged(last[idx], base[idx])
        assert unchanged(prompt[idx], base[idx]) is (sharing == "per_scale")
    assert unchanged(last[0][:, :-1], base[0][:, :-1])
    assert not torch.allclose(last[0][:, -1], base[0][:, -1])
    assert not torch.allclose(prompt[0][:, -1], base[0][:, -1])
    assert tokens[0].num_prefix > 0 and tokens[0].num_context == model.config.num_patches()
    coarse_prefix = [t.num_prefix for t in tokens[1:]]
    assert coarse_prefix == [0, 0] if sharing == "shared" else all(p > 0 for p in coarse_prefix)


@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_shared_prompt_equals_each_scale_run_after_the_prompt_on_its_own(kind):
    """The joined run with one shared prompt gives every scale what running ``[prompt | its patches]``
    alone gives (plain causal mask, the prompt tokens under scale 1's LoRA pair, the scale's patches
    under its own): the prompt's keys and values do not depend on what follows them. Different shapes
    (the joined sequence is longer), so equal to float32 rounding: 1e-5 after two layers."""
    model = make_model(kind).eval()
    wrapped = msft.wrap(model, scales=[1, 2, 4], c2f=False, f2c=False).eval()
    perturb(wrapped)
    assert wrapped.spec.shared_prompt
    past, _ = sine_batch(batch=3, variates=1)
    layers = wrapped.spec.layers()
    with torch.no_grad():
        tokens = scale_tokens(wrapped, past[:, :, 0])
        joined = [t.hidden for t in tokens]
        run = wrapped._layer_runner(tokens)
        for layer in layers:
            joined = run(layer, joined)
        num_prefix = tokens[0].num_prefix
        prompt = tokens[0].hidden[:, :num_prefix]
        for idx, t in enumerate(tokens):
            patches = t.hidden[:, t.num_prefix :]
            alone = torch.cat([prompt, patches], dim=1)  # (series, prompt + patches, d_llm)
            valid = torch.cat([tokens[0].aux.valid[:, :num_prefix], t.aux.valid[:, t.num_prefix :]], dim=1)
            positions = torch.cat([tokens[0].aux.positions[:, :num_prefix], t.aux.positions[:, t.num_prefix :]], 1)
            inputs = llm_layer_inputs(model.llm, valid, positions)
            for layer in layers:
                with wrapped._state.use([(0, num_prefix), (idx, patches.shape[1])]):
                    alone = model.run_layer(layer, alone, inputs)
            torch.testing.assert_close(joined[idx][:, t.num_prefix :], alone[:, num_prefix:], rtol=1e-5, atol=1e-5)
    # scale 1's patch positions follow its prompt, and so do the coarse scales'
    assert [int(t.aux.positions[0, t.num_prefix]) for t in tokens] == [
        int(tokens[0].aux.valid[0, :num_prefix].sum())
    ] * 3


@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_shared_and_per_scale_prompts_are_the_same_model_with_one_scale(kind):
    """With one scale there is one prompt either way: the same computation, so bitwise equal, after
    perturbing every msft part as training would (and at initialisation, the backbone: tested above)."""
    past, future = sine_batch()
    forecasts, losses = [], []
    for sharing in SHARING:
        wrapped = msft.wrap(make_model(kind, prompt_sharing=sharing), scales=[1], horizon=HORIZON).eval()
        perturb(wrapped)
        with torch.no_grad():
            forecasts.append(wrapped.predict(past, HORIZON))
            losses.append(wrapped.loss(past, future))
    assert torch.equal(forecasts[0], forecasts[1]) and torch.equal(losses[0], losses[1])


def test_shared_prompt_costs_one_prompt():
    """msft [1, 2, 4] with a shared prompt feeds the LLM one prompt and every scale's patches."""
    past, _ = sine_batch(batch=2, variates=1)
    totals = {}
    for sharing in SHARING:
        wrapped = msft.wrap(make_model(prompt_sharing=sharing), scales=[1, 2, 4]).eval()
        with torch.no_grad():
            tokens = scale_tokens(wrapped, past[:, :, 0])
        totals[sharing] = sum(t.hidden.shape[1] for t in tokens)
        patches = sum(t.num_context for t in tokens)
    prompt = tokens[0].num_prefix
    assert totals["shared"] == prompt + patches < totals["per_scale"]


def test_multi_scale_model_trains_and_leaves_the_backbone_unchanged():
    model = make_model()
    before = snapshot(model)
    wrapped = msft.wrap(model, scales=[1, 2, 4], horizon=HORIZON)
    optimiser = torch.optim.Adam(wrapped.parameter_groups(lr=1e-2))
    past, future = sine_batch()
    losses = []
    for _ in range(50):
        optimiser.zero_grad()
        loss = wrapped.loss(past, future)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for n, p in wrapped.named_parameters() if "msft_" not in n)
    forecast = wrapped.predict(past, HORIZON)
    assert forecast.shape == (4, HORIZON, 2) and torch.isfinite(forecast).all()
    assert [f.shape[1] for f in wrapped.predict_scales(past, HORIZON)] == [16, 8, 4]
    restored = msft.unwrap(wrapped)
    assert restored is model
    after = snapshot(model)
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)
    assert set(model.trainable_parameters()) == {n for n in before if not n.startswith("llm.")}


def test_wrap_rejects_a_mismatched_horizon_or_context():
    model = make_model()
    with pytest.raises(ValueError, match="horizon=24"):
        msft.wrap(model, scales=[1, 2], horizon=24)
    wrapped = msft.wrap(model, scales=[1, 2])
    with pytest.raises(ValueError, match="expected 64"):
        wrapped.predict(torch.randn(2, 80, 1), HORIZON)


# -- Time-LLM's reference behaviours --------------------------------------------------------------
def test_reference_prompt_equals_a_hand_built_time_llm_prompt():
    """Time-LLM's prompt for a fixed series: full-precision numbers, the lower median, trend = last
    minus first, the top 5 lags of the full circular autocorrelation (lag 0 included) as a list."""
    from msft_backbones.time_dpd.prompt import reference_prompts

    x = [0.5, -1.25, 2.0, 0.75, -0.5, 1.5, -2.0, 0.25]  # exact in float32: printed as written
    n = len(x)
    autocorr = [sum(x[i] * x[(i + lag) % n] for i in range(n)) for lag in range(n)]
    # circular autocorrelation is symmetric (lag k = lag n - k): here lag 0, then the pairs 3/5 and 2/6
    top = sorted(range(n), key=lambda lag: -autocorr[lag])[:5]
    assert top[0] == 0 and set(top) == {0, 2, 3, 5, 6} and autocorr[2] > autocorr[1] > autocorr[4]
    expected = (
        "<|start_prompt|>Dataset description: Toy readings.Task description: forecast the next 4 steps given the "
        "previous 8 steps information; Input statistics: min value -2.0, max value 2.0, median value 0.25, "
        "the trend of input is downward, top 5 lags are : {}<|<end_prompt>|>"
    )
    series = torch.tensor([x, [-v for v in x]])
    prompts = reference_prompts(series, torch.ones_like(series, dtype=torch.bool), "Toy readings.", 8, 4)
    head, _, tail = prompts[0].partition("top 5 lags are : ")
    lags = json.loads(tail.removesuffix("<|<end_prompt>|>"))  # printed as a Python list
    assert prompts[0] == expected.format(lags)
    assert lags[0] == 0 and set(lags) == set(top)  # within a tied pair the order is torch.topk's, as in Time-LLM
    # the lower median (-0.5 and -0.25 are the middle values of the mirrored row) and an upward trend
    assert "median value -0.5," in prompts[1] and "trend of input is upward" in prompts[1]
    thirds = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert "min value 0.10000000149011612," in reference_prompts(thirds, thirds > -1, "d", 4, 1)[0]


def test_prompt_mode_reference_feeds_the_llm_time_llms_text():
    from msft_backbones.time_dpd.prompt import reference_prompts

    model = make_model(prompt="reference", description="Toy readings.").eval()
    x = torch.randn(2, CONTEXT)
    observed = torch.ones_like(x, dtype=torch.bool)
    loc, scale = model.revin.statistics(x, observed)
    standardised = model.revin.standardise(x, observed, loc, scale)
    assert model.prompts(standardised, observed, HORIZON) == reference_prompts(
        standardised, observed, "Toy readings.", CONTEXT, HORIZON
    )
    with torch.no_grad():
        assert torch.isfinite(model(x[..., None])).all()


def test_conv_patch_embedding_mixes_each_patch_with_its_circular_neighbours():
    model = make_model()  # patch_embedding="conv" is the default
    conv = model.patch_embedding.conv
    assert conv.bias is None and conv.kernel_size == (3,) and conv.padding_mode == "circular"
    patches = torch.randn(2, 5, 16)  # (series, patches, patch_len)
    w = conv.weight  # (d_model, patch_len, 3): taps on the previous, the same and the next patch
    expected = torch.stack(
        [
            patches[:, (i - 1) % 5] @ w[:, :, 0].T
            + patches[:, i] @ w[:, :, 1].T
            + patches[:, (i + 1) % 5] @ w[:, :, 2].T
            for i in range(5)
        ],
        dim=1,
    )
    torch.testing.assert_close(model.patch_embedding(patches), expected)
    linear = make_model(patch_embedding="linear")
    assert isinstance(linear.patch_embedding, torch.nn.Linear)
    with torch.no_grad():
        assert linear(sine_batch()[0]).shape == (4, HORIZON, 2)


def test_bos_token_starts_the_sequence_when_the_tokenizer_adds_one():
    tokenizer = tiny_tokenizer(bos=True)
    bos = tokenizer.bos_token_id
    torch.manual_seed(1)
    config = TimeDPDConfig(**SMALL)
    model = TimeDPD(config, llm=tiny_llm("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer).eval()
    plain = make_model().eval()
    assert model.leading_ids == [bos] and plain.leading_ids == []
    # the soft prompt is initialised from the text's own tokens, without BOS
    assert model.soft_prompt.shape[0] == len(tokenizer(config.soft_prompt, add_special_tokens=False)["input_ids"])
    past = sine_batch(batch=2, variates=1)[0][:, :, 0]
    hidden, aux = model.tokenize(past, torch.ones_like(past, dtype=torch.bool), HORIZON)
    bos_embedding = model.llm.get_input_embeddings().weight[bos]
    torch.testing.assert_close(hidden[:, 0], bos_embedding.expand(2, -1))  # first token, position 0
    torch.testing.assert_close(hidden[:, 1 : 1 + model.soft_prompt.shape[0]], model.soft_prompt.expand(2, -1, -1))
    assert aux.positions[:, 0].tolist() == [0, 0] and aux.valid[:, 0].all()
    assert aux.num_prefix == plain.tokenize(past, torch.ones_like(past, dtype=torch.bool), HORIZON)[1].num_prefix + 1
    with torch.no_grad():  # batch independence still holds with BOS in front
        torch.testing.assert_close(model(past[..., None])[:1], model(past[:1, :, None]), rtol=1e-5, atol=1e-5)


def test_inverse_normalisation_stays_finite_when_gamma_reaches_zero():
    model = make_model().eval()
    with torch.no_grad():
        model.revin.gamma.zero_()
        assert torch.isfinite(model(sine_batch()[0])).all()


# -- computed once: prototypes, reprogramming keys/values, prompt token ids ---------------------------
def _count_calls(monkeypatch, owner, name):
    calls = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_reprogramming_keys_values_are_cached_until_a_parameter_changes():
    model = make_model().eval()
    model.requires_grad_(False)
    fresh = model.reprogramming.keys_values(model.text_prototypes())
    first = model.reprogramming_keys_values()
    assert model.reprogramming_keys_values()[0] is first[0]  # reused
    for got, expected in zip(first, fresh):
        torch.testing.assert_close(got, expected)
    for param in (model.prototype_map.weight, model.reprogramming.value_projection.bias):
        with torch.no_grad():
            param.add_(0.1)  # in place, as an optimiser step: the version changes
        again = model.reprogramming_keys_values()
        assert again[0] is not first[0]
        for got, expected in zip(again, model.reprogramming.keys_values(model.text_prototypes())):
            torch.testing.assert_close(got, expected)
        first = again


def test_trainable_prototypes_are_recomputed_with_gradients():
    model = make_model().train()  # Time-DPD alone: the prototype map trains
    past, future = sine_batch()
    model.loss(past, future).backward()
    assert model.prototype_map.weight.grad is not None and model.prototype_map.weight.grad.abs().sum() > 0
    assert model._kv_cache is None  # nothing cached while gradients flow into the prototypes


@pytest.mark.parametrize("sharing, prompts", [("shared", 1), ("per_scale", 3)])
def test_msft_computes_prototypes_once_per_forward_and_not_again_at_inference(monkeypatch, sharing, prompts):
    from msft_backbones.time_dpd.model import TimeDPD

    model = make_model(prompt_sharing=sharing)
    wrapped = msft.wrap(model, scales=[1, 2, 4])
    perturb(wrapped)
    calls = _count_calls(monkeypatch, TimeDPD, "text_prototypes")
    tokenizer_calls = _count_calls(monkeypatch, model, "tokenizer")
    past, future = sine_batch()
    wrapped.train()
    wrapped.loss(past, future).backward()  # the backbone is frozen: cached for all three scales
    assert len(calls) == 1 and len(tokenizer_calls) == prompts  # one batched call per prompt (scale or shared)
    wrapped.eval()
    with torch.no_grad():
        first = wrapped.predict(past, HORIZON)
        second = wrapped.predict(past, HORIZON)
    assert len(calls) == 1 and len(tokenizer_calls) == prompts  # same prompts: token ids from the cache
    torch.testing.assert_close(first, second)
    model._kv_cache = None  # what an uncached forward gives
    model._ids_cache.clear()
    with torch.no_grad():
        torch.testing.assert_close(wrapped.predict(past, HORIZON), first)


def test_token_id_cache_is_bounded_and_keeps_order(monkeypatch):
    from msft_backbones.time_dpd import model as model_module

    model = make_model()
    monkeypatch.setattr(model_module, "_IDS_CACHE_SIZE", 3)
    texts = ["min value 1", "max value 2", "min value 1", "median value 3", "trend 4", "lags 5"]
    ids = model._token_ids(texts)
    assert ids == model.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert list(model._ids_cache) == texts[3:]
