"""A CSV run's validation leaderboard (``msft-train data=csv``): the trained model against the zero-shot
backbone, the last value and the seasonal naive (season from the file's frequency), on the validation
windows the run selects on, in the units of its results table (the train split's z-scores).

`msft.finetune` keeps the same comparison for data frames (`msft_runner.forecaster.Forecaster.leaderboard`);
here the table goes to ``<run dir>/leaderboard.{md,csv}``, and `msft-train` gathers every run's into
``results/<experiment>_leaderboard.{md,csv}`` next to the results table (`write_leaderboards`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from msft_runner.module import VALIDATION_BLOCK
from msft_runner.records import write_text_atomic

logger = logging.getLogger(__name__)

FILE = "leaderboard.csv"
COLUMNS = ("model", "mse", "mae", "windows", "used")
#: (past (batch, L, V), past_observed, horizon) -> point forecast (batch, H, V)
Forecast = Callable[[Tensor, Tensor, int], Tensor]


def model_forecast(model: Any) -> Forecast:
    """An `msft.MSFTModel`'s point forecast, the one ``val_score`` scores (`predict_all`'s ``"point"``)."""
    return lambda past, observed, horizon: model.predict_all(past, horizon, observed)["point"]


def naive_forecasts(dates: Any, context_length: int) -> dict[str, Forecast]:
    """The last value, and the seasonal naive when the dates have a frequency whose season (a day for
    sub-daily data, a week for daily, a year for weekly or monthly: `season_of`) fits in the context."""
    import pandas as pd

    from msft_runner.forecaster import fill_missing, naive_forecaster, season_of

    def naive(spec: dict[str, Any]) -> Forecast:
        baseline = naive_forecaster(spec)
        return lambda past, observed, horizon: baseline.predict(
            fill_missing(torch.where(observed.bool(), past, torch.nan)), horizon
        )

    out = {"last_value": naive({"name": "last_value"})}
    try:
        freq = pd.infer_freq(pd.DatetimeIndex(dates[: min(len(dates), 10_000)]))
    except (TypeError, ValueError):  # fewer than 3 dates, or not dates
        freq = None
    period = season_of(freq) if freq else 1
    if 1 < period <= context_length:
        out[f"seasonal_naive({period})"] = naive({"name": "seasonal_naive", "period": period})
    return out


@torch.no_grad()
def score(forecasts: dict[str, Forecast], batches: Iterable[dict[str, Tensor]], device: Any = "cpu") -> dict:
    """``{name: {"mse", "mae", "windows"}}`` of each forecast over ``batches``: errors at the observed
    future points of the windows whose context has an observed point in every variate (the windows
    validation scores, `msft_runner.module.validation_sums`)."""
    sums = {name: [0.0, 0.0, 0.0] for name in forecasts}
    windows = 0
    for batch in batches:
        keep = batch["past_observed"].any(1).all(-1)  # (batch,)
        if not bool(keep.any()):
            continue
        past, future = batch["past_target"][keep].to(device), batch["future_target"][keep].to(device)
        past_seen = batch["past_observed"][keep].to(device)
        observed = batch["future_observed"][keep].to(device).bool() & ~torch.isnan(future)
        target = torch.where(observed, future, torch.zeros_like(future))  # (batch, H, V)
        windows += int(keep.sum()) * future.shape[2]
        for name, forecast in forecasts.items():
            point = torch.cat(  # in blocks of windows, as validation forecasts (`VALIDATION_BLOCK`)
                [
                    forecast(past[i : i + VALIDATION_BLOCK], past_seen[i : i + VALIDATION_BLOCK], future.shape[1])
                    for i in range(0, past.shape[0], VALIDATION_BLOCK)
                ]
            )
            error = (point - target) * observed
            sums[name][0] += float(error.square().sum())
            sums[name][1] += float(error.abs().sum())
            sums[name][2] += float(observed.sum())
    return {n: {"mse": s[0] / s[2], "mae": s[1] / s[2], "windows": windows} for n, s in sums.items() if s[2]}


def rows(scores: dict[str, dict[str, float]], used: str) -> list[dict[str, Any]]:
    """Leaderboard rows, best validation MSE first; ``used`` marks the model the run tests."""
    ordered = sorted(scores.items(), key=lambda item: item[1]["mse"])
    return [{"model": name, **s, "used": name == used} for name, s in ordered]


def warn_if_naive_wins(board: list[dict[str, Any]], used: str, run_dir: Any) -> None:
    """Log a warning with the numbers when a naive baseline beats the tested model on validation."""
    ours = next((r for r in board if r["model"] == used), None)
    naive = [r for r in board if r["model"].startswith(("last_value", "seasonal_naive"))]
    if ours is None or not naive:
        return
    best = min(naive, key=lambda r: r["mse"])
    if best["mse"] < ours["mse"]:
        logger.warning(
            "%s: the %s model is worse on validation than the %s baseline: MSE %.4f vs %.4f, MAE %.4f vs %.4f "
            "(z-scored, %d windows)",
            run_dir,
            used,
            best["model"],
            ours["mse"],
            best["mse"],
            ours["mae"],
            best["mae"],
            ours["windows"],
        )


def markdown(board: list[dict[str, Any]], prefix: tuple[str, ...] = ()) -> str:
    head = [*prefix, "model", "val MSE", "val MAE", "windows", "tested"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(prefix) + "---|---:|---:|---:|---|"]
    for r in board:
        cells = [*(str(r[p]) for p in prefix), r["model"], f"{r['mse']:.4f}", f"{r['mae']:.4f}", str(r["windows"])]
        lines.append("| " + " | ".join([*cells, "yes" if r["used"] else ""]) + " |")
    return "\n".join(lines)


def _csv(board: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(board)
    return buffer.getvalue()


HEADER = (
    "Validation windows of the run (the ones it selects on), z-scored with the train split's mean and std "
    "(the results table's units): MSE and MAE of each model's point forecast. zero_shot: the backbone "
    "before training; last_value, seasonal_naive(p): naive forecasts, p from the file's frequency."
)


def write_run(run_dir: Path, board: list[dict[str, Any]], title: str) -> None:
    """``<run_dir>/leaderboard.{md,csv}``."""
    write_text_atomic(run_dir / FILE, _csv(board, COLUMNS))
    write_text_atomic(run_dir / "leaderboard.md", f"# {title}\n\n{HEADER}\n\n{markdown(board)}\n")


def read_run(run_dir: Path) -> list[dict[str, Any]]:
    with open(Path(run_dir) / FILE, newline="") as handle:
        return [
            {
                **r,
                "mse": float(r["mse"]),
                "mae": float(r["mae"]),
                "windows": int(r["windows"]),
                "used": r["used"] == "True",
            }
            for r in csv.DictReader(handle)
        ]


def write_leaderboards(records: list[dict[str, Any]], out_dir: Path, name: str) -> str | None:
    """``<out_dir>/<name>_leaderboard.{md,csv}``: every run of ``records`` that wrote a leaderboard, one
    block of rows per run (dataset, horizon, method, seed); None (and nothing written) when none did."""
    prefix = ("dataset", "horizon", "method", "seed")
    gathered = []
    for record in records:
        run_dir = record.get("run_dir")
        if record.get("status") != "ok" or not run_dir or not (Path(run_dir) / FILE).is_file():
            continue
        gathered += [{**{p: record.get(p) for p in prefix}, **row} for row in read_run(Path(run_dir))]
    if not gathered:
        return None
    table = markdown(gathered, prefix)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{name}_leaderboard.csv", _csv(gathered, (*prefix, *COLUMNS)))
    write_text_atomic(out_dir / f"{name}_leaderboard.md", f"# {name}: validation leaderboards\n\n{HEADER}\n\n{table}\n")
    return table
