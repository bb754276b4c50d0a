"""`msft.finetune`'s leaderboard on its validation windows: the finetuned model against the zero-shot
backbone, the last value and the seasonal naive, a warning when a naive baseline wins, and the opt-in
``guard="naive"`` that forecasts with it."""

import logging

import numpy as np
import pandas as pd
import pytest

import msft
from msft_runner.forecaster import season_of

H, CONTEXT = 8, 64
FAST = dict(context_length=CONTEXT, batch_size=16, max_epochs=1, progress=False, max_steps=2)


def periodic_frame(items=2, length=160):
    """Series that repeat exactly every 24 hours: the seasonal naive forecast is exact."""
    t = np.arange(length)
    frames = [
        pd.DataFrame(
            {
                "item_id": f"s{i}",
                "timestamp": pd.date_range("2024-01-01", periods=length, freq="h"),
                "target": 5 + (i + 1) * np.sin(2 * np.pi * t / 24) + np.cos(2 * np.pi * t / 8),
            }
        )
        for i in range(items)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(
    "freq, period",
    [("h", 24), ("30min", 48), ("15min", 96), ("2h", 12), ("D", 7), ("B", 5), ("W", 52), ("MS", 12), ("QS", 4)],
)
def test_the_season_comes_from_the_frequency(freq, period):
    assert season_of(freq) == period


def _last_value_by_hand(data):
    """The last value's scaled MSE on each series' final H steps (finetune's validation window)."""
    errors = []
    for _, group in data.groupby("item_id"):
        values = group.target.to_numpy()
        context, future = values[-(H + CONTEXT) : -H], values[-H:]
        errors.append((context[-1] - future) / context.std())
    return float(np.mean(np.square(errors))), float(np.mean(np.abs(errors)))


def test_the_leaderboard_scores_every_reference_and_warns_when_a_naive_one_wins(caplog):
    data = periodic_frame()
    with caplog.at_level(logging.WARNING, logger="msft_runner.api"):
        f = msft.finetune("toy_tiny", data, H, scales=[1, 2], **FAST)
    board = f.leaderboard()
    assert isinstance(board, pd.DataFrame) and list(board.columns) == ["model", "mse", "mae", "windows", "used"]
    assert set(board.model) == {"msft", "zero_shot", "last_value", "seasonal_naive(24)"}
    assert board.iloc[0].model == "seasonal_naive(24)" and board.iloc[0].mse < 1e-10  # exact on periodic data
    assert (board.windows == 2).all() and board.set_index("model").used.to_dict()["msft"]
    mse, mae = _last_value_by_hand(data)
    row = board.set_index("model").loc["last_value"]
    np.testing.assert_allclose([row.mse, row.mae], [mse, mae], rtol=1e-5)  # float32 forecasts, float64 sums
    ours = board.set_index("model").loc["msft"]
    assert "worse on validation than the seasonal_naive(24) baseline" in caplog.text
    assert f"MSE {ours.mse:.4f} vs" in caplog.text


def test_guard_naive_forecasts_with_the_best_naive_baseline_and_survives_a_round_trip(tmp_path):
    data = periodic_frame()
    f = msft.finetune("toy_tiny", data, H, scales=[1, 2], guard="naive", **FAST)
    assert f.settings.fallback == {"name": "seasonal_naive", "period": 24}
    assert f.leaderboard().set_index("model").used.to_dict() == {
        "seasonal_naive(24)": True,
        "msft": False,
        "zero_shot": False,
        "last_value": False,
    }
    out = f.predict_df(data)
    for item, group in data.groupby("item_id"):
        expected = group.target.to_numpy()[-24:][:H]  # one period back
        np.testing.assert_allclose(out[out.item_id == item]["mean"].to_numpy(), expected, rtol=1e-6)
    assert out["0.5"].isna().all()  # a naive forecast has no distribution
    f.save_pretrained(tmp_path / "guarded")
    loaded = msft.from_pretrained(tmp_path / "guarded")
    pd.testing.assert_frame_equal(loaded.leaderboard(), f.leaderboard())
    np.testing.assert_array_equal(loaded.predict_df(data)["mean"], out["mean"])
    with pytest.raises(ValueError, match="guard='always'"):
        msft.finetune("toy_tiny", data, H, guard="always", **FAST)


def test_the_warning_and_the_fallback_follow_the_validation_comparison(caplog):
    rng = np.random.default_rng(0)
    data = periodic_frame()
    data["target"] = rng.standard_normal(len(data)) * 0.01 + 3.0  # noise: the naive forecasts are poor
    with caplog.at_level(logging.WARNING, logger="msft_runner.api"):
        f = msft.finetune("toy_tiny", data, H, method="zero_shot", guard="naive", **FAST)
    board = f.leaderboard().set_index("model")
    best_naive = board.loc[["last_value", "seasonal_naive(24)"]].mse.min()
    if board.loc["zero_shot"].mse <= best_naive:
        assert f.settings.fallback is None and "worse on validation" not in caplog.text
    else:  # the toy backbone lost: then the warning and the fallback must both be there
        assert f.settings.fallback is not None and "worse on validation" in caplog.text
