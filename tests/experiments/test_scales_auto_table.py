"""benchmarks/scales_auto.py (issue 30, item 3): auto's choice on a dataset's training split against
the validation scores of the fixed sets the evidence search trained; judged only when all three ran."""

import json
from pathlib import Path

import pytest

from benchmarks import scales_auto


def _record(root: Path, lr: float, tag: str, seed: int, val: float, dataset: str = "ETTh1") -> None:
    run = root / f"{dataset}_H96" / "tiny_moirai" / "msft" / (f"lr{lr:g}" + (f"_{tag}" if tag else "")) / f"seed{seed}"
    run.mkdir(parents=True)
    record = dict(status="ok", backbone="tiny_moirai", dataset=dataset, horizon=96, method="msft")
    record.update(seed=seed, lr_scale=lr, val_score=val, context_length=512)
    (run / "metrics.json").write_text(json.dumps(record))


@pytest.mark.parametrize("s12, passes", [(0.70, False), (0.80, True)])
def test_auto_is_judged_against_the_fixed_sets_at_msfts_chosen_rate(tmp_path, s12, passes):
    root = tmp_path / "runs"
    _record(root, 1, "", 0, 0.75)  # [1, 2, 4] at the chosen rate
    _record(root, 3, "", 0, 0.90)
    _record(root, 1, "s12", 0, s12)
    _record(root, 1, "s1248", 0, 0.78)
    _record(root, 3, "s12", 0, 0.10)  # another rate: never compared
    _record(root, 1, "s12", 1, 0.10)  # another seed: never compared
    scales_auto.main([str(root), "--out", str(tmp_path / "out")])
    (row,) = json.loads((tmp_path / "out" / "scales_auto.json").read_text())
    # ETTh1 (bundled): a daily period of 24 hourly steps; scale 8 would leave 512 / (8 * 32) = 2 tokens
    assert row["auto"] == [1, 2, 4] and row["period"] == pytest.approx(24.0, abs=0.5)
    assert row["lr_scale"] == 1 and row["auto_val"] == 0.75 and row["passes"] is passes
    assert row["best_fixed"] == ([1, 2] if not passes else [1, 2, 4])
    assert ("| no |" in (tmp_path / "out" / "scales_auto.md").read_text()) is not passes


def test_an_incomplete_search_is_not_judged(tmp_path):
    root = tmp_path / "runs"
    _record(root, 1, "", 0, 0.75)
    scales_auto.main([str(root), "--out", str(tmp_path / "out")])
    (row,) = json.loads((tmp_path / "out" / "scales_auto.json").read_text())
    assert row["passes"] is None and "not yet" in (tmp_path / "out" / "scales_auto.md").read_text()


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit):
        scales_auto.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert "runs" in capsys.readouterr().err
