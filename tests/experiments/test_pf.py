"""The PF protocol in the runner: the train/val/test cut of a wide frame, a tiny MOIRAI run, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest

from msft.data import rolling_windows
from msft_runner.pf_data import PFSplit
from msft_runner.results import collect, write_tables
from msft_runner.train import run

from .conftest import compose

HORIZON, WINDOWS, CONTEXT = 8, 2, 64


def wide_csv(path, rows=240, series=3, seed=0):
    """A wide frame as `load_pf` gives it: ``date`` + one column per series, positive, with gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    frame = pd.DataFrame(
        {f"s{i}": 10 + (i + 1) * np.sin(2 * np.pi * t / 24) + rng.standard_normal(rows) for i in range(series)}
    )
    frame.loc[:30, "s1"] = np.nan  # a series that starts late
    frame.loc[100:104, "s2"] = np.nan  # and one with a gap
    frame.insert(0, "date", pd.date_range("2022-01-01", periods=rows, freq="h"))
    frame.to_csv(path, index=False)
    return path


def test_split_trains_before_validation_and_tests_on_the_rolling_blocks(tmp_path):
    frame = pd.read_csv(wide_csv(tmp_path / "w.csv"))
    split = PFSplit.from_frame(frame, CONTEXT, HORIZON, WINDOWS)
    values = frame.drop(columns="date").to_numpy(np.float32)
    assert (split.val_start, split.test_start) == (240 - 32, 240 - 16)
    train = split.windows_of("train")
    assert len(train) == 3 * (208 - CONTEXT - HORIZON + 1)  # every window ends before validation
    last = train[train.num_time_windows - 1]  # series 0's last window
    np.testing.assert_array_equal(last["future_target"][:, 0], values[200:208, 0])
    test = split.windows_of("test")[:]
    reference = rolling_windows(values, HORIZON, WINDOWS, CONTEXT, 24)
    np.testing.assert_array_equal(test["future_target"][..., 0], reference.future)
    past = reference.past
    np.testing.assert_array_equal(test["past_observed"][..., 0], ~np.isnan(past))
    np.testing.assert_array_equal(test["past_target"][..., 0], np.nan_to_num(past))  # raw scale, no z-scoring
    val = split.windows_of("val")[:]
    np.testing.assert_array_equal(val["future_target"][:2, :, 0].reshape(-1), values[208:224, 0])
    assert not train[train.num_time_windows]["past_observed"].all()  # s1's missing start is masked, not filled
    with pytest.raises(ValueError, match="context_length=201"):
        PFSplit.from_frame(frame, 201, HORIZON, WINDOWS)


def _pf_cfg(path, backbone, *extra):
    return compose(
        [
            f"backbone={backbone}",
            f"names.backbone={backbone}",
            "data=pf_csv",
            f"data.path={path}",
            "data.name=wide",
            f"data.horizon={HORIZON}",
            f"data.windows={WINDOWS}",
            "data.seasonality=24",
            f"data.context_length={CONTEXT}",
            "data.batch_size=8",
            "data.num_samples=10",
            "trainer=tiny",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            *extra,
        ]
    )


def test_tiny_moirai_pf_run_reports_the_six_metrics_and_a_crps_table(tmp_path):
    path = wide_csv(tmp_path / "wide.csv")
    cfg = _pf_cfg(path, "moirai_random", "backbone.wrap_options.patch_size=8", "method=msft", "plots=true")
    record = run(cfg, tmp_path / "runs" / "pf" / "msft", {"backbone": "moirai_random"})
    saved = json.loads((tmp_path / "runs" / "pf" / "msft" / "metrics.json").read_text())
    assert saved["status"] == "ok" and saved["protocol"] == "pf" and saved["steps"] == 2
    assert saved["windows"] == 3 * WINDOWS
    for metric in ("crps", "msis", "smape", "mase", "nd", "nrmse"):
        assert np.isfinite(saved[metric]) and saved[metric] >= 0, metric
    assert record["crps"] == saved["crps"]
    assert (tmp_path / "runs" / "pf" / "msft" / "plots" / "forecast.png").exists()
    table = write_tables(collect([tmp_path / "runs"]), tmp_path / "tables", "pf", "msft-results runs")
    assert "msft CRPS | msft MASE" in table and "MSE" not in table
    assert f"| moirai_random | wide | {HORIZON} | {saved['crps']:.4f} |" in table


def test_pf_with_a_point_backbone_fails_before_training(tmp_path):
    cfg = _pf_cfg(wide_csv(tmp_path / "wide.csv"), "toy_tiny", "method=lora")
    with pytest.raises(ValueError, match="point forecasts only.*probabilistic backbone \\(MOIRAI\\)"):
        run(cfg, tmp_path / "run", {"backbone": "toy_tiny"})
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_results_keep_lsf_and_pf_tables_apart():
    lsf = {"status": "ok", "backbone": "b", "dataset": "ETTh1", "horizon": 96, "method": "msft", "mse": 0.4, "mae": 0.5}
    pf = {
        "status": "ok",
        "protocol": "pf",
        "backbone": "b",
        "dataset": "pf_solar",
        "horizon": 24,
        "method": "msft",
        "crps": 0.3,
        "mase": 1.2,
    }
    from msft_runner.results import markdown_table

    alone = markdown_table([lsf])
    both = markdown_table([lsf, pf])
    assert (
        both.startswith(alone) and "msft CRPS | msft MASE" in both and "| b | pf_solar | 24 | 0.3000 | 1.2000 |" in both
    )
