"""Nothing overwritten: CLI runs of a CSV are named after its file, a run that would land on a finished
run refuses (unless overwrite=true or skip_finished=true), and the default table gathers every run."""

import csv
import json

import pytest

from msft_runner.train import check_run_dir, file_stem

from .conftest import TINY, cli, compose, small_csv


@pytest.mark.parametrize(
    "path, stem",
    [("/data/ETTh1.csv", "ETTh1"), ("my sales (2024).csv", "my_sales__2024_"), (None, "csv"), ("???", "csv")],
)
def test_a_csv_data_set_is_named_after_its_file(path, stem):
    assert file_stem(path) == stem


def test_the_csv_config_names_its_data_set_and_run_folder_after_the_file():
    cfg = compose(["data=csv", "data.path=/somewhere/exchange_rate.csv", "data.horizon=24", "method=lora"])
    assert cfg.data.name == "exchange_rate"
    assert compose(["data=csv"]).data.name == "csv"  # no path yet: the error comes later, naming data.path


def test_a_finished_run_is_refused_by_name_a_failed_one_is_not(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    check_run_dir(run_dir)  # empty: fine
    (run_dir / "metrics.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    check_run_dir(run_dir)
    record = {"status": "ok", "dataset": "a", "horizon": 8, "method": "msft", "seed": 0, "val_score": 0.5}
    (run_dir / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(FileExistsError, match=f"{run_dir} holds a finished run .a H=8 msft seed 0"):
        check_run_dir(run_dir)
    check_run_dir(run_dir, overwrite=True)


def _train(path, *extra, cwd):
    return cli(*TINY, "data=csv", f"data.path={path}", "data.target=x1", "method=zero_shot", *extra, cwd=cwd)


def _rows(table):
    with open(table) as stream:
        return list(csv.DictReader(line for line in stream if not line.startswith("#")))  # after its command line


def test_two_csvs_in_a_row_keep_both_runs_and_a_rerun_refuses(tmp_path):
    first, second = small_csv(tmp_path / "alpha.csv", seed=0), small_csv(tmp_path / "beta.csv", seed=1)
    for path in (first, second):
        result = _train(path, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    runs = {p.parent.relative_to(tmp_path / "runs" / "default") for p in (tmp_path / "runs").rglob("metrics.json")}
    assert {str(r).split("/")[0] for r in runs} == {"alpha_H8", "beta_H8"}
    alpha = tmp_path / "runs" / "default" / "alpha_H8" / "toy_tiny" / "zero_shot" / "seed0" / "metrics.json"
    kept = alpha.read_text()
    assert {r["dataset"] for r in _rows(tmp_path / "results" / "default.csv")} == {"alpha", "beta"}  # appended

    again = _train(first, cwd=tmp_path)
    assert again.returncode == 1
    assert "holds a finished run" in again.stderr and str(alpha.parent.relative_to(tmp_path)) in again.stderr
    assert alpha.read_text() == kept  # the finished run is untouched
    assert {r["dataset"] for r in _rows(tmp_path / "results" / "default.csv")} == {"alpha", "beta"}

    skipped = _train(first, "skip_finished=true", cwd=tmp_path)
    assert skipped.returncode == 0 and alpha.read_text() == kept
    marked = {**json.loads(kept), "marker": "written by this test, not by a run"}
    alpha.write_text(json.dumps(marked))  # so a rewrite shows without relying on timings differing
    replaced = _train(first, "overwrite=true", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    rewritten = json.loads(alpha.read_text())
    assert rewritten["status"] == "ok" and "marker" not in rewritten  # the run really ran again
