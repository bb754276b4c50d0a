"""User data frames as regular series: long format, wide format or a CSV file, checked once at the boundary.

- **long**: one row per (item, timestamp), columns ``item_id``, ``timestamp`` and ``target`` (names
  configurable), as AutoGluon's ``TimeSeriesDataFrame`` and Chronos-2's ``predict_df`` take;
- **wide**: a ``DatetimeIndex`` (or a ``timestamp``/``date`` column) and one numeric column per series;
- a **CSV path**: read, then long when it has the id column, wide otherwise.

Every series is put on its regular grid: gaps in the timestamps become missing values (NaN). Errors
name the item and what was expected: missing columns, non-numeric targets, duplicated timestamps,
irregular timestamps, mixed frequencies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

DATE_COLUMNS = ("date", "Date", "datetime", "time")


@dataclass
class SeriesSet:
    """Regular univariate series: ``values[i]`` (float64, NaN where missing) start at ``starts[i]``."""

    ids: list[str]
    starts: list[pd.Timestamp]
    values: list[np.ndarray]
    freq: pd.DateOffset

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, i: int) -> pd.DatetimeIndex:
        return pd.date_range(self.starts[i], periods=len(self.values[i]), freq=self.freq)

    def future_index(self, i: int, horizon: int) -> pd.DatetimeIndex:
        """The ``horizon`` timestamps after series ``i``'s last one, on its frequency."""
        last = self.starts[i] + (len(self.values[i]) - 1) * self.freq
        return pd.date_range(last + self.freq, periods=horizon, freq=self.freq)

    def to_long(
        self, id_column: str = "item_id", timestamp_column: str = "timestamp", target: str = "target"
    ) -> pd.DataFrame:
        frames = [
            pd.DataFrame({id_column: item, timestamp_column: self.index(i), target: self.values[i]})
            for i, item in enumerate(self.ids)
        ]
        return pd.concat(frames, ignore_index=True)


def read_series(
    data: pd.DataFrame | str | os.PathLike,
    *,
    target: str = "target",
    id_column: str = "item_id",
    timestamp_column: str = "timestamp",
) -> SeriesSet:
    """``data`` (long frame, wide frame or CSV path) as a checked `SeriesSet` (see the module docstring)."""
    if isinstance(data, (str, os.PathLike)):
        if not os.path.isfile(data):
            raise ValueError(f"data={str(data)!r}: no such file; expected a CSV file or a pandas DataFrame")
        data = pd.read_csv(data)
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data is a {type(data).__name__}: expected a pandas DataFrame (long or wide) or a CSV path")
    if data.empty:
        raise ValueError("data is empty: expected at least one series")
    if isinstance(data.index, pd.DatetimeIndex):
        return _from_wide(data, data.index)
    if id_column in data.columns:
        missing = [c for c in (timestamp_column, target) if c not in data.columns]
        if missing:
            raise ValueError(
                f"long-format data lacks column(s) {missing}: expected {id_column!r}, "
                f"{timestamp_column!r} and {target!r}; columns are {list(data.columns)}"
            )
        return _from_long(data, target, id_column, timestamp_column)
    time_column = next((c for c in (timestamp_column, *DATE_COLUMNS) if c in data.columns), None)
    if time_column is None or target in data.columns:
        raise ValueError(
            f"cannot read the data: columns are {list(data.columns)}; expected a long frame with columns "
            f"{id_column!r}, {timestamp_column!r}, {target!r} (pass id_column=/timestamp_column=/target= for other "
            f"names), or a wide frame with a DatetimeIndex (or a {timestamp_column!r} column) and one column per series"
        )
    return _from_wide(data.drop(columns=[time_column]), _to_datetime(data[time_column], time_column))


def _from_long(data: pd.DataFrame, target: str, id_column: str, timestamp_column: str) -> SeriesSet:
    _check_numeric(data[target], f"target column {target!r}")
    times = _to_datetime(data[timestamp_column], timestamp_column)
    frame = pd.DataFrame(
        {"id": data[id_column].astype(str).to_numpy(), "t": times.to_numpy(), "y": data[target].to_numpy(np.float64)}
    )
    items = [(str(item), group.sort_values("t")) for item, group in frame.groupby("id", sort=False)]
    return _regularise([(item, pd.DatetimeIndex(g["t"]), g["y"].to_numpy()) for item, g in items])


