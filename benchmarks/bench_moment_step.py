"""Training-step time and peak memory of MOMENT finetuning methods (MOMENT-1-small geometry, CPU).

One step = forward, loss, backward (no optimiser step) on a batch of univariate series with random
weights. Step times are measured round-robin in one process (one step of each variant per round), so
that load from other processes on a shared machine hits every variant alike, and reported as the
median over rounds and its ratio to LoRA. Peak memory: each variant runs one step in a fresh
subprocess so that its peak RSS (VmHWM) is its own. Writes
``results/moment/step_time.{md,json}``.

Variants (the same backbone, heads trained in all of them, MOMENT's head is not pretrained):
  full   full finetuning: every parameter the forward uses (not T5's unused token embedding)
  lora   single-scale LoRA via peft (r=16, alpha=32, dropout 0.05) on q/k/v, plus the head
  msft   msft.wrap(scales=[1, 2, 4], backbone_options={"padding": "trim"}): per-scale adapters, LoRA
         (r=16), aggregation, heads, fusion; only the tokens that hold data run (64, 32, 16)
  msft-padded  the same with backbone_options={"padding": "seq_len"} (the default): every scale padded
         to 64 tokens

    python benchmarks/bench_moment_step.py            # writes results/moment/
    python benchmarks/bench_moment_step.py --steps 20 --size base
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("full", "lora", "msft", "msft-padded")


def _rss_mib(kind: str) -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, MiB. (Not ru_maxrss: it keeps
    the peak of the process image before ``exec``, i.e. of the parent that started this worker.)"""
    field = "VmHWM:" if kind == "peak" else "VmRSS:"
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(args: argparse.Namespace, variant: str):
    """(step function returning the loss, trainable parameters, backbone) of one variant."""
    import torch

    torch.manual_seed(0)
    import msft
    from msft_backbones.moment import build_moment

    model = build_moment(args.size, forecast_horizon=args.horizon)
    model.train()
    g = torch.Generator().manual_seed(1)
    past = torch.randn(args.batch, args.context, 1, generator=g).cumsum(1)  # (batch, time, 1)
    future = past[:, -1:] + torch.randn(args.batch, args.horizon, 1, generator=g).cumsum(1)

    if variant.startswith("msft"):
        options = {"backbone_options": {"padding": "seq_len" if variant == "msft-padded" else "trim"}}
        trained = msft.wrap(model, scales=[1, 2, 4], horizon=args.horizon, **options).train()

        def step_loss():
            return trained.loss(past, future)

    else:
        if variant == "full":
            trained = model
            model.requires_grad_(True)
            model.encoder.embed_tokens.requires_grad_(False)  # T5's token table: unused by MOMENT
        else:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q", "k", "v"], modules_to_save=["head"]
            )
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

    def step():
        for p in params:
            p.grad = None
        loss = step_loss()
        loss.backward()
        return loss

    return step, params, model


def worker(args: argparse.Namespace) -> dict:
    """One step of ``args.variant`` in this (fresh) process: its peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    step, params, model = build(args, args.variant)
    rss_before = _rss_mib("current")
    loss = step()
    return {
        "variant": args.variant,
        "trainable_params": sum(p.numel() for p in params),
        "backbone_params": sum(p.numel() for n, p in model.named_parameters() if "msft_" not in n and "lora_" not in n),
        "rss_before_steps_mib": rss_before,
        "peak_rss_mib": _rss_mib("peak"),
        "first_loss": float(loss),
    }


def round_robin(args: argparse.Namespace, variants: list[str]) -> dict[str, dict]:
    """Wall and CPU time of each variant's step, one step of each per round."""
    import torch

    torch.set_num_threads(args.threads)
    steps = {v: build(args, v)[0] for v in variants}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.steps):
        for v, step in steps.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            step()
            wall[v].append(time.perf_counter() - start)
            cpu[v].append(time.process_time() - cpu_start)
    return {
        v: {
            "median_step_s": statistics.median(wall[v]),
            "min_step_s": min(wall[v]),
            "max_step_s": max(wall[v]),
            "median_step_cpu_s": statistics.median(cpu[v]),
            "steps": args.steps,
        }
        for v in variants
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=["small", "base", "large"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
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
    timed = round_robin(args, variants)
    rows = []
    for variant in variants:
        cmd = [sys.executable, __file__, "--variant", variant] + [
            f"--{k}={getattr(args, k)}" for k in ("size", "batch", "context", "horizon", "threads")
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"variant {variant} failed:\n{done.stderr}")
        rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), **timed[variant]})
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
    base = next((r for r in rows if r["variant"] == "lora"), rows[0])
    lines = [
        f"# MOMENT training step: {meta['geometry']}",
        "",
        f"Regenerate: `{command}` (from the repository root).",
        "",
        f"Machine: {meta['machine_cpu_count']} CPU cores, torch {meta['torch']} with "
        f"torch.set_num_threads({args.threads}); batch {args.batch} univariate series, context {args.context}, "
        f"horizon {args.horizon}; one step = forward + loss + backward, median of {args.steps} round-robin "
        f"rounds (one step of each variant per round) after {args.warmup} warm-up rounds. Peak RSS is one step "
        "in a fresh subprocess per variant (Python, torch, model, activations); 'RSS before' is after building "
        "the model, before the step. CPU time is the process's; the machine is shared with other jobs "
        f"(load average when the run finished: {', '.join(f'{x:.1f}' for x in os.getloadavg())}).",
        "",
        "| variant | trainable params | median step, wall (s) | vs LoRA | min / max wall (s) | median step, CPU (s) | vs LoRA | RSS before (MiB) | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['trainable_params']:,} | {r['median_step_s']:.3f} | "
            f"{r['median_step_s'] / base['median_step_s']:.2f}x | {r['min_step_s']:.3f} / {r['max_step_s']:.3f} | "
            f"{r['median_step_cpu_s']:.3f} | {r['median_step_cpu_s'] / base['median_step_cpu_s']:.2f}x | "
            f"{r['rss_before_steps_mib']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    by_name = {r["variant"]: r for r in rows}
    if "msft" in by_name and "lora" in by_name:
        ratio = by_name["msft"]["median_step_s"] / by_name["lora"]["median_step_s"]
        lines += ["", f"msft [1,2,4] / LoRA = {ratio:.2f} (goal ≤ 2.0)."]
        if "msft-padded" in by_name:
            speedup = by_name["msft-padded"]["median_step_s"] / by_name["msft"]["median_step_s"]
            lines[-1] += f" Trimming the padded tokens makes the msft step {speedup:.2f}× faster."
    (args.out / "step_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
