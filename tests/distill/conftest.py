import pytest


@pytest.fixture(scope="session")
def data_dir():
    """``$MSFT_DATA_DIR``, else ``<repo>/../shared/data``; skip when ETT-small/ETTh1.csv is not there."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("MSFT_DATA_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
    if not (root / "ETT-small" / "ETTh1.csv").exists():
        pytest.skip(f"benchmark data not found at {root} (set MSFT_DATA_DIR to a directory holding ETT-small/)")
    return root
