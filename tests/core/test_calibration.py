"""Conformal calibration (`msft.calibration`, `MSFTModel.calibrate`): coverage on held-out windows,
the minimum number of windows, consistency of paths and quantiles, and the round trip through
save_pretrained / load_adapter / from_pretrained and the GluonTS predictor."""

import math

import pytest
import torch

import msft
from msft.calibration import CALIBRATION_FILE, ConformalCalibration, minimum_windows
from msft_backbones.moirai.spec import MoiraiSpec
from msft_backbones.toy import ToyForecaster

Z90 = 1.2815516  # standard normal 0.9-quantile


def _gaussian_windows(n, horizon=4, seed=0):
    """Contexts of standard deviation sigma per window; forecasts N(0, sigma) quantiles; truth
    N(0.5 sigma, (2 sigma)^2): the nominal 80% interval covers only 0.465."""
    g = torch.Generator().manual_seed(seed)
    sigma = torch.exp(torch.randn(n, 1, 1, generator=g))  # magnitudes over a factor ~50
    past = torch.randn(n, 64, 1, generator=g)
    past = (past - past.mean(1, keepdim=True)) / past.std(1, unbiased=False, keepdim=True) * sigma  # std = sigma
    future = sigma * (0.5 + 2 * torch.randn(n, horizon, 1, generator=g))
    levels = (0.1, 0.5, 0.9)
    z = torch.tensor([-Z90, 0.0, Z90])
    quantiles = (z[None, :, None, None] * sigma[:, :, :, None]).expand(n, 3, horizon, 1)  # (n, Q, H, 1)
    return past, future, quantiles.contiguous(), levels


def _coverage(quantiles, future, low=0, high=-1):
    return ((future >= quantiles[:, low]) & (future <= quantiles[:, high])).float().mean().item()


@pytest.mark.parametrize("per_step", [False, True])
def test_conformal_corrections_restore_nominal_coverage_on_held_out_windows(per_step):
    """Fitted on 2000 windows, checked on 20000. Tolerance: a level's coverage from n residuals is off
    by about sqrt(q (1 - q) / n) = 0.0067 (n = 2000 windows; pooling the 4 independent steps only
    narrows it), the 80% interval's by at most twice that (its two ends), and the test estimate by
    sqrt(0.16 / 80000) = 0.0014: 0.03 is more than 2 x 0.0067 + 4 x 0.0014 with room for the
    per-step variant's 4 separate estimates (each ~0.0095 per end)."""
    past, future, quantiles, levels = _gaussian_windows(2000)
    calibration = ConformalCalibration.fit(
        quantiles,
        levels,
        future,
        torch.ones_like(future, dtype=torch.bool),
        past,
        torch.ones_like(past, dtype=torch.bool),
        per_step,
    )
    assert calibration.per_step is per_step and len(calibration.corrections[0]) == (4 if per_step else 1)
    past, future, quantiles, levels = _gaussian_windows(20000, seed=1)
    assert abs(_coverage(quantiles, future) - 0.465) < 0.01  # miscalibrated before (normal cdf, 4 std errors)
    adjusted = calibration.adjust_quantiles(quantiles, levels, past, torch.ones_like(past, dtype=torch.bool))
    assert abs(_coverage(adjusted, future) - 0.8) < 0.03
    for i, q in enumerate(levels):  # each one-sided level too
        assert abs((future <= adjusted[:, i]).float().mean().item() - q) < 0.03
    # in units of the context's standard deviation: the corrections are those of N(0.5, 2^2) against N(0, 1)
    expected = [0.5 + 2 * -Z90 + Z90, 0.5, 0.5 + 2 * Z90 - Z90]
    # a sample q-quantile of n residuals (density f there) is off by sqrt(q (1 - q) / n) / f: at q = 0.9 of
    # 2 N(0, 1), f = pdf(Z90) / 2, with n = 2000 per step (8000 pooled); 4.5 of those over 3 or 12 estimates
    n = 2000 if per_step else 8000
    tolerance = 4.5 * math.sqrt(0.09 / n) / (math.exp(-(Z90**2) / 2) / math.sqrt(2 * math.pi) / 2)
    for row, want in zip(calibration.corrections, expected):
        assert all(abs(c - want) < tolerance for c in row), (row, want, tolerance)


