"""Cost of joint variates: one MOIRAI training step in mode "S" (channel independence) vs "M" (all variates in one sequence).

    HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_multivariate_cost --out results/multivariate

Weather (21 variates), 8 windows of the train split z-scored with its statistics, context 512,
horizon 96, patch 32; random weights with the moirai-1.1-R-small geometry (cost does not depend on
the values); 1 torch thread, CPU; forward + NLL + backward of `msft.MSFTModel.loss` for each scale
set [1], [1, 2], [1, 2, 4] in both modes. Mode "S": 8 x 21 = 168 series of 16 + 3 tokens per scale
1; mode "M": 8 sequences of 21 x 19 = 399 tokens, attention inside each scale (sum n^2 per scale,
n = variates x tokens). Steps are timed round-robin over the variants (one step of each per round),
median over rounds, wall and process CPU time.

Memory per variant: bytes of the tensors autograd saves for backward (distinct storages, weights
excluded: the step's activation memory, exact), and the growth of the peak RSS over the first step
in a fresh process that builds only that variant (VmHWM minus VmRSS before the step; Linux only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.bench_moirai_step import _status_kib, saved_activation_bytes
from benchmarks.meta import cpu_run_meta

REPO = Path(__file__).resolve().parents[1]
SCALE_SETS = ([1], [1, 2], [1, 2, 4])
MODES = ("S", "M")
VARIANTS = [f"{mode} {scales}" for scales in SCALE_SETS for mode in MODES]
COMMAND = "HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_multivariate_cost --out results/multivariate"


def weather_batch(args) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, context, 21)`` and ``(batch, horizon, 21)``: evenly spaced train windows of Weather."""
    from msft.data.lsf import prepare_lsf

    windows = prepare_lsf("weather", args.context).windows("train", args.horizon, mode="M")
    index = torch.linspace(0, len(windows) - 1, args.batch).long()
    batch = windows[index]
    past = torch.where(batch["past_observed"], batch["past_target"], torch.nan)
    return past, batch["future_target"]


def build(name: str, args):
    import msft
    from msft_backbones.moirai import moirai_from_config

    mode, scales = name.split(" ", 1)
    model = msft.wrap(
        moirai_from_config("moirai-1.1-R-small", seed=0), scales=json.loads(scales), patch_size=args.patch, mode=mode
    )
    return model.train()


def step_of(model):
    def step(batch):
        loss = model.loss(*batch)
        loss.backward()
        return loss

    return step


def peak_rss_growth_mib(args, name: str) -> float | None:
    command = [sys.executable, "-m", "benchmarks.bench_multivariate_cost", "--memory-of", name]
    command += [f"--{k}={getattr(args, k)}" for k in ("threads", "batch", "context", "horizon", "patch")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_growth_mib"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "multivariate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one memory probe
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch = weather_batch(args)
    if args.memory_of:
        step = step_of(build(args.memory_of, args))
        before = _status_kib("VmRSS")
        step(batch)
        peak = _status_kib("VmHWM")
        growth = None if before is None or peak is None else (peak - before) / 1024
        print(json.dumps({"variant": args.memory_of, "peak_rss_growth_mib": growth}))
        return

    models = {name: build(name, args) for name in VARIANTS}
    steps = {name: step_of(model) for name, model in models.items()}
    for _ in range(args.warmup):
        for name, step in steps.items():
            step(batch)
            models[name].zero_grad(set_to_none=True)
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            step(batch)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
            models[name].zero_grad(set_to_none=True)
    rows = []
    for name in VARIANTS:
        saved = saved_activation_bytes(steps[name], batch, models[name]) / 2**20
        models[name].zero_grad(set_to_none=True)
        rows.append(
            {
                "variant": name,
                "median_step_ms": 1000 * statistics.median(wall[name]),
                "median_cpu_ms": 1000 * statistics.median(cpu[name]),
                "saved_activations_mib": saved,
                "peak_rss_growth_mib": peak_rss_growth_mib(args, name),
            }
        )
    meta = cpu_run_meta(COMMAND)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    by_name = {row["variant"]: row for row in rows}
    lines = [
        "# Joint variates (mode M) vs channel independence (mode S): cost of a MOIRAI training step",
        "",
        f"Regenerate: `{COMMAND}`",
        "",
        f"Machine: {meta['machine']}, {meta['cpu_cores']} CPU cores, torch {meta['torch']} with "
        f"{meta['torch_threads']} thread(s); load average after the run: {meta['load_average_after']}.",
        f"Weather (21 variates), batch {args.batch} windows, context {args.context}, horizon {args.horizon}, "
        f"patch {args.patch}; random weights (moirai-1.1-R-small geometry); forward + NLL + backward of "
        f"`model.loss`; median of {args.rounds} round-robin rounds after {args.warmup} warm-up rounds.",
        "",
        "| scales | mode | median step (ms) | median CPU (ms) | × mode S | activations saved (MiB) "
        "| peak RSS growth of a step (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scales in SCALE_SETS:
        base = by_name[f"S {scales}"]["median_cpu_ms"]
        for mode in MODES:
            row = by_name[f"{mode} {scales}"]
            rss = row["peak_rss_growth_mib"]
            lines.append(
                f"| {scales} | {mode} | {row['median_step_ms']:.1f} | {row['median_cpu_ms']:.1f} | "
                f"{row['median_cpu_ms'] / base:.2f} | {row['saved_activations_mib']:.1f} | "
                f"{'n/a' if rss is None else f'{rss:.1f}'} |"
            )
    lines += [
        "",
        "× mode S: CPU time relative to mode S at the same scales (CPU time is less hit by other load on a "
        "shared machine than wall time). Mode M attends over all variates of a scale at once, so its "
        "attention grows with (variates × tokens)² per scale while mode S's grows with variates × tokens²; "
        "the token-wise parts (projections, MLP, head) cost the same in both modes.",
    ]
    (args.out / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
