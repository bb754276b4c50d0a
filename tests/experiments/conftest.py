import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
# Tiny sizes and budgets: short context and horizon, a few training/validation batches (the test
# split protocol itself is never limited).
TINY = [
    "backbone=toy_tiny",
    "trainer=tiny",
    "data.context_length=32",
    "data.horizon=8",
    "data.batch_size=32",
    "data.eval_batch_size=1024",
    "plots=false",
    "names.backbone=toy_tiny",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MSFT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def evidence(tmp_path, monkeypatch):
    """scripts/evidence.py as a module, its checkout (``REPO``: runs/, results/) moved to ``tmp_path``."""
    spec = importlib.util.spec_from_file_location("evidence", REPO / "scripts" / "evidence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "REPO", tmp_path)
    return module


@pytest.fixture
def data_dir():
    """The real benchmark data (MSFT_DATA_DIR or ../shared/data); ETTh1 alone is also bundled."""
    for candidate in (os.environ.get("MSFT_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "ETT-small" / "ETTh1.csv").exists():
            return Path(candidate)
    pytest.skip("no benchmark data directory (set MSFT_DATA_DIR to a directory holding ETT-small/)")


def compose(overrides=(), config_name="train"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def small_csv(path: Path, rows: int = 600, columns: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    frame = pd.DataFrame(
        {f"x{i}": np.sin(2 * np.pi * t / 24 + i) + 0.1 * rng.standard_normal(rows) for i in range(columns)}
    )
    frame.insert(0, "date", pd.date_range("2021-01-01", periods=rows, freq="h"))
    frame.to_csv(path, index=False)
    return path


def cli(*args: str, cwd: Path, env_extra=None):
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "msft_runner.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
