"""Quantile heads on point backbones: pinball-trained, fused per level, sorted, calibrated."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import msft
from msft.losses import pinball_loss
from msft_backbones.toy import ToyForecaster

LEVELS = (0.1, 0.5, 0.9)
SIGMA = 0.5


def toy(seed=0, **options):
    torch.manual_seed(seed)
    backbone = ToyForecaster(patch_size=8, d_model=16, num_layers=1, num_heads=2)
    return msft.wrap(backbone, **{"scales": [1, 2], "quantile_levels": LEVELS, **options})


def noisy_cycles(batch, context=64, horizon=16, seed=0):
    """Daily cycles plus N(0, SIGMA^2) noise: the true q-quantile is the cycle + SIGMA * z_q."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(context + horizon, dtype=torch.float32)
    phase = torch.rand(batch, 1, generator=g) * 2 * math.pi
    series = torch.sin(2 * math.pi * t / 24 + phase) + SIGMA * torch.randn(batch, context + horizon, generator=g)
    return series[:, :context, None], series[:, context:, None]


def test_pinball_loss_is_minimised_by_the_true_quantile():
    y = torch.randn(20000, 1)
    candidates = torch.linspace(-2, 2, 81)
    losses = [
        pinball_loss(torch.full((20000, 1, 1), float(c)), y, torch.ones_like(y, dtype=torch.bool), [0.9])
        for c in candidates
    ]
    assert abs(float(candidates[int(np.argmin(losses))]) - 1.2816) < 0.1


def test_quantile_heads_are_msft_parameters_sorted_and_saved(tmp_path):
    model = toy()
    heads = {n for n in model.msft_parameters() if n.startswith("msft_quantile_heads.")}
    assert heads and all(model.get_parameter(n).requires_grad for n in heads)
    with torch.no_grad():  # heads that disagree arbitrarily still give non-crossing quantiles
        for n in heads:
            model.get_parameter(n).add_(torch.randn_like(model.get_parameter(n)))
    past, _ = noisy_cycles(8)
    q = model.predict_quantiles(past, 16, LEVELS)
    assert q.shape == (8, 3, 16, 1) and bool((q.diff(dim=1) >= 0).all())
    loaded = msft.load_adapter(_fresh_backbone(), model.save_adapter(tmp_path / "a"))
    torch.testing.assert_close(loaded.predict_quantiles(past, 16, LEVELS), q)


def _fresh_backbone(seed=0):
    torch.manual_seed(seed)
    return ToyForecaster(patch_size=8, d_model=16, num_layers=1, num_heads=2)


def test_trained_quantiles_are_calibrated_on_synthetic_data():
    """Pinball-trained heads cover the 10-90% interval of held-out noisy cycles ~80% of the time, and the
    median splits them in half (the interval is wider than the noise alone: the tiny model's point
    forecast is imperfect, and calibrated quantiles account for that)."""
    model = toy(scales=[1])
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=3e-3, head_lr=3e-2, scale_weight_lr=1e-2))
    for step in range(120):
        past, future = noisy_cycles(32, context=48, horizon=8, seed=step + 1)
        loss = model.loss(past, future)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    past, future = noisy_cycles(512, context=48, horizon=8, seed=10_000)
    with torch.no_grad():
        q = model.predict_quantiles(past, 8, LEVELS)[..., 0]  # (512, 3, 8)
    y = future[..., 0]
    coverage = float(((y >= q[:, 0]) & (y <= q[:, 2])).float().mean())
    below_median = float((y < q[:, 1]).float().mean())
    assert 0.72 < coverage < 0.88, coverage  # nominal 0.80
    assert 0.40 < below_median < 0.60, below_median
    assert float((q[:, 2] - q[:, 0]).mean()) > 0.8 * 2 * 1.2816 * SIGMA  # at least the noise's own width


def test_predictor_gives_quantile_forecasts():
    from gluonts.model.forecast import QuantileForecast

    model = toy().eval()
    entry = {"target": noisy_cycles(1, context=100)[0][0, :, 0].numpy(), "start": pd.Period("2024", freq="h")}
    (forecast,) = model.create_predictor(16, context_length=64).predict([entry])
    assert isinstance(forecast, QuantileForecast)
    assert forecast.forecast_keys == ["0.1", "0.5", "0.9", "mean"] and forecast.forecast_array.shape == (4, 16)
    assert (forecast.quantile(0.9) >= forecast.quantile(0.1)).all()


def test_bad_levels_and_missing_heads_raise():
    with pytest.raises(ValueError, match="quantile_levels"):
        toy(quantile_levels=[0.9, 0.1])
    with pytest.raises(ValueError, match="quantile_levels"):
        toy(quantile_levels=[0.0, 0.5])
    model = toy()
    past, _ = noisy_cycles(2)
    with pytest.raises(ValueError, match=r"\[0.25\].*trained for"):
        model.predict_quantiles(past, 16, [0.25])
    plain = msft.wrap(_fresh_backbone(), scales=[1])
    with pytest.raises(ValueError, match="quantile_levels=\\(0.1"):
        plain.predict_quantiles(past, 16)
