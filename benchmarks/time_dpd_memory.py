"""Memory of Time-DPD with its default LLM (DeepSeek-R1-Distill-Qwen-7B) at the default context.

Regenerate: ``HF_HUB_OFFLINE=1 python benchmarks/time_dpd_memory.py`` (writes results/time_dpd/memory.{md,json}).

Nothing is downloaded. Parameters are counted exactly on the meta device from the real model
classes built with the 7B config values (`msft_backbones.time_dpd.DEEPSEEK_R1_DISTILL_QWEN_7B`).
Activation memory is *measured*, for each variant of benchmarks/bench_time_dpd_step.py (msft [1,2,4]
with a shared prompt and with a prompt per scale, msft [1], peft LoRA, Time-DPD's own step): the real
forward + backward runs on CPU with random weights at the full 7B width (bf16 LLM), once with 1 and
once with 2 decoder layers, and every tensor autograd saves for the backward pass is summed (once per
storage, model weights excluded); the difference is one layer, so 28 layers = base + 28 x per-layer.
The measured model's vocabulary is the stand-in tokenizer's (nothing saved for backward depends on
the vocabulary size: the prototype matmul saves only the frozen embedding, a weight), which keeps the
1000 x V prototype map small. With gradient checkpointing (msft's per-layer
``gradient_checkpointing=True``) the tensors saved outside the layers are measured the same way
(1 and 2 layers); each layer then keeps its fp32 input and one layer at a time is recomputed in the
backward, so: outside + 28 x (layer input) + one layer's saved tensors (an estimate, not a
measurement of a peak). The prompt's token count comes from a word-level stand-in tokenizer that,
like Qwen2's, splits numbers into single digits (the Qwen2 tokenizer itself cannot be fetched here),
so the sequence lengths are estimates to a few tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msft  # noqa: E402
from benchmarks.bench_time_dpd_step import LIKE_FOR_LIKE, OWN, build_variant, saved_bytes  # noqa: E402
from msft_backbones.time_dpd import TimeDPD, TimeDPDConfig, default_llm_config  # noqa: E402
from msft_backbones.time_dpd.model import DEFAULT_SOFT_PROMPT  # noqa: E402
from msft_backbones.time_dpd.prompt import TEMPLATE  # noqa: E402

GiB = 1024**3
SCALES = [1, 2, 4]


def stand_in_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = TEMPLATE + " " + DEFAULT_SOFT_PROMPT + " " + TimeDPDConfig().description + " upward downward"
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)) | set("0123456789.-,:;"))
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


def build(
    num_layers: int, device: str, dtype: torch.dtype, vocab_size: int | None = None, prompt_sharing: str = "shared"
) -> TimeDPD:
    from transformers import Qwen2Model

    llm_config = default_llm_config()
    llm_config.num_hidden_layers = num_layers
    llm_config.layer_types = llm_config.layer_types[:num_layers]
    if vocab_size is not None:
        llm_config.vocab_size = vocab_size
    with torch.device(device):
        llm = Qwen2Model(llm_config).to(dtype)
        return TimeDPD(
            TimeDPDConfig(llm_dtype=str(dtype).removeprefix("torch."), dropout=0.0, prompt_sharing=prompt_sharing),
            llm=llm,
            tokenizer=stand_in_tokenizer(),
        )


def count(params) -> int:
    return sum(p.numel() for p in params)


def parameter_table() -> dict:
    model = build(28, "meta", torch.bfloat16)
    llm = count(model.llm.parameters())
    parts = {name: count(m.parameters()) for name, m in model.named_children() if name != "llm"}
    parts = {name: k for name, k in parts.items() if k}
    parts["soft_prompt"] = model.soft_prompt.numel()
    trainable = count(model.trainable_parameters().values())
    # msft's parts do not depend on the vocabulary and grow linearly with the layers: counted on 1- and
    # 2-layer models with a small vocabulary (wrapping reads the base weights' fingerprint: not on meta)
    per_layers = []
    for layers in (1, 2):
        wrapped = msft.wrap(build(layers, "cpu", torch.bfloat16, len(stand_in_tokenizer())), scales=SCALES)
        groups: dict[str, int] = {}
        for name, p in wrapped.msft_parameters().items():
            key = next(k for k in ("adapter", "lora", "aggregation", "heads", "fusion") if k in name)
            groups[key] = groups.get(key, 0) + p.numel()
        per_layers.append(groups)
        del wrapped
    groups = {k: per_layers[0][k] + 27 * (per_layers[1][k] - per_layers[0][k]) for k in per_layers[0]}
    return {
        "llm": llm,
        "trainable": trainable,
        "parts": parts,
        "msft": groups,
        "soft_prompt_tokens": model.soft_prompt.shape[0],
    }


def variant_table(series: int) -> dict:
    """Per variant: LLM tokens per series and the bytes saved for backward with 1 and 2 decoder layers,
    without and (msft's models) with gradient checkpointing."""
    torch.manual_seed(0)
    batch = (torch.randn(1, 512, series).cumsum(1), torch.randn(1, 96, series))
    vocab = len(stand_in_tokenizer())
    out = {}
    for label in (*LIKE_FOR_LIKE, OWN):
        row = {}
        for checkpointing in (False, True) if label != OWN else (False,):
            for layers in (1, 2):
                module, trainable = build_variant(
                    label,
                    lambda sharing, layers=layers: build(layers, "cpu", torch.bfloat16, vocab, sharing),
                    96,
                    wrap_options={"gradient_checkpointing": True} if checkpointing else None,
                )
                row[f"{'checkpointed' if checkpointing else 'saved'}_{layers}"] = saved_bytes(module, batch)
                row[f"trainable_{layers}"] = trainable
                if layers == 1 and not checkpointing:
                    row["tokens"] = llm_tokens(module, batch[0])
                    row["tokens_per_scale"] = llm_tokens(module, batch[0], per_scale=True)
                del module
        out[label] = row
    return out


def llm_tokens(module, x: torch.Tensor, per_scale: bool = False):
    """Tokens per series the LLM reads (prompt and patches; every scale's for msft)."""
    from msft.sampling import downsample, scaled_length

    series = x[0].T  # (series, 512)
    observed = torch.ones_like(series, dtype=torch.bool)
    with torch.no_grad():
        if not isinstance(module, msft.MSFTModel):
            sizes = [module.tokenize(series, observed, 96)[0].shape[1]]
        else:
            sizes = []
            for idx, scale in enumerate(module.scales):
                context, context_observed = downsample(series, observed, scale)
                with module._state.use(idx):
                    tokens = module.spec.embed(context, context_observed, scaled_length(96, scale), idx)
                sizes.append(tokens.hidden.shape[1])
    return sizes if per_scale else sum(sizes)


def summarise(rows: dict, d_llm: int, series: int, num_layers: int = 28) -> dict:
    """28-layer totals from the 1- and 2-layer measurements (see the module docstring)."""
    out = {}
    for label, r in rows.items():
        per_layer = r["saved_2"] - r["saved_1"]
        base = r["saved_1"] - per_layer
        v = dict(r, per_layer_bytes=per_layer, base_bytes=base, total_bytes=base + num_layers * per_layer)
        if "checkpointed_1" in r:
            outside = r["checkpointed_2"] - r["checkpointed_1"]
            layer_input = r["tokens"] * d_llm * 4 * series  # the fp32 hidden states a checkpointed layer keeps
            v["checkpointed_bytes"] = r["checkpointed_1"] - outside + num_layers * (outside + layer_input) + per_layer
        out[label] = v
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1, help="series (batch x variates) in the measured run")
    parser.add_argument("--out", type=Path, default=Path("results/time_dpd"))
    parser.add_argument("--render-only", action="store_true", help="rewrite memory.md from memory.json")
    args = parser.parse_args()
    if args.render_only:
        (args.out / "memory.md").write_text(render(json.loads((args.out / "memory.json").read_text())))
        return
    params = parameter_table()
    d_llm = default_llm_config().hidden_size
    variants = summarise(variant_table(args.series), d_llm, args.series)
    for v in variants.values():  # trainable parameters of the 28-layer model: linear in the layers
        v["trainable"] = v["trainable_1"] + 27 * (v["trainable_2"] - v["trainable_1"])
    variants[OWN]["trainable"] = params["trainable"]  # its prototype map depends on the real vocabulary
    result = {
        "command": "HF_HUB_OFFLINE=1 python benchmarks/time_dpd_memory.py",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "series": args.series,
        "params": params,
        "variants": variants,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(result, indent=2))
    (args.out / "memory.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    p, variants = r["params"], r["variants"]
    trainable_msft = sum(p["msft"].values())
    mib = lambda b: f"{b / 2**20:,.1f} MiB"  # noqa: E731
    gib = lambda b: f"{b / GiB:,.2f} GiB"  # noqa: E731
    lines = [
        "# Time-DPD memory (DeepSeek-R1-Distill-Qwen-7B, context 512, horizon 96)",
        "",
        f"Regenerate: `{r['command']}` (machine: {r['cpu_count']} cores, torch threads {r['torch_threads']}).",
        "",
        "## Parameters (exact: counted on the meta device from the real classes)",
        "",
        "| part | parameters | memory |",
        "|---|---:|---:|",
        f"| frozen LLM (28 layers + vocabulary embedding, no LM head), bf16 | {p['llm']:,} | {gib(2 * p['llm'])} |",
    ]
    for name, k in p["parts"].items():
        lines.append(f"| trainable: {name} (fp32) | {k:,} | {mib(4 * k)} |")
    lines += [
        f"| **trainable total** (fp32 weights + grads + 2 Adam moments = 16 B/param) | **{p['trainable']:,}** "
        f"| {gib(16 * p['trainable'])} |",
        f"| msft [1, 2, 4] additions: {', '.join(f'{k} {v:,}' for k, v in p['msft'].items())} | {trainable_msft:,} "
        f"| {gib(16 * trainable_msft)} with grads + Adam |",
        "",
        f"The soft prompt has {p['soft_prompt_tokens']} tokens with the stand-in tokenizer. The frozen LLM gets no "
        "gradients and no optimiser state, so training memory is about "
        f"{gib(2 * p['llm'] + 16 * p['trainable'])} for Time-DPD's own weights and optimiser, plus activations.",
        "",
        f"## Activations (measured, per {r['series']} series, bf16 LLM)",
        "",
        "Bytes autograd keeps for backward (distinct storages, weights excluded), measured with 1 and 2 decoder "
        "layers at the full 7B width on CPU (sdpa attention); the difference is one layer, 28 layers = base + 28 x "
        "per layer. With gradient checkpointing (msft's `gradient_checkpointing=True`; Time-DPD alone has none): "
        "what is saved outside the layers (measured the same way) + 28 x each layer's fp32 input + one layer "
        "recomputed at a time: an estimate. Trainable state: fp32 weights + gradients + 2 Adam moments of the "
        "28-layer model's trainable parameters. Tokens per series: every scale's prompt and patches.",
        "",
        "| variant | LLM tokens per series (per scale) | per decoder layer | 28 layers | 28 layers, checkpointed "
        "(estimate) | trainable parameters | trainable state |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in variants.items():
        checkpointed = gib(v["checkpointed_bytes"]) if "checkpointed_bytes" in v else "—"
        lines.append(
            f"| {name} | {v['tokens']} ({', '.join(map(str, v['tokens_per_scale']))}) | {mib(v['per_layer_bytes'])} | "
            f"{gib(v['total_bytes'])} | {checkpointed} | {v['trainable']:,} | {gib(16 * v['trainable'])} |"
        )
    lines += [
        "",
        "Activations grow linearly with the number of series (batch x variates): a batch of 56 series "
        "(8 windows x 7 ETTh1 variates) keeps 56 times the per-series numbers, e.g. "
        + ", ".join(f"{gib(56 * v['total_bytes'])} ({name})" for name, v in variants.items())
        + " without checkpointing. Nothing saved depends on the vocabulary (the prototype matmul saves only the "
        "frozen embedding, a weight); Time-DPD's own step makes a transient bf16 copy of the prototype map, "
        f"{p['parts']['prototype_map'] * 2 / 2**20:,.0f} MiB at the peak. Attention kernels differ by device: with "
        "GPU flash / memory-efficient attention the per-layer numbers are somewhat lower than this CPU measurement "
        "(no saved attention matrix).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
