"""Fixtures of the data tests: the real benchmark files, when they are available."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$MSFT_DATA_DIR`` if set, else ``<repo root>/../shared/data``; skip when neither holds the files."""
    root = Path(os.environ.get("MSFT_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
    if not (root / "ETT-small" / "ETTh1.csv").exists():
        pytest.skip(f"benchmark data not found at {root} (set MSFT_DATA_DIR to a directory holding ETT-small/)")
    return root
