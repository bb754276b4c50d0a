"""Published LSF borders, dates and train-statistics z-scoring on the real files."""

import numpy as np
import pandas as pd
import pytest

from msft.data import load_lsf, prepare_lsf, split_borders

# (dataset, split) -> (target rows, first timestamp, last timestamp), from the published borders.
EXPECTED = {
    ("ETTh1", "train"): (8640, "2016-07-01 00:00", "2017-06-25 23:00"),
    ("ETTh1", "val"): (2880, "2017-06-26 00:00", "2017-10-23 23:00"),
    ("ETTh1", "test"): (2880, "2017-10-24 00:00", "2018-02-20 23:00"),
    ("ETTm1", "train"): (34560, "2016-07-01 00:00", "2017-06-25 23:45"),
    ("ETTm1", "val"): (11520, "2017-06-26 00:00", "2017-10-23 23:45"),
    ("ETTm1", "test"): (11520, "2017-10-24 00:00", "2018-02-20 23:45"),
    # Weather: N = 52696 rows, int(0.7 N) = 36887, int(0.2 N) = 10539, val the remaining 5270.
    ("Weather", "train"): (36887, "2020-01-01 00:10", "2020-09-13 05:10"),
    ("Weather", "val"): (5270, "2020-09-13 05:20", "2020-10-19 19:30"),
    ("Weather", "test"): (10539, "2020-10-19 19:40", "2021-01-01 00:00"),
}


@pytest.fixture(scope="module")
def prepared(data_dir):
    return {name: prepare_lsf(name, 512, data_dir=data_dir) for name in ("ETTh1", "ETTm1", "Weather")}


@pytest.mark.parametrize("name,split", sorted(EXPECTED))
def test_split_lengths_and_dates(prepared, name, split):
    rows, first, last = EXPECTED[(name, split)]
    data = prepared[name]
    start, end = data.borders[split]
    assert end - start == rows
    assert data.split_dates(split) == (pd.Timestamp(first), pd.Timestamp(last))
    seg_start, seg_end = data.segment(split)
    assert seg_end == end and seg_start == (0 if split == "train" else start - 512)


@pytest.mark.parametrize("name,split", sorted(EXPECTED))
def test_window_count_is_stride_one_over_the_split(prepared, name, split):
    data = prepared[name]
    rows = EXPECTED[(name, split)][0]
    windows = data.windows(split, 96)
    expected = rows - 96 + 1 - (512 if split == "train" else 0)
    assert windows.num_time_windows == expected
    assert len(windows) == expected * len(data.columns)
    assert len(data.windows(split, 96, mode="M")) == expected


def test_zscore_uses_train_statistics_only(data_dir, prepared):
    data = prepared["ETTh1"]
    raw = load_lsf("ETTh1", data_dir).drop(columns="date").to_numpy()
    train = raw[:8640]
    np.testing.assert_allclose(data.mean, train.mean(0))
    np.testing.assert_allclose(data.std, train.std(0))  # population std, as sklearn's StandardScaler
    scaled_train = data.values[:8640].astype(np.float64)
    np.testing.assert_allclose(scaled_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled_train.std(0), 1, atol=1e-5)
    # The test split is scaled with the same train statistics, so it is not standardised itself.
    np.testing.assert_allclose(
        data.values[11520:14400], (raw[11520:14400] - train.mean(0)) / train.std(0), rtol=1e-5, atol=1e-5
    )
    assert np.abs(data.values[11520:14400].mean(0)).max() > 0.5
    np.testing.assert_allclose(data.denormalize(data.values[:5].astype(np.float64)), raw[:5], rtol=1e-5)


def test_weather_quirks_load(data_dir, prepared):
    frame = load_lsf("Weather", data_dir)
    assert frame.shape == (52696, 22)
    assert frame.columns[-1] == "OT" and frame.columns[0] == "date"
    assert any("SWDR" in c for c in frame.columns)
    assert frame["date"].duplicated().sum() == 1  # kept: borders count rows
    assert not frame.drop(columns="date").isna().any().any()
    assert prepared["Weather"].values.dtype == np.float32


def test_targets_choose_columns(data_dir):
    data = prepare_lsf("ETTh1", 96, targets="OT", data_dir=data_dir)
    assert data.columns == ("OT",) and data.values.shape == (17420, 1)
    with pytest.raises(ValueError, match="nope"):
        prepare_lsf("ETTh1", 96, targets=["nope"], data_dir=data_dir)


def test_split_rules():
    assert split_borders("ratio", 100) == {"train": (0, 70), "val": (70, 80), "test": (80, 100)}
    assert split_borders((50, 20, 30), 100)["test"] == (70, 100)
    assert split_borders((0.6, None, 0.2), 100) == {"train": (0, 60), "val": (60, 80), "test": (80, 100)}
    with pytest.raises(ValueError, match="14400"):
        split_borders("ett_hour", 1000)
    with pytest.raises(ValueError, match="split rule"):
        split_borders("weekly", 1000)


def test_user_frame_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=300, freq="h").astype(str),
            "a": rng.normal(5, 2, 300),
            "b": rng.normal(size=300),
        }
    )
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    from_frame = prepare_lsf(frame, 24)
    from_csv = prepare_lsf(path, 24)
    np.testing.assert_allclose(from_frame.values, from_csv.values, rtol=1e-6)
    assert from_frame.borders["train"] == (0, 210)
    np.testing.assert_allclose(from_frame.mean, frame[["a", "b"]].to_numpy()[:210].mean(0))
