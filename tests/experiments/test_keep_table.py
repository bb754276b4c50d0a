"""A committed table stands in for runs that are gone (`msft-results --keep`, scripts/evidence.py
after runs/ was cleared): its rows read back as the records they were written from, a table
written again from them is the same file, a run still on disk wins over its row, and the evidence
driver neither trains again what the table holds nor forgets it when it selects."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from msft_runner.results import collect, keep_earlier, read_table_csv
from msft_runner.results import main as results_main

REPO = Path(__file__).resolve().parents[2]


WEIGHTS = "sha256:" + "a" * 64  # the backbone's weights fingerprint (msft.provenance.fingerprint)


def _run(root: Path, method: str, lr: float, seed: int, val: float, weights: str | None = None, **test) -> Path:
    run = root / "ETTh1_H96" / "tiny_moirai" / method / f"lr{lr:g}" / f"seed{seed}"
    run.mkdir(parents=True)
    record = dict(status="ok", backbone="tiny_moirai", dataset="ETTh1", horizon=96, method=method, protocol="lsf")
    if weights is not None:
        record["base_fingerprint"] = weights
    record.update(lr=1e-3 * lr, lr_scale=lr, seed=seed, val_score=val, trainable_params=49152, steps=80)
    record.update(test="done", test_stride=1, **test) if test else record.update(test="deferred")
    (run / "metrics.json").write_text(json.dumps(record))
    return run


def _sweep(root: Path) -> None:
    _run(root, "lora", 1, 0, 0.69, mse=0.41, mae=0.42, windows=2785)
    _run(root, "lora", 3, 0, 0.75)  # a candidate validation did not pick: never tested
    _run(root, "lora", 1, 1, 0.70, mse=0.40, mae=0.41, windows=2785)
    _run(root, "zero_shot", 1, 0, 0.80, mse=0.45, mae=0.44, windows=2785)


def test_a_table_read_back_is_the_records_it_was_written_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _sweep(Path("runs/sweep"))
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "t"])
    rows = {r["run_dir"]: r for r in read_table_csv(Path("out/t.csv"))}
    for record in collect([Path("runs/sweep")]):
        row = rows[record["run_dir"]]
        for key, value in record.items():  # every field the CSV has a column for, with its type
            if key in row:
                assert row[key] == value and type(row[key]) is type(value), key
        assert row["test"] == record["test"]
    assert rows["runs/sweep/ETTh1_H96/tiny_moirai/lora/lr1/seed0"]["test_stride"] == 1


def test_a_cleared_run_cache_keeps_its_rows_and_the_table_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _sweep(Path("runs/sweep"))
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "t"])
    first = Path("out/t.csv").read_text().splitlines()
    shutil.copy("out/t.csv", "kept.csv")
    shutil.rmtree("runs/sweep")
    _run(Path("runs/sweep"), "lora", 1, 2, 0.71, mse=0.43, mae=0.43, windows=2785)  # a new seed
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "t", "--keep", "kept.csv"])
    again = Path("out/t.csv").read_text().splitlines()
    assert again[0].endswith("--keep kept.csv --select")
    assert set(first[1:]) < set(again[1:])  # every earlier row, byte for byte, and the new seed's
    assert len(again) == len(first) + 1
    table = Path("out/t.md").read_text()
    assert "| lora | 3 |" in table  # lora's row now averages 3 seeds


def test_rows_keep_their_weights_and_a_table_from_before_fingerprints_still_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(Path("runs/sweep"), "lora", 1, 0, 0.69, weights=WEIGHTS, mse=0.41, mae=0.42, windows=2785)
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "t"])
    (row,) = read_table_csv(Path("out/t.csv"))
    assert row["base_fingerprint"] == WEIGHTS
    lines = Path("out/t.csv").read_text().splitlines()  # the same table as written before the column existed
    header = lines[1].split(",")
    assert header[-1] == "base_fingerprint"
    Path("old.csv").write_text("\n".join([lines[0], *(line.rsplit(",", 1)[0] for line in lines[1:])]) + "\n")
    (old,) = read_table_csv(Path("old.csv"))
    assert "base_fingerprint" not in old and old["mse"] == 0.41


def test_a_kept_row_from_other_weights_than_the_runs_on_disk_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _run(Path("runs/sweep"), "lora", 1, 0, 0.69, weights=WEIGHTS, mse=0.41, mae=0.42, windows=2785)
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "t"])
    shutil.rmtree("runs")
    other = "sha256:" + "b" * 64  # the backbone was pretrained again in between
    _run(Path("runs/sweep"), "lora", 3, 0, 0.75, weights=other)
    with pytest.raises(SystemExit):
        results_main(["runs/sweep", "--select", "--out", "out", "--name", "u", "--keep", "out/t.csv"])
    err = capsys.readouterr().err
    assert "runs/sweep/ETTh1_H96/tiny_moirai/lora/lr1/seed0" in err and "sha256:aaaaaaaaaaaa" in err
    assert "sha256:bbbbbbbbbbbb" in err and "mix" in err
    assert not Path("out/u.md").exists()
    shutil.rmtree("runs")  # runs on disk from the same weights: kept
    _run(Path("runs/sweep"), "lora", 3, 0, 0.75, weights=WEIGHTS)
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "u", "--keep", "out/t.csv"])
    assert len(read_table_csv(Path("out/u.csv"))) == 2


def test_the_driver_trains_again_committed_rows_of_other_weights(evidence, tmp_path, monkeypatch):
    root = Path("runs/evidence_lsf")
    _run(root, "lora", 1, 0, 0.69, weights=WEIGHTS, mse=0.41, mae=0.42, windows=2785)
    _run(root, "lora", 3, 0, 0.72, weights="sha256:" + "b" * 64)
    _run(root, "lora", 0.3, 0, 0.71)  # a row from before fingerprints were recorded: cannot be checked
    results_main([str(root), "--select", "--out", "results/evidence", "--name", "lsf"])
    shutil.rmtree("runs")
    monkeypatch.setattr(evidence, "fingerprint_of", lambda backbone: WEIGHTS)
    kept = sorted(r["lr_scale"] for r in evidence.committed("lsf"))
    assert kept == [0.3, 1]
    calls = []
    monkeypatch.setattr(
        evidence.subprocess, "run", lambda args, **kw: calls.append(args) or subprocess.CompletedProcess(args, 0)
    )
    evidence.train("lsf", "grid", "ETTh1", ["lora"], (0,), (0.3, 1.0, 3.0))
    (args,) = calls
    assert "lr_scale=3" in args


def test_the_backbone_fingerprint_is_what_its_config_builds(evidence):
    from omegaconf import OmegaConf

    from msft.provenance import fingerprint
    from msft_runner.backbones import build_backbone

    module, _ = build_backbone(OmegaConf.load(REPO / "configs" / "backbone" / "toy_tiny.yaml"))
    assert evidence.fingerprint_of("toy_tiny") == fingerprint(module)


def test_a_run_on_disk_wins_over_its_row():
    row = {"run_dir": "runs/x/lora/lr1/seed0", "val_score": 0.9}
    disk = {"run_dir": "runs/x/lora/lr1/seed0", "val_score": 0.7}
    other = {"run_dir": "runs/x/lora/lr3/seed0", "val_score": 0.8}
    assert keep_earlier([disk], [row, other]) == [disk, other]


def test_a_kept_row_tested_on_other_windows_counts_as_not_tested(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(Path("runs/sweep"), "lora", 1, 0, 0.69, mse=0.41, mae=0.42, windows=697)
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "t", "--test-stride", "ETTh1=4"])
    (row,) = read_table_csv(Path("out/t.csv"))
    assert row["test_stride"] == 4
    shutil.rmtree("runs")
    results_main(["runs/sweep", "--select", "--out", "out", "--name", "u", "--test-stride", "1", "--keep", "out/t.csv"])
    assert "deferred (1 of 1)" in Path("out/u.md").read_text()


@pytest.mark.parametrize("text", ["", "a,b\n1,2\n", "# Generated by: msft-results x\nbackbone,dataset\nm,ETTh1\n"])
def test_keep_names_a_file_that_is_not_such_a_table(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    _sweep(Path("runs/sweep"))
    Path("bad.csv").write_text(text)
    with pytest.raises(SystemExit):
        results_main(["runs/sweep", "--select", "--out", "out", "--name", "t", "--keep", "bad.csv"])
    err = capsys.readouterr().err
    assert "--keep bad.csv" in err and ("msft-results" in err or "columns" in err)


def _commit_lsf_table(tmp_path: Path) -> None:
    """The lsf suite's committed table, made from runs that are then deleted."""
    root = Path("runs/evidence_lsf")
    _run(root, "lora", 0.3, 0, 0.71)
    _run(root, "lora", 1, 0, 0.69, mse=0.41, mae=0.42, windows=2785)
    _run(root, "lora", 1, 1, 0.70, mse=0.40, mae=0.41, windows=2785)
    results_main([str(root), "--select", "--out", "results/evidence", "--name", "lsf"])
    shutil.rmtree("runs")