def test_too_few_windows_is_an_error_naming_the_minimum():
    assert minimum_windows((0.1, 0.9)) == 9 and minimum_windows((0.05, 0.5, 0.95)) == 19
    assert minimum_windows((0.5,)) == 1
    past, future, quantiles, _ = _gaussian_windows(9)
    seen, past_seen = torch.ones_like(future, dtype=torch.bool), torch.ones_like(past, dtype=torch.bool)
    with pytest.warns(UserWarning, match=r"9 validation windows.*uncertain by about .* = 0\.10"):  # sqrt(0.09 / 9)
        ConformalCalibration.fit(quantiles[:, [0, 2]], (0.1, 0.9), future, seen, past, past_seen)  # 9 is enough
    with pytest.raises(ValueError, match="8 validation window.*at least 9"):
        ConformalCalibration.fit(quantiles[:8, [0, 2]], (0.1, 0.9), future[:8], seen[:8], past[:8], past_seen[:8])
    model, past, future = _moirai_windows(6)
    with pytest.raises(ValueError, match="at least 19"):
        model.calibrate(past, future)  # the default levels reach 0.05 and 0.95
    assert model.calibration is None
    with pytest.raises(ValueError, match="method='isotonic'"):
        model.calibrate(past, future, method="isotonic")


def test_calibrated_paths_give_the_calibrated_quantiles():
    """Paths of rank k move by the correction at level k / (S - 1): with S = 11 the levels 0.1 ... 0.9
    are ranks 1 ... 9, so the order statistics of the adjusted paths are the adjusted quantiles
    (float32 rounding of one multiply-add)."""
    g = torch.Generator().manual_seed(0)
    levels = tuple(round(0.1 * k, 1) for k in range(1, 10))
    calibration = ConformalCalibration(levels, [[0.2 * k - 1.0, 0.1 * k] for k in range(1, 10)], per_step=True)
    past = torch.randn(5, 40, 2, generator=g)
    paths = torch.randn(5, 11, 3, 2, generator=g) * 3  # (b, S, H, v), H beyond the fitted 2 steps
    seen = torch.ones_like(past, dtype=torch.bool)
    moved = calibration.adjust_paths(paths, past, seen)
    ordered = paths.sort(1).values
    got = moved.sort(1).values[:, 1:10]
    want = calibration.adjust_quantiles(ordered[:, 1:10], levels, past, seen)
    torch.testing.assert_close(got, want, rtol=1.3e-6, atol=1e-5)
    ranks = paths.argsort(1).argsort(1)
    assert torch.equal(moved.argsort(1).argsort(1), ranks)  # increasing corrections keep every path's rank


def test_corrections_interpolate_between_levels_and_hold_beyond():
    calibration = ConformalCalibration((0.1, 0.5, 0.9), [[1.0], [2.0], [4.0]], per_step=False)
    got = calibration.correction([0.01, 0.1, 0.3, 0.7, 0.99], 2, torch.zeros(()))
    assert got.tolist() == [[1.0, 1.0], [1.0, 1.0], [1.5, 1.5], [3.0, 3.0], [4.0, 4.0]]  # exact in binary
    assert ConformalCalibration.from_dict(calibration.to_dict()) == calibration
    with pytest.raises(ValueError, match="one non-empty row"):
        ConformalCalibration((0.1, 0.9), [[1.0]], per_step=False)
    with pytest.raises(ValueError, match="scale='std'"):
        ConformalCalibration((0.5,), [[1.0]], per_step=False, scale="std")


# -- on models -----------------------------------------------------------------------------------------


