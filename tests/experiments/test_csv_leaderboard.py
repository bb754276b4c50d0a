"""A CSV run's validation leaderboard (`msft_runner.leaderboard`): zero-shot, last value, seasonal naive
(season from the file's frequency) and the trained model, in the results table's units, written to the
run directory and gathered next to the results table."""

import csv

import pytest
import torch

from msft_runner.leaderboard import naive_forecasts, score
from tests.conftest import float32_tolerance

from .conftest import TINY, cli, compose, small_csv


def _read(path):
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_a_csv_run_writes_its_leaderboard_in_the_tables_units(tmp_path):
    from msft_runner.leaderboard import write_leaderboards
    from msft_runner.results import collect
    from msft_runner.train import run

    path = small_csv(tmp_path / "hourly.csv", seed=0)
    run_dir = tmp_path / "runs" / "hourly_H8" / "msft" / "seed0"
    cfg = compose([*TINY, "data=csv", f"data.path={path}", "data.target=x1", "method=msft"])
    record = run(cfg, run_dir, {"backbone": "toy_tiny"})
    rows = {r["model"]: r for r in _read(run_dir / "leaderboard.csv")}
    assert set(rows) == {"msft", "zero_shot", "last_value", "seasonal_naive(24)"}  # hourly: a day's season
    assert (run_dir / "leaderboard.md").is_file()
    # The trained and zero-shot rows are val_score's computation on the same windows (MSE of the point
    # forecast at observed points), summed per batch in the same order: equal up to float32 summation.
    tolerance = float32_tolerance(reduction=32 * 8)
    for model, key in (("msft", "val_score"), ("zero_shot", "zero_shot_val_score")):
        torch.testing.assert_close(float(rows[model]["mse"]), float(record[key]), **tolerance)
    assert rows["msft"]["used"] == "True" and rows["zero_shot"]["used"] == "False"
    table = write_leaderboards(collect([tmp_path / "runs"]), tmp_path / "results", "default")
    gathered = _read(tmp_path / "results" / "default_leaderboard.csv")
    assert {(r["dataset"], r["model"]) for r in gathered} == {("hourly", m) for m in rows}
    assert "seasonal_naive(24)" in table and (tmp_path / "results" / "default_leaderboard.md").is_file()


@pytest.mark.slow
def test_the_cli_prints_the_leaderboard_after_the_table(tmp_path):
    path = small_csv(tmp_path / "hourly.csv", seed=0)
    result = cli(*TINY, "data=csv", f"data.path={path}", "data.target=x1", "method=zero_shot", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation leaderboard" in result.stdout and "seasonal_naive(24)" in result.stdout
    assert (tmp_path / "results" / "default_leaderboard.md").is_file()
    run_dir = tmp_path / "runs" / "default" / "hourly_H8" / "toy_tiny" / "zero_shot" / "seed0"
    rows = {r["model"]: r for r in _read(run_dir / "leaderboard.csv")}
    assert set(rows) == {"zero_shot", "last_value", "seasonal_naive(24)"} and rows["zero_shot"]["used"] == "True"


def test_the_naive_rows_score_the_naive_forecasts():
    """Last value and seasonal naive against a hand computation on one window of a daily-cycle series."""
    t = torch.arange(48 + 8, dtype=torch.float32)
    series = torch.sin(2 * torch.pi * t / 24) + 0.01 * t  # (56,)
    batch = {
        "past_target": series[:48].view(1, 48, 1),
        "future_target": series[48:].view(1, 8, 1),
        "past_observed": torch.ones(1, 48, 1, dtype=torch.bool),
        "future_observed": torch.ones(1, 8, 1, dtype=torch.bool),
    }
    import pandas as pd

    dates = pd.date_range("2024-01-01", periods=56, freq="h").to_numpy()
    scores = score(naive_forecasts(dates, context_length=48), [batch])
    future = series[48:]
    last = (series[47] - future).square().mean()
    seasonal = (series[24:32] - future).square().mean()
    # one mean over 8 float32 terms each way
    torch.testing.assert_close(torch.tensor(scores["last_value"]["mse"]), last, **float32_tolerance(8))
    torch.testing.assert_close(torch.tensor(scores["seasonal_naive(24)"]["mse"]), seasonal, **float32_tolerance(8))


@pytest.mark.parametrize("freq, expected", [("D", "seasonal_naive(7)"), ("h", "seasonal_naive(24)"), (None, None)])
def test_the_season_comes_from_the_dates(freq, expected):
    import pandas as pd

    dates = pd.date_range("2024-01-01", periods=100, freq=freq or "h").to_numpy()
    if freq is None:  # irregular dates: no frequency, no seasonal naive
        dates = dates[[0, 1, 5, 6, 20, 21, 50]]
    names = set(naive_forecasts(dates, context_length=64))
    assert names == {"last_value"} | ({expected} if expected else set())
