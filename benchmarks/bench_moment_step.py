"""Training-step time and peak memory of MOMENT finetuning methods (MOMENT-1-small geometry, CPU).

One step = forward, loss, backward (no optimiser step) on a batch of univariate series with random
weights. Each variant runs in a fresh subprocess so that its peak RSS (``resource.getrusage``) is
its own; the parent collects the numbers and writes ``results/moment/step_time.{md,json}``.

Variants (the same backbone, heads trained in all of them, MOMENT's head is not pretrained):
  full   full finetuning: every parameter the forward uses (not T5's unused token embedding)
  lora   single-scale LoRA via peft (r=16, alpha=32, dropout 0.05) on q/k/v, plus the head
  msft   msft.wrap(scales=[1, 2, 4]): per-scale adapters, LoRA (r=16), aggregation, heads, fusion

    python benchmarks/bench_moment_step.py            # writes results/moment/
    python benchmarks/bench_moment_step.py --steps 20 --size base
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("full", "lora", "msft")


def _rss_mib(kind: str) -> float:
    """Current (VmRSS) or peak (ru_maxrss) resident memory of this process, MiB."""
    if kind == "peak":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import msft
    from msft_backbones.moment import build_moment

    model = build_moment(args.size, forecast_horizon=args.horizon)
    model.train()
    g = torch.Generator().manual_seed(1)
    past = torch.randn(args.batch, args.context, 1, generator=g).cumsum(1)  # (batch, time, 1)
    future = past[:, -1:] + torch.randn(args.batch, args.horizon, 1, generator=g).cumsum(1)

    if args.variant == "msft":
        trained = msft.wrap(model, scales=[1, 2, 4], horizon=args.horizon).train()

        def step_loss():
            return trained.loss(past, future)

    else:
        if args.variant == "full":
            trained = model
            model.requires_grad_(True)
            model.encoder.embed_tokens.requires_grad_(False)  # T5's token table: unused by MOMENT
        else:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q", "k", "v"], modules_to_save=["head"])
            trained = get_peft_model(model, lora)
        x_enc = past[..., 0][:, None, :]  # (batch, 1, context)
        pad = 512 - args.context
        x_enc = torch.nn.functional.pad(x_enc, (pad, 0))
        input_mask = torch.ones(args.batch, 512)
        input_mask[:, :pad] = 0
        target = future[..., 0][:, None, :]  # (batch, 1, horizon)

        def step_loss():
            forecast = trained(x_enc=x_enc, input_mask=input_mask).forecast
            return torch.nn.functional.mse_loss(forecast, target)

    params = [p for p in trained.parameters() if p.requires_grad]
    rss_before = _rss_mib("current")
    times, cpu_times = [], []
    for i in range(args.warmup + args.steps):
        for p in params:
            p.grad = None
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step_loss()
        loss.backward()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if i >= args.warmup:
            times.append(elapsed)
            cpu_times.append(cpu)
    return {
        "variant": args.variant,
        "trainable_params": sum(p.numel() for p in params),
        "backbone_params": sum(p.numel() for n, p in model.named_parameters() if "msft_" not in n and "lora_" not in n),
        "median_step_s": statistics.median(times),
        "min_step_s": min(times),
        "max_step_s": max(times),
        "median_step_cpu_s": statistics.median(cpu_times),
        "steps": len(times),
        "rss_before_steps_mib": rss_before,
        "peak_rss_mib": _rss_mib("peak"),
        "final_loss": float(loss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=["small", "base", "large"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "moment")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # set in the per-variant subprocess
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(worker(args)))
        return

    variants = args.variants.split(",")
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        raise SystemExit(f"--variants: unknown {bad}, expected some of {list(VARIANTS)}")
    rows = []
    for variant in variants:
        cmd = [sys.executable, __file__, "--variant", variant] + [
            f"--{k}={getattr(args, k)}" for k in ("size", "batch", "context", "horizon", "threads", "warmup", "steps")
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"variant {variant} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)

    command = "python benchmarks/bench_moment_step.py " + " ".join(
        f"--{k} {getattr(args, k)}" for k in ("size", "batch", "context", "horizon", "threads", "warmup", "steps")
    )
    import torch

    meta = {
        "command": command,
        "geometry": f"MOMENT-1-{args.size} (google/flan-t5-{args.size} encoder), random weights",
        "batch": args.batch,
        "context": args.context,
        "horizon": args.horizon,
        "torch_threads": args.threads,
        "machine_cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_time.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    base = next((r for r in rows if r["variant"] == "full"), rows[0])
    lines = [
        f"# MOMENT training step: {meta['geometry']}",
        "",
        f"Regenerate: `{command}` (from the repository root).",
        "",
        f"Machine: {meta['machine_cpu_count']} CPU cores, torch {meta['torch']} with "
        f"torch.set_num_threads({args.threads}); batch {args.batch} univariate series, context {args.context}, "
        f"horizon {args.horizon}; one step = forward + loss + backward, median of {args.steps} steps after "
        f"{args.warmup} warm-up steps. Peak RSS is the whole subprocess (Python, torch, model, activations); "
        "'RSS before' is after building the model, before the first step. CPU time is the process's "
        "(both threads); it is less sensitive than wall time to other load on the machine "
        f"(load average when the run finished: {os.getloadavg()[0]:.1f}).",
        "",
        "| variant | trainable params | median step, wall (s) | vs full | min / max wall (s) | median step, CPU (s) | vs full | RSS before (MiB) | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['trainable_params']:,} | {r['median_step_s']:.3f} | "
            f"{r['median_step_s'] / base['median_step_s']:.2f}x | {r['min_step_s']:.3f} / {r['max_step_s']:.3f} | "
            f"{r['median_step_cpu_s']:.3f} | {r['median_step_cpu_s'] / base['median_step_cpu_s']:.2f}x | "
            f"{r['rss_before_steps_mib']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    (args.out / "step_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
