"""Memory of Time-DPD with its default LLM (DeepSeek-R1-Distill-Qwen-7B) at the default context.

Regenerate: ``HF_HUB_OFFLINE=1 python benchmarks/time_dpd_memory.py`` (writes results/time_dpd/memory.{md,json}).

Nothing is downloaded. Parameters are counted exactly on the meta device from the real model
classes built with the 7B config values (`msft_backbones.time_dpd.DEEPSEEK_R1_DISTILL_QWEN_7B`).
Activation memory is *measured*: the real Time-DPD forward + backward runs on CPU with random
weights at the full 7B width, once with 1 and once with 2 decoder layers, and every tensor autograd
saves for the backward pass is summed (once per storage, model weights excluded); the difference is
one layer, so 28 layers = base + 28 x per-layer. The prompt's token count comes from a word-level
stand-in tokenizer that, like Qwen2's, splits numbers into single digits (the Qwen2 tokenizer
itself cannot be fetched here), so the sequence length is an estimate to a few tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msft  # noqa: E402
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


def build(num_layers: int, device: str, dtype: torch.dtype) -> TimeDPD:
    from transformers import Qwen2Model

    llm_config = default_llm_config()
    llm_config.num_hidden_layers = num_layers
    llm_config.layer_types = llm_config.layer_types[:num_layers]
    with torch.device(device):
        llm = Qwen2Model(llm_config).to(dtype)
        return TimeDPD(
            TimeDPDConfig(llm_dtype=str(dtype).removeprefix("torch."), dropout=0.0),
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
    with torch.device("meta"):
        wrapped = msft.wrap(model, scales=SCALES)
    groups = {}
    for name, p in wrapped.msft_parameters().items():
        key = next(k for k in ("adapter", "lora", "aggregation", "heads", "fusion") if k in name)
        groups[key] = groups.get(key, 0) + p.numel()
    return {
        "llm": llm,
        "trainable": trainable,
        "parts": parts,
        "msft": groups,
        "soft_prompt_tokens": model.soft_prompt.shape[0],
    }


def saved_bytes(run, exclude: set[int]) -> int:
    """Bytes of the distinct storages autograd saves for backward during ``run()``, minus weights."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()
    loss.backward()
    return sum(seen.values())


def activation_table(series: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(1, 512, series).cumsum(1)
    y = torch.randn(1, 96, series)
    out = {"series": series}
    for layers in (1, 2):
        model = build(layers, "cpu", torch.bfloat16)
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        hidden, aux = model.tokenize(x[0].T, torch.ones(series, 512, dtype=torch.bool), 96)
        out["tokens"] = hidden.shape[1]
        out["prefix_tokens"] = aux.num_prefix
        out[f"backbone_{layers}"] = saved_bytes(lambda model=model: model.loss(x, y), weights)
        wrapped = msft.wrap(model, scales=SCALES)
        weights |= {p.untyped_storage().data_ptr() for p in wrapped.parameters()}
        out[f"msft_{layers}"] = saved_bytes(lambda wrapped=wrapped: wrapped.loss(x, y), weights)
        out["msft_tokens"] = [t for t in _scale_tokens(wrapped, x)]
        del model, wrapped
    return out


def _scale_tokens(wrapped, x) -> list[int]:
    from msft.sampling import downsample

    series = x[0].T
    sizes = []
    with torch.no_grad():
        for idx, scale in enumerate(SCALES):
            context, observed = downsample(series, torch.ones_like(series, dtype=torch.bool), scale)
            with wrapped._state.use(idx):
                sizes.append(wrapped.spec.embed(context, observed, math.ceil(96 / scale), idx).hidden.shape[1])
    return sizes


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
    acts = activation_table(args.series)
    per_layer = acts["backbone_2"] - acts["backbone_1"]
    base = acts["backbone_1"] - per_layer
    msft_per_layer = acts["msft_2"] - acts["msft_1"]
    msft_base = acts["msft_1"] - msft_per_layer
    n = 28
    result = {
        "command": "HF_HUB_OFFLINE=1 python benchmarks/time_dpd_memory.py",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "params": params,
        "activations": acts,
        "per_layer_bytes": per_layer,
        "base_bytes": base,
        "total_28_layers_bytes": base + n * per_layer,
        "msft_per_layer_bytes": msft_per_layer,
        "msft_base_bytes": msft_base,
        "msft_total_28_layers_bytes": msft_base + n * msft_per_layer,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(result, indent=2))
    (args.out / "memory.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    p, a = r["params"], r["activations"]
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
        f"{gib(2 * p['llm'] + 16 * p['trainable'])} for the weights and optimiser, plus activations.",
        "",
        f"## Activations (measured, per {a['series']} series, bf16 LLM)",
        "",
        f"Sequence: {a['tokens']} tokens = {a['prefix_tokens']} prompt prefix (soft prompt + data prompt) + 64 patches; "
        f"msft scales [1, 2, 4]: {a['msft_tokens']} tokens.",
        "Bytes autograd keeps for backward (distinct storages, weights excluded), measured with 1 and 2 decoder "
        "layers at the full 7B width on CPU (sdpa attention); the difference is one layer.",
        "",
        "| | base (RevIN, prototypes, reprogramming, prompt, head) | per decoder layer | 28 layers total |",
        "|---|---:|---:|---:|",
        f"| Time-DPD | {mib(r['base_bytes'])} | {mib(r['per_layer_bytes'])} | {mib(r['total_28_layers_bytes'])} |",
        f"| msft [1, 2, 4] | {mib(r['msft_base_bytes'])} | {mib(r['msft_per_layer_bytes'])} "
        f"| {mib(r['msft_total_28_layers_bytes'])} |",
        "",
        "Activations grow linearly with the number of series (batch x variates): a batch of 56 series "
        f"(8 windows x 7 ETTh1 variates) keeps about {gib(56 * r['total_28_layers_bytes'])} (Time-DPD) and "
        f"{gib(56 * r['msft_total_28_layers_bytes'])} (msft) for backward. Nothing saved depends on the vocabulary "
        "(the prototype matmul saves only the frozen embedding, a weight); its transient bf16 copy of the "
        f"prototype map is {p['parts']['prototype_map'] * 2 / 2**20:,.0f} MiB at the peak. Attention kernels differ "
        "by device: with GPU flash / memory-efficient attention the per-layer number is somewhat lower than this "
        "CPU measurement (no saved attention matrix).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
