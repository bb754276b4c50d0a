"""scripts/evidence.py (issue 18's suites): the order of work, the learning-rate choice for the
other seeds, and clear errors for a bad suite or dataset."""

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _record(root: Path, method: str, lr: float, seed: int, val: float) -> None:
    run = root / "ETTh1_H96" / "tiny_moirai" / method / f"lr{lr:g}" / f"seed{seed}"
    run.mkdir(parents=True)
    record = {"status": "ok", "backbone": "tiny_moirai", "dataset": "ETTh1", "horizon": 96, "method": method}
    record.update(lr_scale=lr, seed=seed, val_score=val)
    (run / "metrics.json").write_text(json.dumps(record))


def test_the_other_seeds_take_the_learning_rate_seed_0_chose_on_validation(evidence, tmp_path):
    root = tmp_path / "runs" / "evidence_lsf"
    for lr, val in ((0.3, 0.71), (1, 0.69), (3, 0.75)):
        _record(root, "lora", lr, 0, val)
    _record(root, "lora", 3, 1, 0.10)  # another seed's score never counts
    assert evidence.selected_lr("lsf", "ETTh1", "lora") == 1
    assert evidence.selected_lr("lsf", "ETTh1", "full") is None


def test_suites_and_datasets_run_in_the_order_given(evidence, monkeypatch):
    done = []
    monkeypatch.setattr(evidence, "run_dataset", lambda suite, data, events: done.append((suite, data)))
    evidence.main(["lsf:ETTm1,ETTh1", "pf", "lsf:Weather", "--jobs", "1", "--no-tables"])
    pf = [("pf", d) for d in ("pf_jena_weather", "pf_etth1", "pf_ettm1")]
    assert done == [("lsf", "ETTh1"), ("lsf", "ETTm1"), *pf, ("lsf", "Weather")]


def test_seeds_caps_every_suite_and_never_raises_one(evidence, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        evidence, "run_dataset", lambda suite, data, events: seen.setdefault(suite, evidence.SUITES[suite]["seeds"])
    )
    evidence.main(["pf", "lsf336:ETTh1", "--seeds", "4", "--jobs", "1", "--no-tables"])
    assert seen == {"pf": 4, "lsf336": 3}  # pf's 5 capped at 4; lsf336 has 3 and keeps them


@pytest.mark.parametrize(
    "args, message",
    [
        (["bogus"], "suite 'bogus'"),
        (["lsf:Foo"], "'Foo'"),
        (["lsf", "--jobs", "0"], "--jobs 0"),
        (["pf", "--seeds", "0"], "--seeds 0"),
    ],
)
def test_bad_arguments_name_the_bad_value(evidence, args, message, capsys):
    with pytest.raises(SystemExit):
        evidence.main(args)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "suite, dataset, stride",
    [
        ("lsf", "ETTm1", "1"),
        ("lsf336", "ETTm1", "1"),
        ("lsf336", "ETTh1", "1"),
        ("ablations", "ETTh1", "1"),
        ("ablations", "ETTm1", "1"),
        ("budget", "ETTm1", "1"),
        ("pf", "pf_jena_weather", None),
        ("pf", "pf_ettm1", None),
        ("long_context", "Weather", "1"),
        ("long_context336", "ETTm1", "1"),
        ("covariates", "ETTh1_OT_past_known", "1"),
    ],
)
def test_each_suite_trains_and_tests_on_its_test_windows(evidence, tmp_path, monkeypatch, suite, dataset, stride):
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(evidence.subprocess, "run", fake_run)
    monkeypatch.setattr(evidence, "selected", lambda suite, data, method: (1.0, evidence.knob_values(method)[0]))
    monkeypatch.setattr(evidence, "grid_choice", lambda *a: ([0.3, 1.0, 3.0], 1.0))
    (tmp_path / "runs" / f"evidence_{suite}" / f"{dataset}_H96").mkdir(parents=True)
    events = {k: threading.Event() for k in ("lsf/ETTh1", "lsf/ETTm1", f"{suite}/{dataset}")}
    for event in events.values():
        event.set()
    evidence.run_dataset(suite, dataset, events)
    trains = [a for a in calls if a[0].endswith("msft-train")]
    (evaluate,) = [a for a in calls if a[0].endswith("msft-evaluate")]
    assert trains and "--select" in evaluate
    if stride is None:  # PF: fixed rolling windows, no stride anywhere
        assert not any("stride" in arg for arg in evaluate + [x for a in trains for x in a])
    else:
        assert all(f"data.test_stride={stride}" in a for a in trains)
        assert evaluate[evaluate.index("--test-stride") + 1] == stride


def test_methods_restricts_every_stage_to_those_methods(evidence, tmp_path, monkeypatch):
    """--methods lora full: only their runs (and zero-shot) train; an unknown method is named."""
    calls = []
    monkeypatch.setattr(
        evidence.subprocess, "run", lambda args, **kw: calls.append(args) or subprocess.CompletedProcess(args, 0)
    )
    monkeypatch.setattr(evidence, "selected", lambda suite, data, method: (1.0, evidence.knob_values(method)[0]))
    monkeypatch.setattr(evidence, "grid_choice", lambda *a: ([0.3, 1.0, 3.0], 1.0))
    evidence.main(["lsf:ETTh1", "--methods", "lora", "full", "--jobs", "1", "--no-tables"])
    trained = {
        arg.split("=", 1)[1] for a in calls if a[0].endswith("msft-train") for arg in a if arg.startswith("method=")
    }
    assert {m for t in trained for m in t.split(",")} == {"zero_shot", "lora", "full"}
    evidence.ONLY_METHODS[:] = []
    with pytest.raises(SystemExit):
        evidence.main(["lsf:ETTh1", "--methods", "loraa"])


def test_jobs_train_one_process_per_run_and_never_more_than_jobs_at_once(evidence, tmp_path, monkeypatch):
    """--jobs 2 on a one-dataset suite: the grid's 5 methods x 5 rates train as 25 processes, the seeds
    of every method too, at most 2 at a time over all stages; the tests once, after them."""
    running, peak, calls, lock = [0], [0], [], threading.Lock()

    def fake_run(args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls.append(args)
        time.sleep(0.01)  # long enough for the pool's other threads to start theirs meanwhile
        with lock:
            running[0] -= 1
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(evidence.subprocess, "run", fake_run)
    monkeypatch.setattr(evidence, "selected", lambda suite, data, method: (1.0, evidence.knob_values(method)[0]))
    monkeypatch.setattr(evidence, "grid_choice", lambda *a: ([0.3, 1.0, 3.0], 1.0))
    monkeypatch.setattr(evidence, "write_table", lambda suite: None)
    (tmp_path / "runs" / "evidence_long_context336" / "ETTm1_H336").mkdir(parents=True)
    evidence.main(["long_context336", "--jobs", "2"])
    trains = [a for a in calls if a[0].endswith("msft-train")]
    runs = [tuple(x for x in a if x.startswith(("method=", "seed=", "lr_scale="))) for a in trains]
    assert all("," not in part for run in runs for part in run)  # one run per process
    methods = evidence.SUITES["long_context336"]["methods"]
    grid = {(f"method={m}", "seed=0", f"lr_scale={r:g}") for m in methods for r in evidence.GRID}
    seeds = {(f"method={m}", f"seed={k}", "lr_scale=1") for m in methods for k in (1, 2)}
    assert grid | seeds <= set(runs)
    assert 1 < peak[0] <= 2
    assert [a for a in calls if a[0].endswith("msft-evaluate")] == [calls[-1]]  # tested last, once
