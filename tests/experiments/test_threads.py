"""``trainer.threads``: torch's intra-op threads for a run (not a Lightning argument)."""

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
