"""User data frames: long, wide and CSV in; gaps as NaN; clear errors for what cannot be read."""

import numpy as np
import pandas as pd
import pytest

from msft.data.frames import read_series

from .conftest import long_frame


def test_long_wide_and_csv_give_the_same_series(tmp_path):
    long = long_frame(items=2, length=50)
    wide = long.pivot(index="timestamp", columns="item_id", values="target")
    wide.index.name = None
    path = tmp_path / "data.csv"
    long.to_csv(path, index=False)
    for data in (long, wide, path, str(path)):
        series = read_series(data)
        assert series.ids == ["s0", "s1"] and series.freq.freqstr == "h"
        np.testing.assert_allclose(series.values[1], long[long.item_id == "s1"].target.to_numpy())
        assert series.future_index(0, 3)[0] == pd.Timestamp("2024-01-01") + pd.Timedelta(hours=50)


def test_a_wide_frame_with_a_date_column_and_unsorted_rows():
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=6, freq="D"), "a": range(6), "b": range(6)})
    series = read_series(frame.iloc[::-1])
    assert series.freq.freqstr == "D" and series.values[0].tolist() == list(range(6))


def test_gaps_become_missing_values_and_months_keep_their_calendar():
    frame = long_frame(items=1, length=30).drop(index=[5, 6, 20])
    series = read_series(frame)
    assert len(series.values[0]) == 30 and np.isnan(series.values[0][[5, 6, 20]]).all()
    months = pd.DataFrame(
        {"item_id": "m", "timestamp": pd.date_range("2020-01-31", periods=12, freq="ME"), "target": np.arange(12.0)}
    ).drop(index=[4])
    series = read_series(months)
    assert series.freq.freqstr == "ME" and np.isnan(series.values[0][4])
    assert series.future_index(0, 1)[0] == pd.Timestamp("2021-01-31")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["target"]), r"lacks column\(s\) \['target'\]"),
        (lambda f: f.assign(target=f.target.astype(str).where(f.index != 3, "n/a")), "expected numbers"),
        (lambda f: pd.concat([f, f.iloc[[2]]]), "duplicated timestamps"),
        (
            lambda f: f.assign(timestamp=f.timestamp.where(f.index != 7, f.timestamp[7] + pd.Timedelta(minutes=7))),
            "irregular timestamps",
        ),
        (
            lambda f: f.assign(
                timestamp=np.where(f.item_id == "s1", pd.date_range("2024", periods=len(f), freq="D"), f.timestamp)
            ),
            "mixed frequencies",
        ),
        (lambda f: f.assign(timestamp="not a date"), "cannot be read as timestamps"),
        (lambda f: f.rename(columns={"item_id": "id", "target": "y"}), "id_column="),
        (lambda f: f.rename(columns={"item_id": "id", "timestamp": "t"}), "cannot read the data"),
    ],
)
def test_unreadable_data_raise_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        read_series(change(long_frame(items=2, length=40)))


def test_other_column_names_and_a_missing_file(tmp_path):
    frame = long_frame(items=1, length=20).rename(columns={"item_id": "store", "timestamp": "ds", "target": "sales"})
    assert read_series(frame, target="sales", id_column="store", timestamp_column="ds").ids == ["s0"]
    with pytest.raises(ValueError, match="no such file"):
        read_series(tmp_path / "missing.csv")
