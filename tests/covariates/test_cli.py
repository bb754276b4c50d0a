"""Covariates through ``msft-train``'s data config (``data.past_covariates``, ``data.known_covariates``):
the LSF windows carry them, training / validation / test hand them to the model, only targets are
scored, and a finished run reloads (`load_run`) with them."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msft.data.lsf import prepare_lsf
from msft.protocols import evaluate_lsf
from msft.protocols.covariates import CALENDAR, prepare_covariates
from msft_runner.train import evaluate, evaluate_run, load_run, run
from tests.experiments.conftest import REPO, compose

pytestmark = pytest.mark.usefixtures("data_dir")

TINY_MOIRAI = [
    "backbone=tiny_moirai",
    "trainer=tiny",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data=ETTh1",
    "data.target=[OT]",
    "data.context_length=64",
    "data.horizon=16",
    "data.batch_size=8",
    "data.eval_batch_size=256",
    "data.val_stride=100",
    "data.test_stride=400",
    "data.num_samples=4",
    "plots=false",
    "names.backbone=tiny_moirai",
]
COVARIATES = ["data.past_covariates=[HUFL]", "data.known_covariates=[hour_of_day]"]


@pytest.fixture
def data_dir(monkeypatch):
    """ETTh1 from the benchmark data directory (MSFT_DATA_DIR or ../shared/data)."""
    for candidate in (os.environ.get("MSFT_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "ETT-small" / "ETTh1.csv").exists():
            monkeypatch.setenv("MSFT_DATA_DIR", str(candidate))
            return Path(candidate)
    pytest.skip("no benchmark data directory (set MSFT_DATA_DIR to a directory holding ETT-small/)")


@pytest.mark.parametrize("mode", ["S", "M"])
def test_covariate_windows_are_the_target_windows_with_the_covariates_of_their_time(mode):
    plain = prepare_lsf("ETTh1", 64, targets=["OT", "HULL"])
    data = prepare_covariates("ETTh1", 64, ["OT", "HULL"], ["HUFL"], ["hour_of_day"])
    assert data.borders == plain.borders and data.name == plain.name and data.season == plain.season
    assert data.targets == ("OT", "HULL")
    for split in ("train", "val", "test"):
        ours, theirs = data.windows(split, 16, mode, stride=7), plain.windows(split, 16, mode, stride=7)
        assert len(ours) == len(theirs)
        index = torch.tensor([0, 1, len(ours) // 2, len(ours) - 1])
        got, want = ours[index], theirs[index]
        for key in want:  # the target's windows of the protocol: the same values, not a recomputation
            assert torch.equal(got[key], want[key]), key
        # each window's covariates are the columns at its own time steps (mode S: series-major order)
        time_window = index % ours.num_time_windows
        start = data.segment(split)[0] + 7 * time_window
        rows = start[:, None] + torch.arange(64 + 16)  # (batch, context + horizon)
        values = torch.as_tensor(data.values)
        assert torch.equal(got["past_covariates"], values[rows[:, :64]][..., 2:3])
        assert torch.equal(got["known_covariates"], values[rows][..., 3:4])


def test_calendar_features_are_computed_from_the_dates_and_z_scored_with_train_statistics():
    data = prepare_covariates("ETTh1", 64, ["OT"], [], ["hour_of_day", "day_of_week"])
    hours = CALENDAR["hour_of_day"](pd.Series(data.dates)).to_numpy(np.float64)
    train = hours[: data.borders["train"][1]]
    expected = ((hours - train.mean()) / train.std()).astype(np.float32)
    np.testing.assert_array_equal(data.values[:, 1], expected)
    assert data.columns == ("OT", "hour_of_day", "day_of_week")


def test_evaluate_lsf_hands_the_covariates_over_and_scores_the_targets_only():
    seen = []

    def zeros(past, past_covariates, known_covariates):
        seen.append((past.shape, past_covariates.shape, known_covariates.shape))
        return torch.zeros(past.shape[0], 16, past.shape[2])

    with_covariates = evaluate_lsf(
        zeros, "ETTh1", 16, 64, targets=["OT"], past_covariates=["HUFL", "HULL"], known_covariates=["hour_of_day"],
        stride=50, batch_size=16,
    )  # fmt: skip
    target_only = evaluate_lsf(lambda past: torch.zeros(past.shape[0], 16, 1), "ETTh1", 16, 64, targets=["OT"],
                               stride=50, batch_size=16)  # fmt: skip
    assert seen[0] == (torch.Size([16, 64, 1]), torch.Size([16, 64, 2]), torch.Size([16, 80, 1]))
    # the same target windows summed in the same order: identical by construction
    assert with_covariates == target_only


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny msft-train run of the tiny MOIRAI on ETTh1 OT with a past-only and a known covariate."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = compose([*TINY_MOIRAI, *COVARIATES, "method=msft", "+method.options.scales=[1,2]"])
    record = run(cfg, tmp / "run", {"backbone": "tiny_moirai"})
    return tmp / "run", record


def test_a_run_with_covariates_trains_tests_and_records_them(finished):
    run_dir, record = finished
    assert record["status"] == "ok" and record["test"] == "done" and record["steps"] == 2
    assert record["past_covariates"] == ["HUFL"] and record["known_covariates"] == ["hour_of_day"]
    assert np.isfinite(record["mse"]) and np.isfinite(record["val_score"])
    # one target (OT): the test windows are OT's, every 400th of the stride-1 protocol's
    assert record["windows"] == len(prepare_lsf("ETTh1", 64, targets="OT").windows("test", 16, stride=400))
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["past_covariates"] == ["HUFL"]


def test_load_run_gives_the_model_with_its_covariates_and_the_scores_of_the_run(finished):
    run_dir, record = finished
    cfg, model, data = load_run(run_dir)
    assert list(cfg.data.past_covariates) == ["HUFL"] and list(cfg.data.known_covariates) == ["hour_of_day"]
    assert model.config.past_covariates == ("HUFL",) and model.config.known_covariates == ("hour_of_day",)
    batch = data.splits["test"][torch.arange(4)]
    with pytest.raises(ValueError, match="past_covariates missing"):
        model.predict(batch["past_target"], 16)
    forecast = model.predict(
        batch["past_target"], 16, past_covariates=batch["past_covariates"], known_covariates=batch["known_covariates"]
    )
    assert forecast.shape == (4, 16, 1) and torch.isfinite(forecast).all()
    # the same checkpoint on the same windows: the MSE of the fused mean is identical by construction
    assert evaluate(cfg, model, data)["mse"] == record["mse"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.past_covariates=[NOPE]"], r"\['NOPE'\] are not columns.*HUFL.*hour_of_day"),
        (["data.past_covariates=[OT]"], r"\['OT'\] named as target and as covariate"),
        (["data.past_covariates=[HUFL]", "data.known_covariates=[HUFL]"], r"\['HUFL'\] named more than once"),
        (["data.past_covariates=[HUFL]", "backbone=moment_random"], r"'moment_random' backbone.*remove data"),
        (["data.past_covariates=[HUFL]", "backbone=toy_tiny"], r"'toy_tiny' backbone.*remove data"),
        (["data.past_covariates=[HUFL]", "method=adalora"], r"method 'adalora'.*remove the covariates"),
    ],
)
def test_bad_covariates_are_refused_by_name(tmp_path, overrides, message):
    backbone = next((o.split("=")[1] for o in overrides if o.startswith("backbone=")), "tiny_moirai")
    cfg = compose([*TINY_MOIRAI, *overrides, f"names.backbone={backbone}"])
    with pytest.raises(ValueError, match=message):
        run(cfg, tmp_path / "run", {"backbone": backbone})
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_baselines_train_with_covariates(tmp_path, method):
    cfg = compose([*TINY_MOIRAI, *COVARIATES, f"method={method}", "trainer.limit_train_batches=1"])
    record = run(cfg, tmp_path / "run", {"backbone": "tiny_moirai"})
    assert record["status"] == "ok" and record["steps"] == 1 and np.isfinite(record["mse"])
    assert load_run(tmp_path / "run").model.config.known_covariates == ("hour_of_day",)


def test_a_deferred_test_with_covariates_scores_what_testing_at_once_scores(tmp_path):
    at_once = run(compose([*TINY_MOIRAI, *COVARIATES, "method=zero_shot"]), tmp_path / "now", {})
    deferred = run(compose([*TINY_MOIRAI, *COVARIATES, "method=zero_shot", "defer_test=true"]), tmp_path / "later", {})
    assert deferred["test"] == "deferred" and "mse" not in deferred
    tested = evaluate_run(tmp_path / "later")
    # the same zero-shot model on the same windows: the fused mean's MSE is identical by construction
    assert tested["mse"] == at_once["mse"] and tested["windows"] == at_once["windows"]


def test_a_calibrated_run_with_covariates_fits_on_the_validation_windows_with_their_covariates(tmp_path):
    """calibrate=conformal reads the validation windows' covariates; a deferred test refits the same."""
    cfg = compose([*TINY_MOIRAI, *COVARIATES, "method=msft", "+method.options.scales=[1,2]", "calibrate=conformal"])
    record = run(cfg, tmp_path / "run", {"backbone": "tiny_moirai"})
    assert record["status"] == "ok" and np.isfinite(record["mse"])
    val_windows = len(prepare_lsf("ETTh1", 64, targets="OT").windows("val", 16, stride=100))
    assert record["calibration"]["windows"] == val_windows
    assert load_run(tmp_path / "run").model.calibration.to_dict() == record["calibration"]
