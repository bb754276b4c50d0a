"""benchmarks/scales_auto.py (issue 30, item 3): auto's choice on a dataset's training split against
the validation scores of the fixed sets the evidence search trained; judged only when all three ran;
the committed table and the previous scores stand in for runs that are gone; the threshold study and
its leave-one-dataset-out check."""

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import scales_auto


def _record(root: Path, lr: float, tag: str, seed: int, val: float, dataset: str = "ETTh1") -> None:
    run = root / f"{dataset}_H96" / "tiny_moirai" / "msft" / (f"lr{lr:g}" + (f"_{tag}" if tag else "")) / f"seed{seed}"
    run.mkdir(parents=True)
    record = dict(status="ok", backbone="tiny_moirai", dataset=dataset, horizon=96, method="msft")
    record.update(seed=seed, lr_scale=lr, val_score=val, context_length=512, protocol="lsf", test="deferred")
    (run / "metrics.json").write_text(json.dumps(record))


def _main(tmp_path: Path, *extra: str) -> dict:
    """The benchmark on ``tmp_path/runs`` alone (no committed table), writing to ``tmp_path/out``."""
    args = [str(tmp_path / "runs"), "--keep", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out"), *extra]
    return scales_auto.main(args)


@pytest.mark.parametrize("s12, passes", [(0.70, True), (0.80, False)])
def test_auto_is_judged_against_the_fixed_sets_at_msfts_chosen_rate(tmp_path, s12, passes):
    root = tmp_path / "runs"
    _record(root, 1, "", 0, 0.75)  # [1, 2, 4] at the chosen rate
    _record(root, 3, "", 0, 0.90)
    _record(root, 1, "s12", 0, s12)
    _record(root, 1, "s1248", 0, 0.78)
    _record(root, 3, "s12", 0, 0.10)  # another rate: never compared
    _record(root, 1, "s12", 1, 0.10)  # another seed: never compared
    _main(tmp_path)
    (row,) = json.loads((tmp_path / "out" / "scales_auto.json").read_text())["rows"]
    # ETTh1 (bundled): a daily period of 24 hourly steps; scale 4 would leave 24 / 4 = 6 samples per period (< 8)
    assert row["auto"] == [1, 2] and row["period"] == pytest.approx(24.0, abs=0.5)
    assert row["lr_scale"] == 1 and row["auto_val"] == s12 and row["passes"] is passes
    assert row["best_fixed"] == ([1, 2] if passes else [1, 2, 4])
    table = (tmp_path / "out" / "scales_auto.md").read_text().splitlines()
    assert next(line for line in table if line.startswith("| ETTh1 |")).endswith("| yes |") is passes


def test_an_incomplete_search_is_not_judged(tmp_path):
    _record(tmp_path / "runs", 1, "", 0, 0.75)
    _record(tmp_path / "runs", 1, "s12", 0, 0.70)  # auto's set has run, [1, 2, 4, 8] not yet
    _main(tmp_path)
    (row,) = json.loads((tmp_path / "out" / "scales_auto.json").read_text())["rows"]
    assert row["passes"] is None and "not yet" in (tmp_path / "out" / "scales_auto.md").read_text()


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit):
        _main(tmp_path)
    assert "runs" in capsys.readouterr().err


def test_the_committed_table_and_the_previous_scores_stand_in_for_runs_that_are_gone(tmp_path):
    from msft_runner.results import main as results_main

    root = tmp_path / "runs"
    for tag, val in (("", 0.75), ("s12", 0.70), ("s1248", 0.78)):
        _record(root, 1, tag, 0, val)
    results_main([str(root), "--select", "--out", str(tmp_path / "table"), "--name", "lsf"])
    shutil.rmtree(root)
    with pytest.raises(SystemExit):  # no runs, no table, no previous scores
        _main(tmp_path)
    scales_auto.main([str(root), "--keep", str(tmp_path / "table" / "lsf.csv"), "--out", str(tmp_path / "out")])
    (row,) = json.loads((tmp_path / "out" / "scales_auto.json").read_text())["rows"]
    assert row["val"] == {"[1, 2]": 0.70, "[1, 2, 4]": 0.75, "[1, 2, 4, 8]": 0.78} and not row["kept"]
    _main(tmp_path)  # neither runs nor table: the previous scores, marked as kept
    (again,) = json.loads((tmp_path / "out" / "scales_auto.json").read_text())["rows"]
    assert again["val"] == row["val"] and again["kept"] and again["auto"] == [1, 2]
    assert "ETTh1 (kept)" in (tmp_path / "out" / "scales_auto.md").read_text()


def test_the_threshold_study_counts_passes_and_leaves_each_dataset_out():
    def row(dataset, period, s12, s124, s1248):
        return dict(dataset=dataset, period=period, val={"[1, 2]": s12, "[1, 2, 4]": s124, "[1, 2, 4, 8]": s1248})

    # hourly data want [1, 2], 15-minute data [1, 2, 4, 8]; at context 512, patch 32 scale 8 has 2 tokens
    rows = [row("a", 24.0, 1.0, 1.1, 1.2), row("b", 24.0, 1.0, 1.1, 1.2), row("c", 96.0, 1.2, 1.1, 1.0)]
    result = scales_auto.study(rows, 512, 32)
    by_pair = {(e["min_per_period"], e["min_tokens"]): e for e in result["thresholds"]}
    assert by_pair[(8, 2)]["choices"] == {"a": [1, 2], "b": [1, 2], "c": [1, 2, 4, 8]}
    assert by_pair[(8, 2)]["passes"] == 3 and by_pair[(4, 4)]["passes"] == 0  # (4, 4): [1, 2, 4] everywhere
    assert by_pair[(4, 4)]["gaps"]["a"] == pytest.approx(0.1)
    left = {h["dataset"]: h for h in result["leave_one_out"]}
    assert left["a"]["passes"] and left["c"]["passes"]
    # left out, "c" (the only 15-minute dataset) is judged by a pair chosen on "a" and "b" alone: the
    # earliest pair that passes both (8 samples, 1 token; 24 / 4 = 6 keeps scale 4 at 6) also keeps scale 8 for a 96-step period
    assert left["c"]["thresholds"] == [8, 1] and left["c"]["choice"] == [1, 2, 4, 8]
