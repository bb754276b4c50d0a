"""One Moirai-2 training step (forward, pinball loss, backward): msft [1,2,4] against peft LoRA.

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_moirai2_step --out results/moirai2

Random weights with the Moirai-2.0-R-small geometry (backbones/moirai/geometry/moirai-2.0-R-small.json:
6 layers, width 384, patch 16, 4 tokens predicted at once); batch ``--batch`` univariate series,
context 512, horizon 96 (beyond one token's 64 steps: the horizon rides on missing patches), CPU,
one thread. Variants, each through the runner's method (`msft_runner.methods.build_model` with
configs/method/{msft,msft_single_scale,lora}.yaml) on its own copy of the frozen backbone: msft
[1,2,4], msft [1], and peft LoRA on the same q/k/v. Steps are timed round-robin (one step of each
variant per round, the order rotated every round) so that load from other processes hits all
alike; the median over rounds is reported, with process CPU time beside wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks.meta import cpu_run_meta

REPO = Path(__file__).resolve().parents[1]
MSFT, SINGLE, LORA = "msft [1,2,4]", "msft [1]", "peft LoRA (q/k/v)"
METHODS = {MSFT: "msft", SINGLE: "msft_single_scale", LORA: "lora"}


def method_config(name: str) -> dict:
    """configs/method/<name>.yaml merged over its defaults."""
    cfg = OmegaConf.load(REPO / "configs" / "method" / f"{name}.yaml")
    bases = [OmegaConf.create(method_config(d)) for d in cfg.pop("defaults", []) if d != "_self_"]
    return OmegaConf.to_container(OmegaConf.merge(*bases, cfg), resolve=True)


def build_variants(horizon: int) -> dict:
    """label -> (module with ``loss(past, future)``, trainable parameter count)."""
    from msft_backbones.moirai2 import moirai2_from_config
    from msft_runner.methods import build_model

    variants = {}
    for label, method in METHODS.items():
        cfg = method_config(method)
        backbone = moirai2_from_config("moirai-2.0-R-small", seed=0)
        module = build_model(backbone, cfg["kind"], horizon, cfg.get("options"), cfg.get("peft")).model.train()
        variants[label] = (module, sum(p.numel() for p in module.parameters() if p.requires_grad))
    return variants


def step(module, batch) -> None:
    module.loss(*batch).backward()
    module.zero_grad(set_to_none=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "moirai2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    torch.manual_seed(0)
    past = torch.randn(args.batch, args.context, 1).cumsum(1) + 10
    batch = (past, torch.randn(args.batch, args.horizon, 1) + past[:, -1:])
    variants = build_variants(args.horizon)
    labels = list(variants)
    for _ in range(args.warmup):
        for label in labels:
            step(variants[label][0], batch)
    wall: dict[str, list[float]] = {label: [] for label in labels}
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(args.rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:  # rotated order
            start, cpu_start = time.perf_counter(), time.process_time()
            step(variants[label][0], batch)
            wall[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - cpu_start)

    lora_wall, lora_cpu = statistics.median(wall[LORA]), statistics.median(cpu[LORA])
    rows = [
        dict(
            variant=label,
            median_ms=1e3 * statistics.median(wall[label]),
            min_ms=1e3 * min(wall[label]),
            vs_lora=statistics.median(wall[label]) / lora_wall,
            median_cpu_ms=1e3 * statistics.median(cpu[label]),
            cpu_vs_lora=statistics.median(cpu[label]) / lora_cpu,
            trainable_params=variants[label][1],
        )
        for label in labels
    ]
    command = "HF_HUB_OFFLINE=1 python -m benchmarks.bench_moirai2_step " + " ".join(sys.argv[1:])
    meta = dict(cpu_run_meta(command), batch=args.batch, context=args.context, horizon=args.horizon, rounds=args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_time.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")
    lines = [
        "# Moirai-2 training step: msft [1,2,4] vs peft LoRA",
        "",
        f"Written by `{command.strip()}` (benchmarks/bench_moirai2_step.py; its docstring says what is timed).",
        f"Moirai-2.0-R-small geometry, random weights; batch {args.batch}, context {args.context}, horizon "
        f"{args.horizon}; 1 torch thread, {args.rounds} interleaved rounds, median; load average after: "
        f"{meta['load_average_after']}.",
        "",
        "| variant | median step (ms) | min (ms) | vs LoRA | median CPU (ms) | CPU vs LoRA | trainable params |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['vs_lora']:.2f}x | "
        f"{r['median_cpu_ms']:.0f} | {r['cpu_vs_lora']:.2f}x | {r['trainable_params']:,} |"
        for r in rows
    ]
    (args.out / "step_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
