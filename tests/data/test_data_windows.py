"""Vectorised windows equal a plain loop; the data module serves the msft batch convention."""

import numpy as np
import pandas as pd
import pytest
import torch

from msft.data import Windows
from msft_runner.lsf_data import LSFDataModule


def _loop_windows(values, L, H, stride, mode):
    out = []
    series = [values[:, [c]] for c in range(values.shape[1])] if mode == "S" else [values]
    for x in series:
        for start in range(0, len(x) - L - H + 1, stride):
            out.append(x[start : start + L + H])
    return np.stack(out)  # (windows, L + H, variate)


@pytest.mark.parametrize("mode,stride", [("S", 1), ("M", 1), ("S", 3), ("M", 5)])
def test_windows_equal_a_loop(mode, stride):
    values = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    windows = Windows(values, 8, 4, stride=stride, mode=mode)
    expected = _loop_windows(values, 8, 4, stride, mode)
    batch = windows[:]
    assert len(windows) == len(expected)
    np.testing.assert_array_equal(batch["past_target"].numpy(), expected[:, :8])
    np.testing.assert_array_equal(batch["future_target"].numpy(), expected[:, 8:])
    single = windows[len(windows) - 1]
    np.testing.assert_array_equal(single["future_target"].numpy(), expected[-1, 8:])
    shuffled = [5, 0, 2]
    np.testing.assert_array_equal(windows[shuffled]["past_target"].numpy(), expected[shuffled, :8])


def test_missing_values_are_masked():
    values = np.arange(40, dtype=np.float32).reshape(20, 2)
    values[3, 1] = np.nan
    batch = Windows(values, 5, 2, mode="M")[0:1]
    assert batch["past_observed"].dtype == torch.bool
    assert not batch["past_observed"][0, 3, 1] and batch["past_observed"].sum() == 9
    assert batch["past_target"][0, 3, 1] == 0  # filled, flagged as unobserved


def test_too_short_series_has_no_windows_and_bad_args_raise():
    assert len(Windows(np.zeros((10, 2)), 8, 4)) == 0
    with pytest.raises(ValueError, match="mode"):
        Windows(np.zeros((10, 2)), 4, 2, mode="X")
    with pytest.raises(ValueError, match="horizon"):
        Windows(np.zeros((10, 2)), 4, 0)


def test_datamodule_batches():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"date": pd.date_range("2020", periods=400, freq="h"), "a": rng.normal(size=400), "b": rng.normal(size=400)}
    )
    module = LSFDataModule(frame, context_length=32, horizon=8, batch_size=16, mode="S")
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"past_target", "future_target", "past_observed", "future_observed"}
    assert batch["past_target"].shape == (16, 32, 1) and batch["past_target"].dtype == torch.float32
    assert batch["future_observed"].shape == (16, 8, 1) and batch["future_observed"].dtype == torch.bool
    test_batches = list(module.test_dataloader())
    assert sum(len(b["past_target"]) for b in test_batches) == len(module.splits["test"]) == 2 * (80 - 8 + 1)
    module_m = LSFDataModule(frame, context_length=32, horizon=8, batch_size=4, mode="M")
    module_m.setup()
    assert next(iter(module_m.val_dataloader()))["past_target"].shape == (4, 32, 2)
