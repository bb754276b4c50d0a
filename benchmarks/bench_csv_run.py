"""A user CSV of ~10,000 validation + test windows through ``msft-train``, timed (issue 32, item 8).

    HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_csv_run

The CSV is the first 34,000 rows of ETTm1's ``OT`` column (date + OT, written to a temporary folder):
split 70/10/20 by rows it has 3,305 validation and 6,705 test windows (context 512, H=96, stride 1).
One ``msft-train data=csv`` run of the default tiny MOIRAI with msft [1,2,4]: one training step (the
time to validate and test is the subject, not training), validation of every window, the CSV's
validation leaderboard, and the protocol's test (MSE of the mean, MAE of the median of 100 paths),
with ``trainer.threads`` as given (default 1: see `msft_runner.train.set_threads`). The progress bars
are on (the cpu trainer's default); their last lines are kept in the result. Writes
``results/inference/csv_run.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.meta import cpu_run_meta

REPO = Path(__file__).resolve().parents[1]
ROWS = 34_000


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from msft.data.files import resolve_data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "inference")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="msft-csv-run-") as tmp:
        source = Path(resolve_data_dir(None)) / "ETT-small" / "ETTm1.csv"
        path = Path(tmp) / "ettm1_ot.csv"
        pd.read_csv(source)[["date", "OT"]].iloc[:ROWS].to_csv(path, index=False)
        command = [
            sys.executable,
            "-m",
            "msft_runner.cli",
            "data=csv",
            f"data.path={path}",
            "data.target=OT",
            "hydra.sweeper.params.method=msft",
            "trainer.limit_train_batches=1",
            "trainer.max_epochs=1",
            "+trainer.num_sanity_val_steps=0",
            f"trainer.threads={args.threads}",
            "plots=false",
        ]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"msft-train failed:\n{done.stderr[-3000:]}")
        run_dir = Path(tmp) / "runs" / "default" / "ettm1_ot_H96" / "tiny_moirai" / "msft" / "seed0"
        record = json.loads((run_dir / "metrics.json").read_text())
        board = (run_dir / "leaderboard.md").read_text().split("\n\n", 2)[2].strip()
    lines = done.stderr.splitlines()  # tqdm's \r updates are lines here too: keep each bar's last
    bars = [[x for x in lines if x.startswith(label)][-1:] for label in ("training", "ettm1_ot.csv test")]
    bars = [b for found in bars for b in found]
    line = "HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.bench_csv_run " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    meta = cpu_run_meta(line)
    text = "\n".join(
        [
            "# A user CSV through msft-train: ~10,000 validation + test windows, timed",
            "",
            f"Regenerate: `{meta['command']}`",
            "",
            f"Machine: {meta['machine']}, {meta['cpu_cores']} CPU cores shared with other jobs, torch "
            f"{meta['torch']}, trainer.threads={args.threads}; load average (1, 5, 15 min) before: "
            f"{', '.join(f'{x:.1f}' for x in load_before)}, after: "
            f"{', '.join(f'{x:.1f}' for x in meta['load_average_after'])}.",
            "",
            f"ETTm1 `OT`, first {ROWS:,} rows, as a CSV; tiny MOIRAI, msft [1,2,4], context 512, H=96, one "
            "training step. `fit_seconds` covers the step and one validation of every validation window "
            "(loss and point forecast); `eval_seconds` the test (100 fused paths per window).",
            "",
            "| what | value |",
            "|---|---:|",
            f"| validation windows | {_val_windows(board)} |",
            f"| test windows | {record['windows']:,} |",
            f"| fit_seconds (1 step + validation) | {record['fit_seconds']:.1f} |",
            f"| eval_seconds (test) | {record['eval_seconds']:.1f} |",
            f"| msft-train wall seconds (imports, data, zero-shot and leaderboard passes included) | {wall:.1f} |",
            f"| test MSE / MAE | {record['mse']:.4f} / {record['mae']:.4f} |",
            "",
            "Last progress lines (stderr):",
            "",
            "```",
            *bars,
            "```",
            "",
            "Validation leaderboard (`leaderboard.md` of the run):",
            "",
            board,
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "csv_run.md").write_text(text)
    print(text)


def _val_windows(board: str) -> str:
    """The windows column of the leaderboard's first row."""
    row = [line for line in board.splitlines() if line.startswith("| ") and "---" not in line][1]
    return f"{int(row.split('|')[4]):,}"


if __name__ == "__main__":
    main()
