"""Zero-shot LSF numbers of the shipped tiny MOIRAI against last-value and seasonal-naive baselines.

    MSFT_DATA_DIR=../shared/data python -m benchmarks.tiny_moirai_zero_shot

LSF protocol (msft.protocols.evaluate_lsf): S mode (each channel its own series), context 512,
H=96, the full test split with stride 1, MSE/MAE on the train-split z-scored scale. The tiny MOIRAI
point forecast is the mixture mean, or the median of ``--samples`` sample paths (``--point median``).
Writes results/pretrained/zero_shot.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.tiny_moirai_common import DATA_DIR, DATASETS, machine_line, moirai_forecaster, write_table
from msft.protocols import evaluate_lsf
from msft.protocols.baselines import default_period, last_value, seasonal_naive


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="MOIRAI directory (default: the shipped one)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--point", choices=("median", "mean"), default="mean")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results/pretrained"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from msft_backbones.moirai import load_moirai
    from msft_backbones.moirai import TINY_MOIRAI_DIR

    module = load_moirai(args.checkpoint or TINY_MOIRAI_DIR)
    model = moirai_forecaster(module, args.patch_size, args.point, args.samples)

    results = {}
    for name in args.datasets:
        row = {}
        forecasters = {"tiny_moirai": model, "last_value": last_value(),
                       "seasonal_naive": seasonal_naive(default_period(name))}
        for method, forecaster in forecasters.items():
            t0 = time.time()
            row[method] = evaluate_lsf(forecaster, name, horizon=args.horizon, context_length=args.context,
                                       mode="S", data_dir=DATA_DIR, batch_size=args.batch_size)
            row[method]["seconds"] = round(time.time() - t0, 1)
            print(name, method, row[method], flush=True)
        results[name] = row
        write_results(args, argv, results)  # after every dataset: partial tables survive
    return results


def write_results(args, argv: list[str] | None, results: dict) -> None:
    command = "MSFT_DATA_DIR=../shared/data python -m " + " ".join(["benchmarks.tiny_moirai_zero_shot"] + (argv if argv is not None else sys.argv[1:]))
    header = ["dataset", "tiny MOIRAI MSE", "tiny MOIRAI MAE", "last value MSE", "seasonal naive MSE", "beats both (MSE)", "windows"]
    rows = []
    for name, row in results.items():
        ours = row["tiny_moirai"]["mse"]
        wins = ours < row["last_value"]["mse"] and ours < row["seasonal_naive"]["mse"]
        rows.append([name, f"{ours:.4f}", f"{row['tiny_moirai']['mae']:.4f}", f"{row['last_value']['mse']:.4f}",
                     f"{row['seasonal_naive']['mse']:.4f}", "yes" if wins else "no", str(row["tiny_moirai"]["windows"])])
    notes = [f"LSF protocol, S mode, H={args.horizon}, context {args.context}, full test split, stride 1; "
             "z-scored with train-split statistics.",
             f"tiny MOIRAI: patch size {args.patch_size}, point forecast = "
             + (f"median of {args.samples} sample paths." if args.point == "median" else "the mixture mean (closed form)."),
             "seasonal naive period: one day (ETTh 24, ETTm 96, Weather 144)."]
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(args.out / "zero_shot.md", "Tiny MOIRAI zero-shot (LSF, H=96)", command, header, rows, notes)
    (args.out / "zero_shot.json").write_text(json.dumps(
        {"command": command, "machine": machine_line(), "settings": vars(args) | {"out": str(args.out),
         "checkpoint": str(args.checkpoint)}, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