def _ar_windows(n, context, horizon, seed):
    """Independent AR(1) series (phi 0.8) with level and scale varying by series."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, context + horizon, generator=g)
    x = torch.zeros_like(noise)
    for t in range(1, x.shape[1]):
        x[:, t] = 0.8 * x[:, t - 1] + noise[:, t]
    x = x * torch.exp(torch.randn(n, 1, generator=g)) + 10 * torch.randn(n, 1, generator=g)
    return x[:, :context, None], x[:, context:, None]


def _moirai_windows(n, seed=0):
    setup = MoiraiSpec.tiny()
    model = msft.wrap(setup.backbone, scales=[1, 2], **setup.options).eval()
    past, future = _ar_windows(n, setup.context_length, setup.horizon, seed)
    return model, past, future


def _interval(model, past, future, num_samples=100):
    torch.manual_seed(0)
    quantiles = model.predict_quantiles(past, future.shape[1], (0.1, 0.9), num_samples=num_samples)
    return _coverage(quantiles, future)


def test_calibrating_tiny_moirai_reaches_nominal_coverage_on_held_out_series():
    """1000 validation series, 1000 held-out ones. Tolerance 0.07: with every step of a window fully
    dependent (the worst case), the fitted ends are off by sqrt(0.09 / 1000) = 0.0095 each and the
    held-out estimate by sqrt(0.16 / 1000) = 0.013; 3 x sqrt((2 x 0.0095)^2 + 0.013^2) = 0.07."""
    model, past, future = _moirai_windows(1000)
    model.set_coarse_paths("repeat")  # flat coarse paths: the published fusion's too-narrow intervals
    _, test_past, test_future = _moirai_windows(1000, seed=1)
    with torch.no_grad():
        before = _interval(model, test_past, test_future)
        torch.manual_seed(1)
        model.calibrate(past, future, per_step=False)
        after = _interval(model, test_past, test_future)
    assert abs(before - 0.8) > 0.1, before  # the random tiny model is miscalibrated here
    assert abs(after - 0.8) < 0.07, (before, after)


def test_calibration_round_trips_through_save_pretrained_and_the_predictor(tmp_path):
    model, past, future = _moirai_windows(60)
    torch.manual_seed(1)
    calibration = model.calibrate(past, future, quantile_levels=(0.1, 0.5, 0.9))
    model.save_pretrained(tmp_path)
    assert (tmp_path / CALIBRATION_FILE).is_file()
    assert "## Calibration" in (tmp_path / "README.md").read_text()  # the model card says it is calibrated
    loaded = msft.load_adapter(MoiraiSpec.tiny().backbone, tmp_path).eval()
    assert loaded.calibration == calibration  # the same numbers: JSON keeps every float exactly
    torch.manual_seed(2)
    want = model.predict_samples(past[:4], future.shape[1], num_samples=20)
    torch.manual_seed(2)
    got = loaded.predict_samples(past[:4], future.shape[1], num_samples=20)
    assert torch.equal(got, want)  # same parameters, same corrections, same random stream

    import pandas as pd

    entries = [{"target": row[:, 0].numpy(), "start": pd.Period("2020-01-01", freq="h")} for row in past[:4]]
    forecasts = {}
    for name, m in (("saved", model), ("loaded", loaded)):
        torch.manual_seed(3)
        predictor = m.create_predictor(future.shape[1], num_samples=20, context_length=past.shape[1])
        forecasts[name] = [f.samples for f in predictor.predict(entries)]
    torch.manual_seed(3)
    with torch.no_grad():
        direct = model.predict_samples(past[:4], future.shape[1], num_samples=20)[..., 0].numpy()  # (4, S, H)
    for a, b, c in zip(forecasts["saved"], forecasts["loaded"], direct):
        assert (a == b).all() and (a == c).all()  # the predictor reads the calibrated paths
    model.calibration = None
    model.save_pretrained(tmp_path)  # saving an uncalibrated model removes the stale file
    assert not (tmp_path / CALIBRATION_FILE).exists()


def test_calibration_round_trips_through_from_pretrained(tmp_path):
    """`msft.from_pretrained` (the runner's door) loads the recorded base by its name and the calibration."""
    pytest.importorskip("msft_runner")
    model = msft.wrap(msft.load_backbone("tiny_moirai"), scales=[1, 2], patch_size=16).eval()
    past, future = _ar_windows(30, 96, 12, seed=0)
    calibration = model.calibrate(past, future, quantile_levels=(0.2, 0.5, 0.8))
    loaded = msft.from_pretrained(model.save_pretrained(tmp_path))
    assert isinstance(loaded, msft.MSFTModel) and loaded.calibration == calibration


def test_point_backbone_quantile_heads_are_calibrated_in_predict_quantiles():
    torch.manual_seed(0)
    backbone = ToyForecaster(patch_size=8, d_model=16, num_layers=1, num_heads=2)
    levels = (0.1, 0.5, 0.9)
    model = msft.wrap(backbone, scales=[1, 2], quantile_levels=levels).eval()
    past, future = _ar_windows(40, 64, 16, seed=0)
    with torch.no_grad():
        raw = model.predict_quantiles(past, 16, levels)
        calibration = model.calibrate(past, future)  # the heads' own levels by default
        assert calibration.levels == levels and not calibration.per_step  # 40 windows: pooled
        got = model.predict_quantiles(past, 16, levels)
    seen = torch.ones_like(past, dtype=torch.bool)
    assert torch.equal(got, calibration.adjust_quantiles(raw, levels, past, seen))  # the same computation
    assert not torch.allclose(got, raw)
    # on the windows it was fitted on, the ceil((n+1) q)-th residual bounds exactly that share (ties aside)
    n = 40 * 16
    assert (future <= got[:, 2]).float().mean().item() >= math.ceil(0.9 * (n + 1)) / n - 1e-6


def test_finetune_calibrates_on_its_validation_windows_and_the_forecaster_keeps_it(tmp_path):
    """``msft.finetune(..., calibrate="conformal")``: 4 series x 5 held-out windows = 20 >= 19 (the
    default levels' minimum); predict_df reads the calibrated quantiles; save/from_pretrained keep them."""
    pytest.importorskip("msft_runner")
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "item_id": f"s{i}",
                "timestamp": pd.date_range("2024-01-01", periods=400, freq="h"),
                "target": 10 + 3 * np.sin(2 * np.pi * np.arange(400) / 24 + i) + rng.standard_normal(400),
            }
        )
        for i in range(4)
    ]
    frame = pd.concat(frames, ignore_index=True)
    options = dict(context_length=96, max_steps=2, progress=False, batch_size=8, validation_windows=5, scales=[1, 2])
    forecaster = msft.finetune("tiny_moirai", frame, 12, calibrate="conformal", **options)
    calibration = forecaster.model.calibration
    assert calibration is not None and calibration.windows == 20
    torch.manual_seed(0)
    calibrated = forecaster.predict_df(frame, quantile_levels=(0.1, 0.9))
    forecaster.model.calibration = None
    torch.manual_seed(0)
    raw = forecaster.predict_df(frame, quantile_levels=(0.1, 0.9))
    assert not np.allclose(calibrated["0.9"], raw["0.9"])
    forecaster.model.calibration = calibration
    loaded = msft.from_pretrained(forecaster.save_pretrained(tmp_path))
    assert loaded.model.calibration == calibration
    with pytest.raises(ValueError, match="at least 19"):
        msft.finetune("tiny_moirai", frame, 12, calibrate="conformal", **{**options, "validation_windows": 4})


def test_msft_train_calibrate_conformal_fits_on_validation_and_load_run_fits_the_same(tmp_path):
    """The CLI's ``calibrate=conformal``: the run records its calibration, and `load_run` (deferred tests,
    msft-evaluate) fits exactly the same one again (same weights, same validation windows, same seed)."""
    pytest.importorskip("msft_runner")
    from msft_runner.train import load_run, run
    from tests.experiments.conftest import TINY, compose, small_csv

    overrides = [o for o in TINY if not o.startswith(("backbone=", "names.backbone=", "data.context_length="))]
    cfg = compose(
        [
            *overrides,
            "backbone=tiny_moirai",
            "data=csv",
            f"data.path={small_csv(tmp_path / 's.csv')}",
            "data.context_length=128",
            "method=msft",
            "calibrate=conformal",
            "names.backbone=tiny_moirai",
        ]
    )
    record = run(cfg, tmp_path / "run", {"backbone": "tiny_moirai"})
    assert record["calibration"]["method"] == "conformal" and record["calibration"]["windows"] >= 19
    assert load_run(tmp_path / "run").model.calibration.to_dict() == record["calibration"]
