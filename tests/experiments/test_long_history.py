"""Windows with the history per-scale context lengths need (`method_history`): validation and test
windows borrow it from the splits before, their count and their scale-1 part are unchanged."""

import pytest
import torch

from msft_runner.train import build_datamodule, method_history, run

from .conftest import TINY, compose, small_csv

ETTH1 = ["data=ETTh1", "data.context_length=32", "data.horizon=8", "data.eval_batch_size=4096"]


@pytest.mark.parametrize(
    "option, factor",
    [("+method.options.context_lengths=equal_tokens", 4), ("+method.options.context_lengths=[32,64,128]", 4)],
)
def test_windows_gain_history_and_keep_their_scale_one_part(data_dir, option, factor):
    cfg = compose(["backbone=toy_tiny", "method=msft", *ETTH1, f"data.data_dir={data_dir}", option])
    assert method_history(cfg) == factor * 32
    plain = build_datamodule(cfg.data, 0)
    longer = build_datamodule(cfg.data, 0, history=method_history(cfg))
    plain.setup("fit")
    longer.setup("fit")
    for split in ("val", "test"):
        a, b = plain.splits[split], longer.splits[split]
        assert len(a) == len(b)  # the protocol's windows: the look-back is borrowed, not taken from them
        first, last = a[list(range(0, len(a), 97))], b[list(range(0, len(b), 97))]
        assert first["past_target"].shape[1] == 32 and last["past_target"].shape[1] == 128
        assert torch.equal(last["past_target"][:, -32:], first["past_target"])  # the same rows of one array
        assert torch.equal(last["future_target"], first["future_target"])


def test_the_long_context_methods_ask_for_four_times_the_context():
    """configs/method/msft_equal_tokens (scales [1, 2, 4]) and msft_single_scale_long ([2048] at scale 1)."""
    for method in ("msft_equal_tokens", "msft_single_scale_long"):
        assert method_history(compose(["backbone=toy_tiny", f"method={method}", "data.context_length=512"])) == 2048


def test_no_per_scale_context_needs_no_history():
    assert method_history(compose(["backbone=toy_tiny", "method=msft"])) is None
    assert method_history(compose(["backbone=toy_tiny", "method=lora"])) is None


def test_a_run_with_equal_tokens_trains_and_tests(tmp_path):
    cfg = compose(
        [
            *TINY,
            "data=csv",
            f"data.path={small_csv(tmp_path / 's.csv', rows=900)}",
            "data.target=x1",
            "method=msft",
            "+method.options.context_lengths=equal_tokens",
            "trainer.max_epochs=1",
        ]
    )
    record = run(cfg, tmp_path / "run", {"backbone": "toy_tiny"})
    assert record["status"] == "ok" and record["steps"] > 0 and record["mse"] > 0