def _from_wide(data: pd.DataFrame, times: pd.DatetimeIndex | pd.Series) -> SeriesSet:
    times = pd.DatetimeIndex(times)
    for column in data.columns:
        _check_numeric(
            data[column],
            f"column {column!r} of wide-format data (one column per series; long-format "
            "data need their id column named by id_column=, target column by target=)",
        )
    order = np.argsort(times.to_numpy(), kind="stable")
    times, data = times[order], data.iloc[order]
    items = []
    for column in data.columns:
        values = data[column].to_numpy(np.float64)
        keep = ~np.isnan(values)  # a wide frame's NaN rows are other series' timestamps
        first, last = np.flatnonzero(keep)[[0, -1]] if keep.any() else (0, -1)
        items.append((str(column), times[first : last + 1], values[first : last + 1]))
    return _regularise(items)


def _regularise(items: list[tuple[str, pd.DatetimeIndex, np.ndarray]]) -> SeriesSet:
    freqs, series = {}, []
    for item, times, values in items:
        if len(times) == 0:
            raise ValueError(f"item {item!r} has no observation: expected at least a few time steps")
        duplicated = times[times.duplicated()]
        if len(duplicated):
            raise ValueError(
                f"item {item!r} has duplicated timestamps (e.g. {duplicated[0]}): expected one value "
                "per timestamp; aggregate them first (e.g. df.groupby([id, timestamp]).mean())"
            )
        freq = _frequency(item, times)
        grid = pd.date_range(times[0], times[-1], freq=freq)
        position = grid.get_indexer(times)
        if (position < 0).any():
            bad = times[position < 0][0]
            raise ValueError(
                f"item {item!r} has irregular timestamps ({bad} is off its {freq.freqstr} grid): "
                "expected a regular frequency; resample the data first"
            )
        regular = np.full(len(grid), np.nan)
        regular[position] = values  # gaps stay NaN (missing)
        freqs[item] = freq
        series.append((item, times[0], regular))
    distinct = {f.freqstr for f in freqs.values()}
    if len(distinct) > 1:
        examples = {}
        for item, f in freqs.items():
            examples.setdefault(f.freqstr, item)
        raise ValueError(
            f"the series have mixed frequencies {sorted(distinct)} (e.g. items "
            f"{sorted(examples.values())}): expected one frequency; resample them to a common one"
        )
    return SeriesSet([s[0] for s in series], [s[1] for s in series], [s[2] for s in series], next(iter(freqs.values())))


def _frequency(item: str, times: pd.DatetimeIndex) -> pd.DateOffset:
    """The series' frequency: pandas' inference, else the smallest step when every step is a multiple of it."""
    if len(times) < 2:
        raise ValueError(f"item {item!r} has {len(times)} time step: too short to tell its frequency")
    inferred = pd.infer_freq(times) if len(times) >= 3 else None
    if inferred is not None:
        return to_offset(inferred)
    for k in range(len(times) - 2):  # a calendar frequency (months, ...) from a contiguous run of 3
        run = pd.infer_freq(times[k : k + 3])
        if run is not None:
            offset = to_offset(run)
            if pd.date_range(times[0], times[-1], freq=offset).get_indexer(times).min() >= 0:
                return offset
    steps = np.diff(times.asi8)
    step = steps.min()
    if step <= 0 or (steps % step).any():
        raise ValueError(
            f"item {item!r} has irregular timestamps (steps of {sorted(set(pd.to_timedelta(steps)))[:3]}"
            "...): expected a regular frequency with at most some gaps; resample the data first"
        )
    return to_offset(pd.Timedelta(int(step)))


def _check_numeric(column: pd.Series, what: str) -> None:
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
        example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else ""
        raise ValueError(f"{what} has dtype {column.dtype}{example}: expected numbers (NaN for missing values)")


def _to_datetime(column: pd.Series, name: str) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex(pd.to_datetime(column))
    except (ValueError, TypeError) as err:
        raise ValueError(f"column {name!r} cannot be read as timestamps ({err}): expected dates or datetimes") from None
