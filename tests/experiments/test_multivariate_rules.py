"""scripts/multivariate_lsf.sh's rules (issue 28, `msft_runner.multivariate`): the lr grid 0.3, 1, 3 is
extended 3x beyond an edge choice at most twice, seed 0's choice is read from validation only, and the
paired M-vs-S comparison equals a hand computation on the selected runs."""

import json
import shutil
from pathlib import Path

import pytest

from msft_runner import multivariate as mv


def test_next_scale_extends_an_edge_choice_at_most_twice_beyond_the_small_grid():
    grid = list(mv.BASE_GRID)
    assert mv.next_scale(grid, 1.0) is None  # interior
    assert mv.next_scale(grid, 3.0) == 9.0
    assert mv.next_scale(grid, 0.3) == pytest.approx(0.1)
    assert mv.next_scale([*grid, 0.1], 0.1) == pytest.approx(0.03333)
    assert mv.next_scale([*grid, 0.1], 0.3) is None  # interior after one extension
    assert mv.next_scale([*grid, 0.1, 0.03333], 0.03333) is None  # two extensions used: flagged instead
    assert mv.extensions([*grid, 9.0, 27.0]) == [9.0, 27.0]
    assert mv.split_mode("lora_M") == ("lora", "M") and mv.split_mode("msft") == ("msft", "")


def _run(root: Path, method: str, lr: float, seed: int, val: float, mse: float | None, params: int = 10) -> None:
    run = root / "ETTh1_H96" / "tiny_moirai" / method / f"lr{lr:g}" / f"seed{seed}"
    run.mkdir(parents=True)
    record = dict(
        status="ok", backbone="tiny_moirai", dataset="ETTh1", horizon=96, method=method, seed=seed, lr_scale=lr,
        val_score=val, trainable_params=params, protocol="lsf", test="deferred",
    )  # fmt: skip
    if mse is not None:
        record.update(test="done", mse=mse, mae=mse, test_stride=1)
    (run / "metrics.json").write_text(json.dumps(record))


def test_choice_search_table_and_paired_modes(tmp_path, capsys):
    for mode, vals, tests in (("S", (0.5, 0.4, 0.3), (0.9, 0.8, 0.2)), ("M", (0.2, 0.4, 0.6), (0.7, 0.6, 0.5))):
        for lr, val in zip((0.3, 1, 3), vals, strict=True):  # seed 0's grid; its tests only where selected
            best = val == min(vals)
            _run(tmp_path, f"lora_{mode}", lr, 0, val, tests[0] if best else None)
        chosen = 3 if mode == "S" else 0.3
        _run(tmp_path, f"lora_{mode}", chosen, 1, vals[1] + 0.05, tests[1])
        _run(tmp_path, f"lora_{mode}", chosen, 2, vals[2] + 0.05, tests[2])
    mv.main(["next", str(tmp_path), "ETTh1", "lora_S"])
    mv.main(["chosen", str(tmp_path), "ETTh1", "lora_S"])
    mv.main(["next", str(tmp_path), "ETTh1", "lora_M"])
    assert capsys.readouterr().out.split() == ["9", "3", "0.1"]
    text = mv.notes(mv.collect([tmp_path]))
    assert "| ETTh1 | 96 | lora_S | 0.3, 1, 3 | none | 3 | **no (edge)** |" in text
    # M - S per seed: val (0.2-0.3, 0.45-0.45, 0.65-0.35), test (0.7-0.9, 0.6-0.8, 0.5-0.2)
    assert "| ETTh1 | 96 | lora | 3 | +0.0667 | 1 of 3 | -0.0333 (3 seeds) | 2 of 3 |" in text


def test_notes_keep_the_rows_of_the_committed_table_whose_runs_are_gone(tmp_path, capsys):
    """A later dataset's rows are added to a table whose earlier runs were cleared from runs/: the
    notes read those from the committed CSV (`--keep`, as msft-results) and say the same as before."""
    from msft_runner import results

    root = tmp_path / "runs"
    for mode, vals in (("S", (0.5, 0.4, 0.3)), ("M", (0.2, 0.4, 0.6))):
        for lr, val in zip((0.3, 1, 3), vals, strict=True):
            _run(root, f"lora_{mode}", lr, 0, val, 0.1 * val if val == min(vals) else None)
    results.main([str(root), "--name", "lsf", "--out", str(tmp_path / "table"), "--select"])
    capsys.readouterr()
    mv.main(["notes", str(root)])
    before = capsys.readouterr().out
    for method in ("lora_S", "lora_M"):
        shutil.rmtree(root / "ETTh1_H96" / "tiny_moirai" / method)
    mv.main(["notes", str(root), "--keep", str(tmp_path / "table" / "lsf.csv")])
    after = capsys.readouterr().out
    assert "| ETTh1 | 96 | lora_S | 0.3, 1, 3 | none | 3 | **no (edge)** |" in after
    assert after.split("\n", 2)[2] == before.split("\n", 2)[2]  # all but the line naming the command
