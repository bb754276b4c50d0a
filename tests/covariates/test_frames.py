"""`msft.finetune(..., past_covariates=, known_covariates=)` and `Forecaster.predict_df(df, future_df=)`."""

import numpy as np
import pytest

import msft

from .conftest import covariate_frame, split_future

H = 8
FAST = dict(context_length=128, batch_size=16, max_epochs=1, progress=False, num_samples=20)


@pytest.fixture(scope="module")
def forecaster():
    return msft.finetune(
        "tiny_moirai",
        covariate_frame(),
        H,
        scales=[1, 2],
        past_covariates=["load"],
        known_covariates=["hour"],
        max_steps=2,
        **FAST,
    )


def test_finetune_with_covariates_trains_and_predicts_with_future_df(forecaster):
    f = forecaster
    assert f.past_covariates == ("load",) and f.known_covariates == ("hour",)
    assert f.model.config.past_covariates == ("load",) and np.isfinite(f.training["val_loss"])
    history, future = split_future(covariate_frame(), H)
    out = f.predict_df(history, future_df=future)
    assert len(out) == 2 * H and np.isfinite(out["mean"]).all()
    assert (np.diff(out[["0.1", "0.5", "0.9"]].to_numpy(), axis=1) >= 0).all()
    # the known covariate is read: another future moves the forecast
    shifted = future.assign(hour=(future.hour + 12) % 24)
    assert not np.allclose(f.predict_df(history, future_df=shifted)["mean"], out["mean"])


def test_predict_df_errors(forecaster):
    history, future = split_future(covariate_frame(), H)
    with pytest.raises(ValueError, match="future_df missing"):
        forecaster.predict_df(history)
    with pytest.raises(ValueError, match="does not cover the horizon.*'hour' of item 's0'"):
        forecaster.predict_df(history, future_df=future[future.timestamp < future.timestamp.max()])
    gap = future.copy()
    gap.loc[3, "hour"] = np.nan
    with pytest.raises(ValueError, match="does not cover the horizon"):
        forecaster.predict_df(history, future_df=gap)
    with pytest.raises(ValueError, match=r"future_df lacks column\(s\) \['hour'\]"):
        forecaster.predict_df(history, future_df=future.drop(columns="hour"))
    with pytest.raises(ValueError, match=r"lacks covariate column\(s\) \['load'\]"):
        forecaster.predict_df(history.drop(columns="load"), future_df=future)
    doubled = history.copy()
    doubled.insert(3, "load", doubled["load"], allow_duplicates=True)
    with pytest.raises(ValueError, match=r"duplicated column\(s\) \['load'\]"):
        forecaster.predict_df(doubled, future_df=future)


def test_saved_covariate_names_are_checked_on_load(forecaster, tmp_path):
    forecaster.save_pretrained(tmp_path / "fc")
    loaded = msft.from_pretrained(tmp_path / "fc", past_covariates=["load"], known_covariates=["hour"])
    history, future = split_future(covariate_frame(), H)
    # Same weights, but a rebuilt MOIRAI rounds differently in float32 (so does mode "S" without
    # covariates: about 1e-7 relative); a lost covariate or weight moves the mean by far more.
    np.testing.assert_allclose(
        loaded.predict_df(history, future_df=future)["mean"],
        forecaster.predict_df(history, future_df=future)["mean"],
        rtol=1e-5,
    )
    with pytest.raises(
        ValueError, match=r"past_covariates=\['price'\]: .* was trained with past_covariates=\['load'\]"
    ):
        msft.from_pretrained(tmp_path / "fc", past_covariates=["price"])
    with pytest.raises(ValueError, match="trained with known_covariates"):
        msft.from_pretrained(tmp_path / "fc", known_covariates=["hour", "day"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(past_covariates=["price"]), r"lacks covariate column\(s\) \['price'\]"),
        (dict(past_covariates=["load"], known_covariates=["load"]), "both past_covariates and known_covariates"),
        (dict(past_covariates=["load", "load"]), "appear more than once"),
        (dict(past_covariates=["target"]), "are the target, id or timestamp column"),
    ],
)
def test_finetune_covariate_column_errors(options, message):
    with pytest.raises(ValueError, match=message):
        msft.finetune("tiny_moirai", covariate_frame(), H, max_steps=1, **options, **FAST)


def test_known_covariates_with_gaps_in_training_data_are_refused():
    frame = covariate_frame()
    frame.loc[10, "hour"] = np.nan
    with pytest.raises(ValueError, match="known covariate 'hour' of item 's0' is missing at"):
        msft.finetune("tiny_moirai", frame, H, known_covariates=["hour"], max_steps=1, **FAST)


def test_a_channel_independent_backbone_refuses_covariates():
    with pytest.raises(
        ValueError, match="the toy backbone is channel-independent.*expected mode='S' without covariates"
    ):
        msft.finetune("toy_tiny", covariate_frame(), H, past_covariates=["load"], max_steps=1, **FAST)


def test_calibration_with_covariates_reads_the_validation_windows_covariates(tmp_path):
    """calibrate="conformal" with covariates: fitted on the validation windows with their covariates,
    applied by predict_df, and saved with the forecaster."""
    frame = covariate_frame(items=10)
    calibrated = msft.finetune(
        "tiny_moirai",
        frame,
        H,
        scales=[1, 2],
        past_covariates=["load"],
        known_covariates=["hour"],
        calibrate="conformal",
        validation_windows=2,  # 10 items x 2 windows: the 19 the default levels need
        max_steps=1,
        **FAST,
    )
    calibration = calibrated.model.calibration
    assert calibration is not None and calibration.windows == 20
    history, future = split_future(frame, H)
    out = calibrated.predict_df(history, future_df=future)
    calibrated.model.calibration = None
    raw = calibrated.predict_df(history, future_df=future)
    assert not np.allclose(out["0.9"] - out["0.1"], raw["0.9"] - raw["0.1"])  # the intervals moved
    calibrated.model.calibration = calibration
    loaded = msft.from_pretrained(
        calibrated.save_pretrained(tmp_path / "fc"), past_covariates=["load"], known_covariates=["hour"]
    )
    assert loaded.model.calibration == calibration
