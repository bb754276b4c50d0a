"""Every metric equals GluonTS's own implementation (gluonts.ev / gluonts.model.evaluation)."""

import numpy as np
import pandas as pd
import pytest
import torch
from gluonts.dataset.common import ListDataset
from gluonts.dataset.split import split
from gluonts.ev import metrics as gm
from gluonts.model.evaluation import evaluate_forecasts
from gluonts.model.forecast import SampleForecast

from msft.protocols import evaluate_pf, last_value
from msft.protocols.metrics import QUANTILES, mae, mse, pf_metrics, sample_quantiles

GLUONTS_METRICS = {
    "crps": gm.MeanWeightedSumQuantileLoss(quantile_levels=QUANTILES),
    "msis": gm.MSIS(),
    "smape": gm.SMAPE(),
    "mase": gm.MASE(),
    "nd": gm.ND(),
    "nrmse": gm.NRMSE(),
}


def _gluonts_batch(target, samples, seasonal_error):
    """The data dict GluonTS's metrics read, built with GluonTS's own SampleForecast quantiles."""
    forecasts = [SampleForecast(s, start_date=pd.Period("2020-01-01", "h")) for s in samples]
    data = {
        "label": np.ma.masked_invalid(target),
        "seasonal_error": seasonal_error[:, None],
        "mean": np.stack([f.mean for f in forecasts]),
    }
    for q in sorted(set(QUANTILES) | {0.025, 0.5, 0.975}):
        data[str(q)] = np.stack([f.quantile(q) for f in forecasts])
    return data


@pytest.mark.parametrize("seed,num_samples", [(0, 100), (1, 37), (2, 1)])
def test_pf_metrics_equal_gluonts(seed, num_samples):
    rng = np.random.default_rng(seed)
    target = rng.gamma(2.0, 2.0, size=(11, 24)) * rng.choice([-1, 1], size=(11, 24))
    samples = target[:, None] + rng.normal(0, 2, size=(11, num_samples, 24))
    seasonal_error = rng.uniform(0.5, 2, size=11)
    ours = pf_metrics(target, samples, seasonal_error)
    data = _gluonts_batch(target, samples, seasonal_error)
    for name, definition in GLUONTS_METRICS.items():
        expected = float(definition(axis=None).update(data).get())
        assert ours[name] == pytest.approx(expected, rel=1e-10), name


def test_sample_quantiles_match_gluonts_order_statistic():
    samples = np.random.default_rng(3).normal(size=(4, 10, 6))
    forecast = SampleForecast(samples[2], start_date=pd.Period("2020-01-01", "h"))
    for q in (0.1, 0.25, 0.5, 0.9):  # 0.25 * 9 = 2.25 and 0.5 * 9 = 4.5: rounding conventions matter
        np.testing.assert_array_equal(sample_quantiles(samples, [q])[0, 2], forecast.quantile(q))


def test_point_metrics_by_hand():
    rng = np.random.default_rng(4)
    y, f = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    mask = rng.uniform(size=(5, 7)) > 0.3
    assert mse(y, f) == pytest.approx(((y - f) ** 2).mean())
    assert mae(y, f, mask) == pytest.approx(np.abs(y - f)[mask].mean())


def test_masked_targets_are_left_out_like_gluonts():
    rng = np.random.default_rng(5)
    target = rng.uniform(1, 5, size=(6, 12))
    target[1, 3] = target[4, 0] = np.nan
    samples = rng.uniform(1, 5, size=(6, 50, 12))
    seasonal_error = rng.uniform(0.5, 2, size=6)
    ours = pf_metrics(target, samples, seasonal_error, mask=~np.isnan(target))
    data = _gluonts_batch(target, samples, seasonal_error)
    for name, definition in GLUONTS_METRICS.items():
        assert ours[name] == pytest.approx(float(definition(axis=None).update(data).get()), rel=1e-10), name


def test_evaluate_pf_equals_gluonts_end_to_end():
    """Rolling split, context, seasonal error and metrics all as GluonTS's evaluate_forecasts computes them."""
    rng = np.random.default_rng(6)
    n_time, horizon, windows, context, season = 300, 6, 3, 24, 24
    t = np.arange(n_time)
    series = 10 + 3 * np.sin(2 * np.pi * t / season)[:, None] + rng.normal(size=(n_time, 4))  # (time, series)
    noise = np.random.default_rng(7).normal(size=(20, horizon))

    def sampler(past, horizon, num_samples):  # deterministic in the context, so GluonTS can replay it
        last, scale = past[:, -1, 0], past[:, :, 0].std(dim=1)  # (batch,), (batch,)
        paths = last[:, None, None] + scale[:, None, None] * torch.as_tensor(noise, dtype=past.dtype)  # (batch, S, H)
        return paths[:, :num_samples, :horizon, None]  # (batch, samples, horizon, 1)

    frame = pd.DataFrame(series, columns=list("abcd"))
    frame.insert(0, "date", pd.date_range("2020", periods=n_time, freq="h"))
    ours = evaluate_pf(
        sampler, frame, horizon=horizon, windows=windows, context_length=context, seasonality=season, num_samples=20
    )

    dataset = ListDataset(
        [{"target": series[:, i], "start": pd.Period("2020-01-01 00:00", "h")} for i in range(4)], freq="h"
    )
    _, template = split(dataset, offset=-windows * horizon)
    test_data = template.generate_instances(prediction_length=horizon, windows=windows, distance=horizon)
    forecasts = []
    for entry in test_data.input:
        past = torch.as_tensor(entry["target"][-context:], dtype=torch.float32)[None, :, None]
        samples = sampler(past, horizon, 20)[0, :, :, 0].double().numpy()
        forecasts.append(SampleForecast(samples, start_date=entry["start"] + len(entry["target"])))
    table = evaluate_forecasts(
        forecasts, test_data=test_data, metrics=list(GLUONTS_METRICS.values()), seasonality=season
    )
    expected = dict(zip(GLUONTS_METRICS, table.iloc[0].to_numpy()))
    for name in GLUONTS_METRICS:
        assert ours[name] == pytest.approx(expected[name], rel=1e-6), name


def test_baseline_runs_through_pf_protocol():
    series = np.tile(np.arange(24.0), 20)[:, None] + np.random.default_rng(8).uniform(1, 2, size=(480, 1))
    frame = pd.DataFrame({"date": pd.date_range("2020", periods=len(series), freq="h"), "x": series[:, 0]})
    result = evaluate_pf(last_value(), frame, horizon=24, windows=2, context_length=48, seasonality=24, num_samples=3)
    assert result["crps"] > 0 and np.isfinite(list(result.values())).all()
