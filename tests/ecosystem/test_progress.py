"""The training progress bar: in optimiser steps (not Lightning's "Epoch 0/9"), showing the validation
score in the units of the table the run produces (`msft.finetune`: its leaderboard's scaled MSE)."""

import torch

import msft
from msft_runner.module import SCALED, context_scale
from tests.conftest import float32_tolerance

from .conftest import long_frame

H = 8
FAST = dict(context_length=64, batch_size=16, max_epochs=5)


def test_the_bar_counts_steps_to_max_steps_and_shows_the_scaled_validation_score(capfd):
    forecaster = msft.finetune("toy_tiny", long_frame(items=2, length=400), H, max_steps=3, progress=True, **FAST)
    err = capfd.readouterr().err
    assert "training" in err and "3/3" in err and "step" in err, err[-2000:]
    assert f"{SCALED}=" in err, err[-2000:]
    assert "Epoch" not in err  # Lightning's per-epoch bar is replaced
    # The score shown is the leaderboard's: the finetuned row's MSE on the same validation windows,
    # in units of each window's context standard deviation. One validation pass (at step 3), so the
    # kept weights are the ones it scored; the two sums run over the same per-element errors in
    # float32 batches of one validation batch's size.
    board = forecaster.leaderboard().set_index("model")
    shown = forecaster.training[SCALED]
    reduction = 16 * H  # elements per summed batch
    torch.testing.assert_close(
        torch.tensor(shown), torch.tensor(float(board.loc["msft", "mse"])), **float32_tolerance(reduction)
    )


def test_no_bar_when_progress_is_off(capfd):
    msft.finetune("toy_tiny", long_frame(items=2, length=400), H, max_steps=2, progress=False, **FAST)
    assert "training" not in capfd.readouterr().err


def test_the_context_scale_is_the_observed_steps_standard_deviation():
    past = torch.tensor([[1.0, 3.0, float("nan"), 5.0], [2.0, 2.0, 2.0, 2.0]]).unsqueeze(-1)  # (2, 4, 1)
    observed = torch.tensor([[True, True, True, False], [True, True, True, True]]).unsqueeze(-1)
    scale = context_scale(past, observed)  # first: steps 1, 3 (NaN and unobserved left out); second: constant
    assert scale.shape == (2, 1, 1)
    assert float(scale[0, 0, 0]) == 1.0  # std of {1, 3}: exact in float32
    assert 0 < float(scale[1, 0, 0]) <= 1e-8 * 3  # a constant context: a tiny positive floor, not 0


def test_the_lsf_evaluation_shows_its_windows_when_asked(capfd):
    import pandas as pd

    from msft.protocols import evaluate_lsf

    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=400, freq="h"), "y": range(400)})
    last_value = lambda past: past[:, -1:].expand(-1, 8, -1)  # noqa: E731
    quiet = evaluate_lsf(last_value, frame, horizon=8, context_length=32)
    assert "window" not in capfd.readouterr().err
    shown = evaluate_lsf(last_value, frame, horizon=8, context_length=32, progress=True)
    err = capfd.readouterr().err
    assert f"{shown['windows']}/{shown['windows']}" in err and "window" in err, err[-500:]
    assert shown == quiet


def test_validation_forecasts_large_batches_in_blocks_with_the_same_sums(monkeypatch):
    """`validation_sums` over 600 windows in blocks of 256 equals one pass over all of them (the block
    size raised past the batch) up to float32 summation order: each numerator is a sum of 600 * 8
    squared errors in float32, added per block in float64."""
    from msft_backbones.toy import ToyForecaster
    from msft_runner import module

    torch.manual_seed(0)
    model = msft.wrap(ToyForecaster(d_model=16), scales=[1, 2]).eval()
    past, future = torch.randn(600, 32, 1), torch.randn(600, 8, 1)
    batch = {
        "past_target": past,
        "future_target": future,
        "past_observed": torch.ones_like(past, dtype=torch.bool),
        "future_observed": torch.ones_like(future, dtype=torch.bool),
    }
    blocked = module.validation_sums(model, batch, "lsf", scaled=True)
    monkeypatch.setattr(module, "VALIDATION_BLOCK", 10_000)
    whole = module.validation_sums(model, batch, "lsf", scaled=True)
    assert set(blocked) == set(whole) == {"val_score", SCALED, "val_mse_scale1", "val_mse_scale2"}
    for name in whole:
        num, den = whole[name]
        torch.testing.assert_close(
            torch.tensor(blocked[name][0]), torch.tensor(num), **float32_tolerance(600 * 8, scale=num / den)
        )
        assert blocked[name][1] == den  # counts of observed points: exact