def test_the_driver_selects_from_the_committed_table_after_runs_are_gone(evidence, tmp_path):
    _commit_lsf_table(tmp_path)
    assert evidence.selected_lr("lsf", "ETTh1", "lora") == 1
    assert evidence.grid_choice("lsf", "ETTh1", "lora") == ([0.3, 1.0], 1.0)
    _run(Path("runs/evidence_lsf"), "lora", 3, 0, 0.60)  # a run on disk joins the committed ones
    assert evidence.selected_lr("lsf", "ETTh1", "lora") == 3


def test_the_driver_trains_only_what_the_committed_table_lacks(evidence, tmp_path, monkeypatch):
    _commit_lsf_table(tmp_path)
    calls = []
    monkeypatch.setattr(
        evidence.subprocess, "run", lambda args, **kw: calls.append(args) or subprocess.CompletedProcess(args, 0)
    )
    evidence.train("lsf", "seeds", "ETTh1", ["lora"], (1,), (1.0,))
    assert calls == []  # seed 1 at lr 1 is in the table
    evidence.train("lsf", "seeds", "ETTh1", ["lora"], (1, 2, 3), (1.0,))
    (args,) = calls
    assert "seed=2,3" in args and "method=lora" in args and "lr_scale=1" in args
    calls.clear()
    evidence.train("lsf", "grid", "ETTh1", ["lora", "full"], (0,), (0.3, 1.0, 3.0))
    trained = sorted((a[a.index("-m") + 3], a[a.index("-m") + 5]) for a in calls)
    assert trained == [
        ("method=full", "lr_scale=0.3"),
        ("method=full", "lr_scale=1"),
        ("method=full", "lr_scale=3"),
        ("method=lora", "lr_scale=3"),
    ]


def test_a_committed_choice_never_tested_trains_again_for_its_test(evidence, tmp_path, monkeypatch):
    """A session that ended between training and testing left its selected runs untested in the table,
    their checkpoints gone: those, and only those, train again."""
    root = Path("runs/evidence_lsf")
    _run(root, "lora", 0.3, 0, 0.71)  # not selected: its row suffices
    _run(root, "lora", 1, 0, 0.69)  # selected, never tested
    _run(root, "lora", 1, 1, 0.70, mse=0.40, mae=0.41, windows=2785)  # selected and tested
    results_main([str(root), "--select", "--out", "results/evidence", "--name", "lsf"])
    shutil.rmtree("runs")
    calls = []
    monkeypatch.setattr(
        evidence.subprocess, "run", lambda args, **kw: calls.append(args) or subprocess.CompletedProcess(args, 0)
    )
    evidence.train("lsf", "grid", "ETTh1", ["lora"], (0,), (0.3, 1.0))
    (args,) = calls
    assert "seed=0" in args and "lr_scale=1" in args
    evidence.train("lsf", "seeds", "ETTh1", ["lora"], (1,), (1.0,))
    assert len(calls) == 1
