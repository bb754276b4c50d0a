"""examples/covariates.py runs offline and writes its plot."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "covariates.py"


@pytest.mark.slow  # about 20 s: 20 finetuning steps of the embedded MOIRAI
def test_covariates_example_runs_and_plots(tmp_path, monkeypatch, capsys):
    plot = tmp_path / "covariates.png"
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(plot)])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert plot.is_file() and plot.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "leaderboard" not in out and "mean" in out and f"plot written to {plot}" in out
