"""The GluonTS predictor reads ``past_feat_dynamic_real`` / ``feat_dynamic_real`` from the entries."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

import msft

from .test_model import CONTEXT, HORIZON, PATCH, data

pytest.importorskip("gluonts")


@pytest.fixture(scope="module")
def pristine():
    from msft_backbones.moirai import load_tiny_moirai

    return load_tiny_moirai()


def entries(past, past_cov, known_cov):
    """GluonTS entries: target ``(variate, time)``, covariates ``(k, time)`` (known ones over the horizon too)."""
    return [
        {
            "start": pd.Period("2024-01-01", freq="h"),
            "item_id": f"s{i}",
            "target": past[i].T.numpy(),
            "past_feat_dynamic_real": past_cov[i].T.numpy(),
            "feat_dynamic_real": known_cov[i].T.numpy(),
        }
        for i in range(len(past))
    ]


@pytest.mark.parametrize("mode", ["M", "S"])
def test_predictor_forecasts_with_the_entries_covariates(pristine, mode):
    past, _, past_cov, known_cov = data()
    model = msft.wrap(
        copy.deepcopy(pristine), scales=[1, 2], patch_size=PATCH, mode=mode, past_covariates=2, known_covariates=1
    )
    predictor = model.create_predictor(HORIZON, batch_size=4, num_samples=16, context_length=CONTEXT, seed=3)
    forecasts = list(predictor.predict(entries(past, past_cov, known_cov)))
    with torch.no_grad():
        expected = model.eval().predict_samples(
            past, HORIZON, num_samples=16, seed=3, past_covariates=past_cov, known_covariates=known_cov
        )  # (batch, S, H, variate)
    assert len(forecasts) == 2 and forecasts[0].samples.shape == (16, HORIZON, 3)
    for i, forecast in enumerate(forecasts):
        np.testing.assert_array_equal(forecast.samples, expected[i].numpy())
    # the known covariates over the horizon are read
    changed = known_cov.clone()
    changed[:, CONTEXT:] += 5
    other = list(predictor.predict(entries(past, past_cov, changed)))
    assert not np.allclose(other[0].samples.mean(0), forecasts[0].samples.mean(0))


def test_predictor_errors_name_the_field(pristine):
    past, _, past_cov, known_cov = data()
    model = msft.wrap(copy.deepcopy(pristine), scales=[1], patch_size=PATCH, past_covariates=2, known_covariates=1)
    predictor = model.create_predictor(HORIZON, num_samples=4, context_length=CONTEXT)
    short = entries(past, past_cov, known_cov[:, :CONTEXT])
    with pytest.raises(ValueError, match=r"feat_dynamic_real has shape \(1, 260\); expected \(1, 280\)"):
        list(predictor.predict(short))
    missing = entries(past, past_cov, known_cov)
    del missing[0]["past_feat_dynamic_real"]
    with pytest.raises(ValueError, match="item 's0': no 'past_feat_dynamic_real'"):
        list(predictor.predict(missing))
