"""Inference throughput: windows per second of the LSF scoring path on the ETTm1 test split, zero-shot vs msft.

    HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_inference --windows 512 --rounds 2

The runner's evaluation path (`msft.protocols.evaluate_lsf` scores stride-1 test windows, channel-
independent mode S, context 512, horizon 96, with one ``model.predict_all`` per batch: MSE of the
closed-form mean, MAE of the median of ``num_samples`` fused sample paths) on the embedded tiny MOIRAI
(``configs/backbone/tiny_moirai.yaml``: patch 32), CPU, one thread by default. The first ``--windows``
windows of the test split, in batches of ``--batch-size``, are forecast by each variant in turn,
round-robin for ``--rounds`` rounds so that load from other processes hits every variant alike;
windows/s is from the median round.

Variants: the zero-shot model (msft's identity wrap, as the runner builds it) and msft [1,2,4] (at
initialisation: the same cost as a trained one), each scoring with the closed-form mean only (no
paths: the cost of the forward pass), and with the mean plus the median of 20 and of 100 fused
sample paths (MOIRAI's chosen-component sampler, `msft_backbones.moirai.sampling.sample_mixture`). The
difference between a paths row and the mean-only row is what sampling costs. The "before" rows run the
same paths through the plain boolean-mask sampler the index-gather one replaced
(`masked_sample_mixture`: the same draws from the same seed), in the same rounds, for a like-for-like
ratio on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.meta import cpu_run_meta

REPO = Path(__file__).resolve().parents[1]
#: the scoring variants: how many fused sample paths the median is taken over (0: mean only)
PATHS = {"mean only": 0, "mean + median of 20 paths": 20, "mean + median of 100 paths": 100}
BEFORE = " (before: boolean-mask sampler)"


@contextlib.contextmanager
def sampler(before: bool):
    """MOIRAI's forecasts sample with `masked_sample_mixture` inside (``before``), else as shipped."""
    from msft_backbones.moirai import sampling, spec

    shipped = spec.sample_mixture
    spec.sample_mixture = sampling.masked_sample_mixture if before else shipped
    try:
        yield
    finally:
        spec.sample_mixture = shipped


def build(point_forecast: str, kind: str):
    import msft
    from msft_backbones.moirai import load_tiny_moirai

    options = dict(patch_size=32, point_forecast=point_forecast, horizon=96)
    if kind == "zero-shot":
        options.update(scales=[1], adapters=False, lora=False, c2f=False, f2c=False, learned_fusion=False)
    else:
        options.update(scales=[1, 2, 4])
    return msft.wrap(load_tiny_moirai(), **options).eval()


