"""Data-side benchmark and the reference baseline table.

1. Speed: build every ETTm1 test window at L=512, H=96 (mode S) and evaluate the last-value forecaster
   over them, on one torch thread; report windows per second (file parsing timed separately).
2. Reference: last-value and seasonal-naive MSE/MAE on ETTh1, ETTh2, ETTm1, ETTm2 and Weather at
   H in {96, 192, 336, 720} (mode S, L=512, test split), the table later results are compared with.

    python -m benchmarks.bench_data --out results/data [--data-dir DIR]   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from msft.data import prepare_lsf
from msft.protocols import default_period, evaluate_lsf, last_value, seasonal_naive

DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather")
HORIZONS = (96, 192, 336, 720)
COMMAND = "python -m benchmarks.bench_data --out results/data"


def speed(data_dir, repeats: int = 5) -> dict:
    start = time.perf_counter()
    data = prepare_lsf("ETTm1", 512, data_dir=data_dir)
    load_s = time.perf_counter() - start
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate_lsf(last_value(), data, horizon=96, context_length=512)  # builds the windows too
        timings.append(time.perf_counter() - start)
    best = min(timings)
    return {
        "dataset": "ETTm1",
        "context_length": 512,
        "horizon": 96,
        "mode": "S",
        "windows": result["windows"],
        "load_and_normalise_s": load_s,
        "windows_and_eval_s_best": best,
        "windows_and_eval_s_median": sorted(timings)[len(timings) // 2],
        "windows_per_s": result["windows"] / best,
        "total_s": load_s + best,
        "mse": result["mse"],
    }


def reference_table(data_dir) -> pd.DataFrame:
    rows = []
    for name in DATASETS:
        data = prepare_lsf(name, 512, data_dir=data_dir)
        period = default_period(name)
        for horizon in HORIZONS:
            for label, forecaster in (("last_value", last_value()), ("seasonal_naive", seasonal_naive(period))):
                result = evaluate_lsf(forecaster, data, horizon=horizon, context_length=512)
                rows.append(
                    {
                        "dataset": name,
                        "horizon": horizon,
                        "baseline": label,
                        "period": period if label == "seasonal_naive" else None,
                        "mse": result["mse"],
                        "mae": result["mae"],
                        "windows": result["windows"],
                    }
                )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/data")
    parser.add_argument("--data-dir", default=None, help="default: MSFT_DATA_DIR, else ../shared/data")
    args = parser.parse_args()
    data_dir = (
        args.data_dir
        or os.environ.get("MSFT_DATA_DIR")
        or Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }

    bench = speed(data_dir)
    (out / "bench_data.json").write_text(json.dumps({"command": COMMAND, "machine": machine, "speed": bench}, indent=2))
    (out / "bench_data.md").write_text(
        f"# Data benchmark: ETTm1 test windows + last-value evaluation\n\nRegenerate: `{COMMAND}`\n\n"
        f"Machine: {machine['cpu_cores']} CPU cores, torch {machine['torch']} with "
        f"{machine['torch_threads']} thread(s), Python {machine['python']}.\n\n"
        "| quantity | value |\n|---|---|\n"
        f"| windows (7 channels × {bench['windows'] // 7} time windows, L=512, H=96, mode S) | {bench['windows']} |\n"
        f"| build windows + evaluate last value (best of 5) | {bench['windows_and_eval_s_best']:.3f} s |\n"
        f"| same, median of 5 | {bench['windows_and_eval_s_median']:.3f} s |\n"
        f"| windows per second | {bench['windows_per_s']:,.0f} |\n"
        f"| read CSV + verify sha256 + split + z-score (once) | {bench['load_and_normalise_s']:.3f} s |\n"
        f"| total incl. loading | {bench['total_s']:.3f} s (requirement: < 2 s on one core) |\n"
        f"| last-value MSE (check) | {bench['mse']:.4f} |\n"
    )

    table = reference_table(data_dir)
    table.to_csv(out / "baselines_lsf.csv", index=False, float_format="%.6f")
    wide = table.pivot_table(index=["dataset", "horizon"], columns="baseline", values=["mse", "mae"])
    lines = [
        "# Reference LSF baselines (test split, mode S, L=512, train-stat z-scoring)",
        "",
        f"Regenerate: `{COMMAND}`",
        "",
        "Seasonal-naive periods: ETTh 24, ETTm 96, Weather 144 (one day). Windows slide with stride 1 over "
        "the whole test split; MSE/MAE average over windows × steps × channels.",
        "",
        "| dataset | H | last value MSE | last value MAE | seasonal naive MSE | seasonal naive MAE |",
        "|---|---|---|---|---|---|",
    ]
    for (name, horizon), row in wide.iterrows():
        lines.append(
            f"| {name} | {horizon} | {row[('mse', 'last_value')]:.4f} | {row[('mae', 'last_value')]:.4f} | "
            f"{row[('mse', 'seasonal_naive')]:.4f} | {row[('mae', 'seasonal_naive')]:.4f} |"
        )
    (out / "baselines_lsf.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
