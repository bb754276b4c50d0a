import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and immune to a busy machine's oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def data_dir():
    """``$MSFT_DATA_DIR``, else ``<repo>/../shared/data``; skip when ETT-small/ETTh1.csv is not there."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("MSFT_DATA_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
    if not (root / "ETT-small" / "ETTh1.csv").exists():
        pytest.skip(f"benchmark data not found at {root} (set MSFT_DATA_DIR to a directory holding ETT-small/)")
    return root
