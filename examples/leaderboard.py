"""A user CSV through `msft.finetune` and its validation leaderboard against naive baselines (offline).

python examples/leaderboard.py                      # ETTh1's OT column (bundled with msft) as a CSV
python examples/leaderboard.py my.csv --horizon 24  # any CSV: a date column and one column per series

The leaderboard (`Forecaster.leaderboard()`, docs/ecosystem.md "Leaderboard against naive baselines")
scores the finetuned model, the zero-shot backbone, the last value and the seasonal naive on the last
``--validation-windows`` x horizon steps of every series, held out of training.
"""

import argparse
import tempfile
from pathlib import Path

import msft
from msft.data import load_lsf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", help="a CSV path (default: ETTh1's OT column, written to a temporary CSV)")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--validation-windows", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.csv
        if path is None:
            path = Path(tmp) / "ETTh1_OT.csv"
            load_lsf("ETTh1")[["date", "OT"]].to_csv(path, index=False)
        forecaster = msft.finetune(
            "tiny_moirai",
            path,
            prediction_length=args.horizon,
            max_steps=args.max_steps,
            validation_windows=args.validation_windows,
            progress=False,
        )
    print(forecaster)
    print(forecaster.leaderboard().to_string())


if __name__ == "__main__":
    main()
