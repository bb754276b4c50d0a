"""Deferred testing (``defer_test=true`` + ``msft-evaluate``): a sweep's candidates train and validate,
and only the runs validation selects are tested, with exactly the scores an immediate test gives."""

import json

import pytest

from msft_runner.evaluate import main as evaluate_main
from msft_runner.train import METRICS, evaluate_run, run

from .conftest import TINY, compose, small_csv

TEST_KEYS = ("mse", "mae", "windows", "scoring", "test_stride", "windows_per_process", "eval_seconds")


def _cfg(path, *extra):
    return compose(
        [
            *TINY,
            "data=csv",
            f"data.path={path}",
            "data.target=x1",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=3",
        ]
        + list(extra)
    )


def _defer(run_dir):
    """Turn a tested run back into an untested one (what defer_test=true writes)."""
    path = run_dir / METRICS
    record = json.loads(path.read_text())
    for key in TEST_KEYS:
        record.pop(key, None)
    record["test"] = "deferred"
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("method", ["zero_shot", "linear_probe", "full", "lora", "adalora", "prompt_tuning", "msft"])
def test_a_deferred_test_scores_what_the_run_would_have(tmp_path, method):
    path = small_csv(tmp_path / "s.csv")
    now = run(_cfg(path, f"method={method}"), tmp_path / "run", {"backbone": "toy_tiny"})
    assert now["test"] == "done"
    _defer(tmp_path / "run")
    later = evaluate_run(tmp_path / "run")
    assert later["test"] == "done" and json.loads((tmp_path / "run" / METRICS).read_text())["test"] == "done"
    assert (later["mse"], later["mae"], later["windows"]) == (now["mse"], now["mae"], now["windows"])
    assert evaluate_run(tmp_path / "run") == later  # already tested: returned as it is


def test_defer_test_trains_and_validates_only(tmp_path):
    path = small_csv(tmp_path / "s.csv")
    record = run(_cfg(path, "method=lora", "defer_test=true"), tmp_path / "run", {"backbone": "toy_tiny"})
    assert record["test"] == "deferred" and record["val_score"] > 0 and "mse" not in record
    assert record["checkpoint"] == "best.ckpt" and (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    tested = evaluate_run(tmp_path / "run")
    assert tested["val_score"] == record["val_score"] and tested["mse"] > 0


def test_a_deferred_run_the_guard_reverted_is_tested_with_the_zero_shot_weights(tmp_path):
    path = small_csv(tmp_path / "s.csv")
    zero = run(_cfg(path, "method=zero_shot"), tmp_path / "zero", {"backbone": "toy_tiny"})
    worse = ["method=full", "lr_scale=300", "trainer.max_epochs=1", "guard=true", "defer_test=true"]
    record = run(_cfg(path, *worse), tmp_path / "run", {"backbone": "toy_tiny"})
    assert record["guard"] == "zero_shot_kept"
    tested = evaluate_run(tmp_path / "run")
    assert (tested["mse"], tested["mae"]) == pytest.approx((zero["mse"], zero["mae"]))


def test_evaluate_tests_only_the_selected_candidates_and_resumes(tmp_path, capsys):
    path = small_csv(tmp_path / "s.csv")
    dirs = {}
    for scale in (0.3, 3.0):
        dirs[scale] = tmp_path / "sweep" / f"lr{scale}"
        run(_cfg(path, "method=lora", f"lr_scale={scale}", "defer_test=true"), dirs[scale], {"backbone": "toy_tiny"})
    records = {s: json.loads((d / METRICS).read_text()) for s, d in dirs.items()}
    chosen = min(records, key=lambda s: records[s]["val_score"])
    evaluate_main([str(tmp_path / "sweep"), "--select"])
    after = {s: json.loads((d / METRICS).read_text()) for s, d in dirs.items()}
    assert after[chosen]["test"] == "done" and "mse" in after[chosen]
    assert all(after[s]["test"] == "deferred" and "mse" not in after[s] for s in after if s != chosen)
    assert "1 to test" in capsys.readouterr().out
    evaluate_main([str(tmp_path / "sweep"), "--select"])
    assert "0 to test" in capsys.readouterr().out


def test_evaluate_rejects_a_directory_without_runs(tmp_path):
    with pytest.raises(SystemExit):
        evaluate_main([str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        evaluate_run(tmp_path)


def _rec(method, seed, val, protocol="lsf", **scores):
    return {
        "status": "ok",
        "backbone": "b",
        "dataset": "d",
        "horizon": 96,
        "method": method,
        "seed": seed,
        "val_score": val,
        "protocol": protocol,
        "lr_scale": 1.0,
        "test": "done",
        **scores,
    }


def test_the_selection_table_bolds_each_column_and_marks_untested_runs():
    from msft_runner.results import selection_table

    records = [_rec("lora", 0, 0.5, mse=0.30, mae=0.41), _rec("msft", 0, 0.6, mse=0.20, mae=0.42)]
    rows = {line.split(" | ")[3]: line for line in selection_table(records).splitlines()[2:]}
    assert "**0.5000 ± 0.0000** | 0.3000 ± 0.0000 | **0.4100 ± 0.0000**" in rows["lora"]
    assert "0.6000 ± 0.0000 | **0.2000 ± 0.0000** | 0.4200 ± 0.0000" in rows["msft"]
    records.append({**_rec("full", 0, 0.1), "test": "deferred"})
    assert "| deferred (1 of 1) | deferred (1 of 1) |" in selection_table(records)
    pf = [_rec("msft", 0, 0.1, "pf", crps=0.2, msis=5.0, mase=0.9)]
    header = selection_table(pf).splitlines()[0]
    assert "test CRPS | test MSIS | test MASE" in header
