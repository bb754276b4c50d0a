"""evaluate_lsf against a hand computation, both forecaster kinds, and shape checking."""

import numpy as np
import pandas as pd
import pytest
import torch

from msft.protocols import evaluate_lsf, last_value, seasonal_naive


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    t = np.arange(200)
    return pd.DataFrame(
        {
            "date": pd.date_range("2020", periods=200, freq="h"),
            "a": np.sin(t / 5) * 3 + rng.normal(size=200) + 10,
            "b": np.cumsum(rng.normal(size=200)),
        }
    )


def _hand(frame, L, H, predict):
    x = frame[["a", "b"]].to_numpy()
    n_train, n_test = int(0.7 * len(x)), int(0.2 * len(x))
    z = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    errors = []
    for end in range(len(x) - n_test, len(x) - H + 1):  # first forecast step of each test window
        past, future = z[end - L : end], z[end : end + H]
        errors.append(predict(past, H) - future)
    errors = np.stack(errors)
    return float((errors**2).mean()), float(np.abs(errors).mean()), len(errors)


@pytest.mark.parametrize("mode", ["S", "M"])
def test_last_value_equals_hand_computation(frame, mode):
    mse, mae, n = _hand(frame, 16, 4, lambda past, H: np.repeat(past[-1:], H, axis=0))
    result = evaluate_lsf(last_value(), frame, horizon=4, context_length=16, mode=mode)
    assert result["mse"] == pytest.approx(mse, rel=1e-5)
    assert result["mae"] == pytest.approx(mae, rel=1e-5)
    assert result["windows"] == n * (2 if mode == "S" else 1)


def test_seasonal_naive_and_plain_callable(frame):
    mse, mae, _ = _hand(frame, 16, 12, lambda past, H: np.concatenate([past[-5:]] * 3)[:H])
    as_object = evaluate_lsf(seasonal_naive(5), frame, horizon=12, context_length=16, batch_size=7)
    as_callable = evaluate_lsf(seasonal_naive(5, horizon=12), frame, horizon=12, context_length=16)
    lambda_fn = evaluate_lsf(lambda past: past[:, -5:].repeat(1, 3, 1)[:, :12], frame, horizon=12, context_length=16)
    for result in (as_object, as_callable, lambda_fn):
        assert result["mse"] == pytest.approx(mse, rel=1e-5) and result["mae"] == pytest.approx(mae, rel=1e-5)


def test_wrong_shape_is_a_clear_error(frame):
    with pytest.raises(ValueError, match=r"forecaster returned \(.*\); expected .*\(\d+, 4, 1\)"):
        evaluate_lsf(lambda past: past[:, -3:], frame, horizon=4, context_length=16)
    with pytest.raises(ValueError, match="built without a horizon"):
        last_value()(torch.zeros(2, 16, 1))


def test_real_etth1_last_value_matches_published_repeat_baseline(data_dir):
    # DLinear (Zeng et al. 2023) "Repeat" row: ETTh1 H=96 MSE 1.295, MAE 0.713. Their test loader dropped
    # the last partial batch (drop_last=True), which moves the third decimal; we keep every window.
    result = evaluate_lsf(last_value(), "ETTh1", horizon=96, context_length=336, data_dir=data_dir)
    assert result["mse"] == pytest.approx(1.295, abs=2e-3)
    assert result["mae"] == pytest.approx(0.713, abs=2e-3)
    assert result["windows"] == 7 * (2880 - 96 + 1)