def main(argv: list[str] | None = None) -> None:
    from msft.data import prepare_lsf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "inference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--windows", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing: cProfile one pass of each model's 100-path scoring over the windows, "
        "written to <out>/bench_inference_profile.txt",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    data = prepare_lsf("ETTm1", 512)
    windows = data.windows("test", 96, "S")
    batches = [windows[i : min(i + args.batch_size, args.windows)] for i in range(0, args.windows, args.batch_size)]
    models = {kind: build("mean", kind) for kind in ("zero-shot", "msft [1,2,4]")}
    variants = {
        f"{kind}, {label}{suffix}": (kind, paths, bool(suffix))
        for kind in models
        for label, paths in PATHS.items()
        for suffix in ("", BEFORE)
        if paths or not suffix
    }
    if args.profile:
        write_profile(models, batches, args, argv)
        return
    times: dict[str, list[float]] = {name: [] for name in variants}
    errors: dict[str, tuple[float, float]] = {}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model.predict_all(batches[0]["past_target"], 96, num_samples=20)
        for _ in range(args.rounds):
            for name, (kind, paths, before) in variants.items():
                squared, absolute, count = 0.0, 0.0, 0
                torch.manual_seed(0)
                start = time.perf_counter()
                for batch in batches:
                    with sampler(before):
                        out = models[kind].predict_all(batch["past_target"], 96, num_samples=paths)
                    future = batch["future_target"]
                    squared += float((out["mean"] - future).double().square().sum())
                    absolute += float((out["median"] - future).double().abs().sum())
                    count += future.numel()
                times[name].append(time.perf_counter() - start)
                errors[name] = (squared / count, absolute / count)
    n = sum(len(b["past_target"]) for b in batches)
    rows = [
        dict(
            variant=name,
            windows=n,
            median_s=statistics.median(t),
            windows_per_s=n / statistics.median(t),
            mse_on_these_windows=errors[name][0],
            mae_on_these_windows=errors[name][1],
        )
        for name, t in times.items()
    ]
    command = "HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_inference " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    meta = dict(
        **cpu_run_meta(command),
        load_average_before=load_before,
        windows=n,
        batch_size=args.batch_size,
        rounds=args.rounds,
        test_windows_total=len(windows),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_inference.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    (args.out / "bench_inference.md").write_text(render(meta, rows))
    print(render(meta, rows))


def write_profile(models, batches, args, argv) -> None:
    """The functions that take the time of the 100-path scoring path (cProfile, by own time)."""
    import cProfile
    import io
    import pstats

    command = "HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_inference " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    text = [f"# cProfile of the scoring path, 100 paths: `{command}`", ""]
    with torch.no_grad():
        for kind, model in models.items():
            model.predict_all(batches[0]["past_target"], 96, num_samples=100)  # warm-up
            profile = cProfile.Profile()
            profile.enable()
            for batch in batches:
                model.predict_all(batch["past_target"], 96, num_samples=100)
            profile.disable()
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(15)
            text += [f"## {kind}, mean + median of 100 paths, {sum(len(b['past_target']) for b in batches)} windows"]
            text += ["", "```", stream.getvalue().strip(), "```", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_inference_profile.txt").write_text("\n".join(text) + "\n")
    print("\n".join(text))


def render(meta, rows) -> str:
    lines = [
        "# Inference throughput: the LSF scoring path on the ETTm1 test split, tiny MOIRAI, zero-shot vs msft",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}, {meta['cpu_cores']} CPU cores shared with other jobs, torch {meta['torch']} with "
        f"{meta['torch_threads']} thread(s); load average (1, 5, 15 min) before the run: "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average_before'])}, after: "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average_after'])}. The first {meta['windows']:,} of the "
        f"{meta['test_windows_total']:,} test windows (mode S, context 512, horizon 96), batches of "
        f"{meta['batch_size']}, median of {meta['rounds']} round-robin rounds. Each variant runs "
        "`predict_all(past, 96, num_samples)`: MSE of the closed-form mean, MAE of the median of the paths "
        "(of the mean when there are none).",
        "",
        "| variant | windows/s | seconds per round | MSE | MAE |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['windows_per_s']:.0f} | {r['median_s']:.2f} | {r['mse_on_these_windows']:.4f} "
            f"| {r['mae_on_these_windows']:.4f} |"
        )
    seconds = {r["variant"]: r["median_s"] for r in rows}
    lines.append("")
    for kind in ("zero-shot", "msft [1,2,4]"):
        base = seconds[f"{kind}, mean only"]
        shares = ", ".join(
            f"{paths} paths {100 * (seconds[f'{kind}, {label}'] - base) / seconds[f'{kind}, {label}']:.0f}%"
            for label, paths in PATHS.items()
            if paths
        )
        lines.append(f"- {kind}: share of a round spent drawing and sorting paths (vs mean only): {shares}.")
        speedups = ", ".join(
            f"{paths} paths {seconds[f'{kind}, {label}{BEFORE}'] / seconds[f'{kind}, {label}']:.2f}x"
            for label, paths in PATHS.items()
            if paths
        )
        lines.append(
            f"- {kind}: index-gather sampler vs the boolean-mask one, same rounds (time before / after): {speedups}."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
