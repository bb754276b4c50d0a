"""``trainer.threads``: torch's intra-op threads for a run (not a Lightning argument); ``verbose``: Lightning's notices."""

import pytest
import torch
from omegaconf import OmegaConf

from msft_runner.train import _trainer_arguments, set_threads

from .conftest import compose


def test_threads_sets_torchs_intra_op_threads_and_null_leaves_them():
    before = torch.get_num_threads()
    try:
        set_threads(OmegaConf.create({"threads": 2}))
        assert torch.get_num_threads() == 2
        set_threads(OmegaConf.create({"threads": None}))
        assert torch.get_num_threads() == 2
        set_threads(OmegaConf.create({}))  # a trainer config without the key (gpu, ddp)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_thread_count_names_the_field(bad):
    with pytest.raises(ValueError, match="trainer.threads="):
        set_threads(OmegaConf.create({"threads": bad}))


def test_threads_is_not_passed_to_lightning():
    cfg = compose(["trainer.threads=1"])
    assert cfg.trainer.threads == 1 and "threads" not in _trainer_arguments(cfg)


@pytest.mark.parametrize("verbose", [False, True])
def test_lightning_notices_only_when_verbose(tmp_path, caplog, verbose):
    import logging

    from msft_runner.train import run

    from .conftest import TINY, small_csv

    path = small_csv(tmp_path / "quiet.csv")
    cfg = compose([*TINY, "data=csv", f"data.path={path}", "data.target=x1", "method=msft", f"verbose={verbose}"])
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        run(cfg, tmp_path / "run", {"backbone": "toy_tiny"})
        assert logging.getLogger("lightning.pytorch").level == logging.INFO  # restored after training
    notices = [r for r in caplog.records if r.name.startswith("lightning") and "available" in r.getMessage()]
    assert bool(notices) == verbose  # "GPU available: False ...", "TPU available: ..."
