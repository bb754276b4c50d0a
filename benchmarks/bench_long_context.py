"""What longer coarse history costs: one training step of the embedded tiny MOIRAI under msft with
per-scale context lengths, against today's msft and the LoRA baseline at short and long contexts.

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_long_context --out results/long_context

Batch 8 univariate random walks, horizon 96, patch 32, one thread. Variants (the past each is given):
msft [1,2,4] at L=512 (every scale sees 512 steps: today's default), msft [1,2,4] with
``context_lengths="equal_tokens"`` on a 2048-step past (scale s sees 512·s steps: 16 tokens each),
msft [1,2,4] at L=2048, and the LoRA baseline (peft, r=16, q/k/v, as msft-train builds it) at
L=512 and L=2048. Steps are timed round-robin (one step of each variant per round, so load from
other processes hits all alike); the median over rounds is reported with its ratio to msft at L=512.
Memory: bytes of the tensors autograd saves for backward (distinct storages, weights excluded:
exact and allocator-independent, `benchmarks.bench_moirai_step.saved_activation_bytes`).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.bench_moirai_step import saved_activation_bytes
from benchmarks.meta import cpu_run_meta

VARIANTS = {
    "msft [1,2,4], L=512 (today)": ("msft", 512, {}),
    "msft [1,2,4], equal_tokens, past 2048": ("msft", 2048, {"context_lengths": "equal_tokens"}),
    "msft [1,2,4], L=2048": ("msft", 2048, {}),
    "LoRA, L=512": ("lora", 512, None),
    "LoRA, L=2048": ("lora", 2048, None),
}
REFERENCE = "msft [1,2,4], L=512 (today)"


def build(horizon: int):
    from msft_backbones.moirai import load_tiny_moirai
    from msft_runner.methods import build_model

    pristine = load_tiny_moirai()
    models = {}
    for name, (kind, _, options) in VARIANTS.items():
        torch.manual_seed(0)
        wrap = {"patch_size": 32, "point_forecast": "mean"}
        built = build_model(copy.deepcopy(pristine), kind, horizon, options, {"r": 16, "alpha": 32}, 100, wrap)
        models[name] = built.model.train()
    return models


def batches(batch: int, horizon: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    walk = torch.randn(batch, 2048 + horizon, 1).cumsum(1) + 10
    past, future = walk[:, :2048], walk[:, 2048:]
    return {512: (past[:, -512:], future), 2048: (past, future)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/long_context"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=96)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = build(args.horizon)
    data = batches(args.batch, args.horizon)

    def step(name):
        model = models[name]
        model.zero_grad(set_to_none=True)
        loss = model.loss(*data[VARIANTS[name][1]])
        loss.backward()
        return loss

    for name in models:  # warm-up: first-call allocations are not a step's cost
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            start = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - start)
    rows = []
    reference = statistics.median(times[REFERENCE])
    for name, model in models.items():
        median = statistics.median(times[name])
        memory = saved_activation_bytes(lambda batch, name=name: step(name), None, model)
        rows.append(
            {
                "variant": name,
                "past_steps": VARIANTS[name][1],
                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "step_ms_median": round(1000 * median, 1),
                "ratio_to_msft_512": round(median / reference, 2),
                "saved_activations_mib": round(memory / 2**20, 1),
            }
        )
    command = "HF_HUB_OFFLINE=1 python -m benchmarks.bench_long_context --out " + str(args.out)
    meta = cpu_run_meta(command) | {"rounds": args.rounds, "batch": args.batch, "horizon": args.horizon}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Long coarse history: cost of one training step (embedded tiny MOIRAI)",
        "",
        f"Regenerate: `{command}`. {__doc__.split(chr(10) + chr(10))[2].strip()}",
        "",
        f"Machine: {meta['machine']}, {meta['cpu_cores']} cores, torch {meta['torch']} on 1 thread; "
        f"load average after the run {meta['load_average_after']} (a shared machine: read ratios, "
        f"which round-robin timing keeps fair, rather than absolute times). {args.rounds} rounds, "
        f"batch {args.batch}, horizon {args.horizon}.",
        "",
        "| variant | past steps | trainable params | step (ms, median) | vs msft L=512 | saved activations (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['past_steps']} | {r['trainable_params']:,} | {r['step_ms_median']} | "
            f"{r['ratio_to_msft_512']}× | {r['saved_activations_mib']} |"
        )
    (args.out / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
