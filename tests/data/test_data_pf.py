"""PF loaders on small local fixtures, and the rolling split."""

import gzip

import numpy as np
import pandas as pd
import pytest

from msft.data import DataNotFoundError, load_pf, rolling_windows
from msft.data.pf import seasonal_error_before


def test_lstnet_electricity_fixture(tmp_path):
    values = np.arange(30 * 3, dtype=float).reshape(30, 3)
    (tmp_path / "pf").mkdir()
    with gzip.open(tmp_path / "pf" / "electricity.txt.gz", "wt") as handle:
        pd.DataFrame(values).to_csv(handle, header=False, index=False)
    frame = load_pf("electricity", data_dir=tmp_path)
    assert frame.shape == (30, 4) and frame["date"].iloc[0] == pd.Timestamp("2012-01-01")
    assert frame["date"].iloc[1] - frame["date"].iloc[0] == pd.Timedelta("1h")
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy(), values)


def test_solar_is_summed_to_hours_like_gluonts(tmp_path):
    values = np.ones((12 * 6, 2))  # 12 hours of 10-minute values
    (tmp_path / "pf").mkdir()
    with gzip.open(tmp_path / "pf" / "solar_AL.txt.gz", "wt") as handle:
        pd.DataFrame(values).to_csv(handle, header=False, index=False)
    frame = load_pf("solar", data_dir=tmp_path)
    assert frame.shape == (12, 3)
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy(), 6.0)


def test_walmart_fixture_pivots_store_dept(tmp_path):
    rows = [
        (s, d, date, float(s * 100 + d + i), False)
        for s in (1, 2)
        for d in (1, 3)
        for i, date in enumerate(pd.date_range("2010-02-05", periods=5, freq="W-FRI"))
    ]
    path = tmp_path / "pf" / "walmart" / "train.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=["Store", "Dept", "Date", "Weekly_Sales", "IsHoliday"]).to_csv(path, index=False)
    frame = load_pf("walmart", data_dir=tmp_path)
    assert list(frame.columns) == ["date", "1_1", "1_3", "2_1", "2_3"] and len(frame) == 5
    assert frame["2_3"].iloc[4] == 207.0


def test_kaggle_sets_say_where_to_get_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="kaggle.com"):
        load_pf("turkey_power", data_dir=tmp_path)


def test_rolling_windows_cut_the_last_points():
    values = np.arange(100, dtype=float)[:, None] * np.array([1.0, 10.0])  # (time, 2 series)
    test = rolling_windows(values, horizon=5, windows=3, context_length=8, seasonality=4)
    assert test.past.shape == (6, 8) and test.future.shape == (6, 5)
    # series-major: block w of series s is row s * 3 + w; the blocks tile the last 15 points.
    np.testing.assert_array_equal(test.future[:3].ravel(), np.arange(85, 100))
    np.testing.assert_array_equal(test.past[4], 10.0 * np.arange(82, 90))
    np.testing.assert_allclose(test.seasonal_error, [4, 4, 4, 40, 40, 40])  # |y_t - y_{t-4}| of a ramp
    with pytest.raises(ValueError, match="context_length"):
        rolling_windows(values, 5, 3, 90, 4)


def test_seasonal_error_matches_direct_nan_aware_mean():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(60, 3))
    values[10, 1] = np.nan
    starts = np.array([3, 20, 45])
    got = seasonal_error_before(values, starts, seasonality=7)
    for i, start in enumerate(starts):
        m = 7 if start >= 7 else 1
        hist = values[:start]
        np.testing.assert_allclose(got[i], np.nanmean(np.abs(hist[m:] - hist[:-m]), axis=0))
