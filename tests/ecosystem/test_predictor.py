"""`MSFTModel.create_predictor`: a real GluonTS predictor, scored by GluonTS's own evaluation."""

import numpy as np
import pandas as pd
import pytest
import torch
from gluonts.dataset.common import ListDataset
from gluonts.dataset.split import split
from gluonts.ev.metrics import MAE, MSE, MeanWeightedSumQuantileLoss
from gluonts.evaluation import make_evaluation_predictions
from gluonts.model import evaluate_model
from gluonts.model.forecast import SampleForecast

import msft
from msft.protocols.metrics import crps
from msft_backbones.moirai import load_tiny_moirai
from msft_backbones.toy import ToyForecaster

H, CONTEXT = 12, 128


@pytest.fixture(scope="module")
def moirai_model():
    return msft.wrap(load_tiny_moirai(), scales=[1, 2], patch_size=32).eval()


def sine_dataset(lengths=(300, 400, 60), freq="h", nan_at=None):
    rng = np.random.default_rng(0)
    entries = []
    for i, n in enumerate(lengths):
        y = 5 + np.sin(2 * np.pi * np.arange(n) / 24 + i) + 0.1 * rng.standard_normal(n)
        if nan_at is not None:
            y[nan_at] = np.nan
        entries.append(
            {"target": y.astype(np.float32), "start": pd.Period("2024-01-01", freq=freq), "item_id": f"item{i}"}
        )
    return ListDataset(entries, freq=freq)


def test_sample_forecasts_for_any_length_nans_and_variates(moirai_model):
    data = list(sine_dataset(lengths=(1000, 40), nan_at=slice(10, 20)))
    data.append(
        {
            "target": np.stack([data[0]["target"][:200], data[0]["target"][100:300]]),
            "start": pd.Period("2024-03-01", freq="h"),
            "item_id": "multi",
        }
    )
    predictor = moirai_model.create_predictor(H, batch_size=2, num_samples=20, context_length=CONTEXT)
    forecasts = list(predictor.predict(data))
    assert [f.item_id for f in forecasts] == ["item0", "item1", "multi"]
    assert all(isinstance(f, SampleForecast) for f in forecasts)
    assert forecasts[0].samples.shape == (20, H) and forecasts[2].samples.shape == (20, H, 2)
    assert forecasts[1].start_date == pd.Period("2024-01-01", freq="h") + 40  # right after the last step
    assert all(np.isfinite(f.samples).all() for f in forecasts)


def test_gluonts_evaluation_matches_a_hand_computation(moirai_model):
    """evaluate_model on GIFT-Eval-style rolling windows: MSE of the sample mean by hand, and GluonTS's
    mean weighted quantile loss equal to msft's own CRPS on the same samples."""
    _, template = split(sine_dataset(), offset=-2 * H)
    test_data = template.generate_instances(prediction_length=H, windows=2, distance=H)
    predictor = moirai_model.create_predictor(H, num_samples=50, context_length=CONTEXT)
    levels = [0.1 * i for i in range(1, 10)]
    torch.manual_seed(0)
    table = evaluate_model(
        predictor, test_data=test_data, metrics=[MSE(), MAE(), MeanWeightedSumQuantileLoss(quantile_levels=levels)]
    )
    torch.manual_seed(0)
    forecasts = list(predictor.predict(test_data.input))
    labels = np.stack([entry["target"] for entry in test_data.label])  # (windows * items, H)
    samples = np.stack([f.samples for f in forecasts])  # (windows * items, S, H)
    assert len(forecasts) == 6
    mse = np.mean((labels - samples.mean(1)) ** 2)
    assert table["MSE[mean]"].item() == pytest.approx(mse, rel=1e-5)
    assert table["mean_weighted_sum_quantile_loss"].item() == pytest.approx(crps(labels, samples), rel=1e-5)


def test_make_evaluation_predictions(moirai_model):
    forecast_it, ts_it = make_evaluation_predictions(
        sine_dataset(), moirai_model.create_predictor(H, num_samples=10, context_length=CONTEXT), num_samples=10
    )
    forecasts, series = list(forecast_it), list(ts_it)
    assert len(forecasts) == len(series) == 3
    assert forecasts[2].start_date == series[2].index[-H]


def test_a_point_backbone_gives_its_point_forecast_as_one_path():
    torch.manual_seed(0)
    model = msft.wrap(ToyForecaster(), scales=[1, 2]).eval()
    data = list(sine_dataset(lengths=(100, 80)))
    (first, second) = model.create_predictor(H, context_length=64).predict(data)
    assert first.samples.shape == (1, H)
    past = torch.as_tensor(data[1]["target"][-64:])[None, :, None]
    np.testing.assert_allclose(second.mean, model.predict(past, H)[0, :, 0].detach().numpy(), rtol=1e-5, atol=1e-5)


def test_clear_errors(moirai_model):
    predictor = moirai_model.create_predictor(H, context_length=CONTEXT)
    empty = {"target": np.full(50, np.nan, np.float32), "start": pd.Period("2024", freq="h"), "item_id": "gone"}
    with pytest.raises(ValueError, match="'gone'.*no finite value"):
        list(predictor.predict([empty]))
    with pytest.raises(ValueError, match="'target' and 'start'"):
        list(predictor.predict([{"target": np.ones(50)}]))
    with pytest.raises(ValueError, match="prediction_length=0"):
        moirai_model.create_predictor(0)
