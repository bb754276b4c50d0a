"""Cost of glibc's default allocator in a CPU training step: freed large blocks go back to the kernel.

    HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_malloc --out results/multivariate

The covariate suite's three arms (`scripts/evidence.py covariates`: ETTh1's OT alone, + the six
loads as past-only covariates, + hour of day and day of week as known covariates) as msft trains
them: the embedded tiny MOIRAI wrapped with `configs/method/msft.yaml`'s options, batch 256 train
windows of the covariate protocol (context 512, horizon 96), forward + NLL + backward of
`model.loss`, one torch thread. Each (arm, allocator) runs in a fresh process, the allocator set
first by `msft_runner.process.keep_freed_memory` (``MSFT_KEEP_FREED_MEMORY=1``) or left as glibc's
(``=0``); median of ``--steps`` steps after one warm-up step: wall time, user and kernel CPU time,
minor page faults, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = "HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_malloc --out results/multivariate"
PAST = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
KNOWN = ["hour_of_day", "day_of_week"]
ARMS = {"ETTh1_OT": ([], []), "ETTh1_OT_past": (PAST, []), "ETTh1_OT_past_known": (PAST, KNOWN)}
ALLOCATORS = {"glibc default": "0", "keep freed memory": "1"}


def measure(arm: str, steps: int, batch_size: int) -> dict:
    """One arm's step in this process (the allocator already set)."""
    import torch
    from omegaconf import OmegaConf

    import msft
    from msft.protocols.covariates import prepare_covariates
    from msft_backbones.moirai.load import load_source

    torch.set_num_threads(1)
    past, known = ARMS[arm]
    windows = prepare_covariates("ETTh1", 512, "OT", past, known).windows("train", 96)
    batch = windows[torch.linspace(0, len(windows) - 1, batch_size).long()]
    target = torch.where(batch["past_observed"], batch["past_target"], torch.nan)
    covariates = {k: batch[k] for k in ("past_covariates", "known_covariates") if batch[k].shape[-1]}  # given ones
    options = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "method" / "msft.yaml").options)
    model = msft.wrap(load_source("tiny_moirai"), **options, past_covariates=past, known_covariates=known).train()

    def step() -> None:
        model.loss(target, batch["future_target"], **covariates).backward()
        model.zero_grad(set_to_none=True)

    step()
    rows = []
    for _ in range(steps):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        rows.append(
            (
                wall,
                after.ru_utime - before.ru_utime,
                after.ru_stime - before.ru_stime,
                after.ru_minflt - before.ru_minflt,
            )
        )
    wall, user, kernel, faults = (statistics.median(column) for column in zip(*rows))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    return dict(arm=arm, wall_s=wall, user_s=user, kernel_s=kernel, minor_faults=faults, peak_rss_gib=peak_gib)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "multivariate")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--one", choices=ARMS, help=argparse.SUPPRESS)  # internal: one arm in this process
    args = parser.parse_args(argv)
    if args.one:
        from msft_runner.process import keep_freed_memory

        kept = keep_freed_memory()
        print(json.dumps(dict(measure(args.one, args.steps, args.batch), kept=kept)))
        return

    from benchmarks.meta import cpu_run_meta

    rows = []
    for arm in ARMS:
        for allocator, setting in ALLOCATORS.items():
            env = dict(os.environ, MSFT_KEEP_FREED_MEMORY=setting, OMP_NUM_THREADS="1")
            command = [sys.executable, "-m", "benchmarks.bench_malloc", "--one", arm]
            command += [f"--steps={args.steps}", f"--batch={args.batch}"]
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"{arm} ({allocator}) failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            if row.pop("kept") != (setting == "1"):
                sys.exit(f"{arm}: MSFT_KEEP_FREED_MEMORY={setting} was not applied (not Linux with glibc?)")
            rows.append(dict(row, allocator=allocator))
            print(json.dumps(rows[-1]), flush=True)
    meta = cpu_run_meta(COMMAND)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "malloc.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# A CPU training step with glibc's default allocator and with freed memory kept",
        "",
        f"Regenerate: `{COMMAND}`",
        "",
        f"Machine: {meta['machine']}, {meta['cpu_cores']} CPU cores, torch {meta['torch']}, one thread per "
        f"process; load average after the run: {meta['load_average_after']}.",
        f"The covariate suite's arms, tiny MOIRAI with msft's options, batch {args.batch} ETTh1 train windows, "
        f"context 512, horizon 96; forward + NLL + backward of `model.loss`; median of {args.steps} steps after "
        "a warm-up step, each (arm, allocator) in a fresh process.",
        "",
        "| arm | allocator | step (s) | user CPU (s) | kernel CPU (s) | minor page faults | peak RSS (GiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['allocator']} | {r['wall_s']:.2f} | {r['user_s']:.2f} | {r['kernel_s']:.2f} | "
            f"{r['minor_faults']:.0f} | {r['peak_rss_gib']:.2f} |"
        )
    lines += [
        "",
        "glibc serves every block above 32 MiB with its own `mmap` and unmaps it when freed, so each step "
        "faults its large activations (attention scores over variates x tokens) in again, page by page: the "
        "kernel time. Kept freed memory (`msft_runner.process.keep_freed_memory`, on by default in "
        "`msft-train` and `msft-evaluate`; `MSFT_KEEP_FREED_MEMORY=0` turns it off) reuses the heap instead; "
        "the process holds its peak until it exits.",
    ]
    (args.out / "malloc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
