"""Deferred testing (``defer_test=true`` + ``msft-evaluate``): a sweep's candidates train and validate,
and only the runs validation selects are tested, with exactly the scores an immediate test gives."""

import json

import pytest

from msft_runner.evaluate import main as evaluate_main
from msft_runner.results import at_test_stride, parse_test_strides
from msft_runner.results import main as results_main
from msft_runner.train import METRICS, TEST_FIELDS, evaluate_run, run

from .conftest import TINY, compose, small_csv


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
    for key in (*TEST_FIELDS, "tests"):
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


@pytest.mark.parametrize("method", ["zero_shot", "msft"])
def test_a_run_tested_again_on_every_window_scores_what_a_stride_1_run_would_and_keeps_its_first_test(tmp_path, method):
    path = small_csv(tmp_path / "s.csv")
    strided = run(_cfg(path, f"method={method}", "data.test_stride=3"), tmp_path / "a", {"backbone": "toy_tiny"})
    every = run(_cfg(path, f"method={method}", "data.test_stride=1"), tmp_path / "b", {"backbone": "toy_tiny"})
    assert strided["windows"] < every["windows"] and strided["test_stride"] == 3
    again = evaluate_run(tmp_path / "a", test_stride=1)
    assert (again["mse"], again["mae"], again["windows"]) == (every["mse"], every["mae"], every["windows"])
    assert json.loads((tmp_path / "a" / METRICS).read_text()) == again
    first = {k: strided[k] for k in TEST_FIELDS}
    assert again["tests"] == {"3": first, "1": {k: again[k] for k in TEST_FIELDS}}
    assert evaluate_run(tmp_path / "a", test_stride=3) == again  # tested there before: nothing to do
    assert evaluate_run(tmp_path / "a") == again
    (mine,) = at_test_stride([again], 3)
    assert (mine["mse"], mine["windows"], mine["test_stride"]) == (strided["mse"], strided["windows"], 3)
    assert at_test_stride([again], {"other": 3}) == [again]  # only the named datasets change
    (untested,) = at_test_stride([again], 2)  # never tested on every 2nd window: no score stands in
    assert untested["test"] == "deferred" and not set(TEST_FIELDS) & set(untested)


def test_evaluate_with_a_test_stride_retests_only_what_lacks_it(tmp_path, capsys):
    path = small_csv(tmp_path / "s.csv")
    run(_cfg(path, "method=lora", "data.test_stride=2"), tmp_path / "sweep" / "a", {"backbone": "toy_tiny"})
    evaluate_main([str(tmp_path / "sweep"), "--test-stride", "2"])
    assert "0 to test" in capsys.readouterr().out
    evaluate_main([str(tmp_path / "sweep"), "--test-stride", "1"])
    assert "1 to test" in capsys.readouterr().out
    record = json.loads((tmp_path / "sweep" / "a" / METRICS).read_text())
    assert record["test_stride"] == 1 and set(record["tests"]) == {"1", "2"}
    with pytest.raises(SystemExit):
        evaluate_main([str(tmp_path / "sweep"), "--test-stride", "0"])
    assert "--test-stride 0: expected a positive integer" in capsys.readouterr().err
    out = tmp_path / "tables"
    results_main([str(tmp_path / "sweep"), "--select", "--out", str(out), "--name", "t", "--test-stride", "2"])
    table = (out / "t.md").read_text()
    assert f"{record['tests']['2']['mse']:.4f}" in table and "--test-stride 2" in table


def test_a_pf_run_has_no_test_stride(tmp_path):
    run_dir = tmp_path / "pf"
    run_dir.mkdir()
    (run_dir / METRICS).write_text(json.dumps(_rec("msft", 0, 0.1, "pf", crps=0.2)))
    with pytest.raises(ValueError, match="only LSF runs have a test stride"):
        evaluate_run(run_dir, test_stride=1)
    with pytest.raises(ValueError, match="expected a positive integer"):
        evaluate_run(run_dir, test_stride=0)


def test_test_strides_parse_and_name_bad_values():
    assert parse_test_strides("1") == 1
    assert parse_test_strides("ETTm1=4, Weather=12") == {"ETTm1": 4, "Weather": 12}
    for bad in ("0", "x", "ETTm1=", "ETTm1=-2"):
        with pytest.raises(ValueError, match=f"test stride {bad!r}"):
            parse_test_strides(bad)


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


def test_a_table_of_mixed_strides_states_the_scoring_once_and_the_strided_datasets():
    from msft_runner.results import describe_scoring

    paths = "MSE of the mean, MAE of the median of 20 fused sample paths"

    def scored(dataset, stride):
        suffix = f"; every {stride}-th test window (off-protocol)" if stride > 1 else ""
        return {**_rec("msft", 0, 0.1), "dataset": dataset, "test_stride": stride, "scoring": paths + suffix}

    assert describe_scoring([scored("ETTh1", 1), scored("ETTh2", 1)]) == paths
    records = [scored("Weather", 12), scored("ETTm1", 4), scored("ETTm1", 4), scored("ETTh1", 1)]
    assert describe_scoring(records) == (
        f"{paths}; every 4-th test window of ETTm1, every 12-th test window of Weather (off-protocol)"
    )
    point = {**_rec("lora", 0, 0.1), "scoring": "MSE and MAE of the point forecast"}  # no test_stride: 1
    assert describe_scoring([point, scored("ETTh1", 1)]) == f"MSE and MAE of the point forecast; {paths}"
    assert describe_scoring([_rec("zero_shot", 0, 0.1)]) == ""


def test_evaluate_in_several_processes_scores_what_one_process_does(tmp_path, capsys):
    """--jobs 2: the same runs tested in two spawned processes (one torch thread each) score what the
    parent scores them in order; a broken run is reported without stopping the other."""
    path = small_csv(tmp_path / "s.csv")
    for seed in (0, 1):
        run(_cfg(path, "method=lora", f"seed={seed}"), tmp_path / "sweep" / f"seed{seed}", {"backbone": "toy_tiny"})
    tested = {s: json.loads((tmp_path / "sweep" / f"seed{s}" / METRICS).read_text()) for s in (0, 1)}
    for seed in (0, 1):
        _defer(tmp_path / "sweep" / f"seed{seed}")
    (tmp_path / "sweep" / "broken").mkdir()
    (tmp_path / "sweep" / "broken" / METRICS).write_text(json.dumps({**tested[0], "test": "deferred"}))
    with pytest.raises(SystemExit):
        evaluate_main([str(tmp_path / "sweep"), "--jobs", "2"])
    captured = capsys.readouterr()
    assert "3 to test" in captured.out and "broken" in captured.err and "1 run(s) failed" in captured.err
    for seed in (0, 1):
        again = json.loads((tmp_path / "sweep" / f"seed{seed}" / METRICS).read_text())
        # Another process may run another number of torch threads, so its sums may be ordered otherwise:
        # float32 rounding over these few thousand terms stays far below a relative 1e-5.
        assert (again["mse"], again["mae"]) == pytest.approx((tested[seed]["mse"], tested[seed]["mae"]), rel=1e-5)
        assert again["windows"] == tested[seed]["windows"]
    with pytest.raises(SystemExit):
        evaluate_main([str(tmp_path / "sweep"), "--jobs", "0"])
    assert "--jobs 0: expected at least 1" in capsys.readouterr().err
