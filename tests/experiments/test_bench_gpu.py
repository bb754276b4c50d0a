"""The GPU benchmark's every code path, on CPU at toy sizes (``--dry-run``): no GPU is needed to keep it working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~30 s on an idle 2-core machine (every variant in fp32 and bf16, Time-DPD)
def test_bench_gpu_dry_run_writes_every_row(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gpu", "--dry-run", "--geometries", "small", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert result["meta"]["dry_run"] is True
    rows = {(r["precision"], r["variant"]) for r in result["moirai"]}
    variants = ("full finetuning", "LoRA (peft, r=16, q/k/v)", "msft [1,2,4]")
    assert rows == {(p, v) for p in ("fp32", "bf16") for v in variants}
    assert all(r["median_ms"] > 0 and r["trainable_params"] > 0 for r in result["moirai"])
    assert [r["variant"] for r in result["time_dpd"]] == ["Time-DPD single-scale", "msft [1,2,4]"]
    assert "Dry run on CPU" in (tmp_path / "bench_gpu.md").read_text()
