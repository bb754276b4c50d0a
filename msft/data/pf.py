"""Probabilistic-forecasting (PF) datasets and the rolling evaluation split.

Every PF dataset is loaded as a wide frame: a ``date`` column and one column per series. The rolling
evaluation forecasts the last ``windows × horizon`` points of every series in ``windows``
non-overlapping blocks of ``horizon`` steps; each block's context is the ``context_length`` points
before it, and its seasonal error (MASE/MSIS scale) uses the whole history before it, as GluonTS does
for a test split made with ``split(dataset, offset=-windows*horizon)``.

Sources. Electricity and Solar are the LSTNet files that GluonTS's ``electricity`` / ``solar-energy``
are built from (solar 10-minute values summed to hours, as GluonTS does). Jena weather reuses the LSF
``weather/weather.csv`` (checksum-verified). Istanbul Traffic, Turkey Power and Walmart are Kaggle
datasets behind a login: they cannot be downloaded automatically; place the file at the path named in
the error. None of the PF files has a published checksum known to this project: they are used with
a logged warning (see ``msft.data.files.verify_file``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from msft.data.files import locate
from msft.data.lsf import read_csv
from msft.data.registry import LSF_DATASETS, DatasetSpec

_LSTNET = "https://raw.githubusercontent.com/laiguokun/multivariate-time-series-data/master/"


@dataclass(frozen=True)
class PFSpec:
    """A PF dataset: its file, how to read it, and its protocol (horizon, rolling windows, seasonality)."""

    name: str
    file: DatasetSpec
    reader: str  # "lstnet", "wide" or "walmart"
    horizon: int
    windows: int
    seasonality: int  # GluonTS get_seasonality of the frequency
    start: str | None = None  # lstnet files carry no timestamps
    freq: str | None = None
    resample: str | None = None  # sum to this frequency after reading (GluonTS solar)


def _file(name: str, relpath: str, freq: str, url: str | None = None, source: str = "") -> DatasetSpec:
    return DatasetSpec(name, relpath, "ratio", freq, 1, url=url, source=source)


PF_DATASETS: dict[str, PFSpec] = {
    "electricity": PFSpec(
        "electricity",
        _file("electricity", "pf/electricity.txt.gz", "h", _LSTNET + "electricity/electricity.txt.gz"),
        "lstnet",
        24,
        7,
        24,
        start="2012-01-01",
        freq="h",
    ),
    "solar": PFSpec(
        "solar",
        _file("solar", "pf/solar_AL.txt.gz", "10min", _LSTNET + "solar-energy/solar_AL.txt.gz"),
        "lstnet",
        24,
        7,
        24,
        start="2006-01-01",
        freq="10min",
        resample="h",
    ),
    "jena_weather": PFSpec("jena_weather", LSF_DATASETS["weather"], "wide", 144, 7, 144),
    # Not in the published PF benchmark: the LSF files under the PF protocol (raw scale, the last 7
    # horizon-long blocks), one day ahead as the hourly benchmark datasets (msft's PF evidence, issue 31)
    "etth1": PFSpec("etth1", LSF_DATASETS["etth1"], "wide", 24, 7, 24),
    "ettm1": PFSpec("ettm1", LSF_DATASETS["ettm1"], "wide", 96, 7, 96),
    "istanbul_traffic": PFSpec(
        "istanbul_traffic",
        _file(
            "istanbul_traffic",
            "pf/istanbul_traffic.csv",
            "h",
            source="https://www.kaggle.com/datasets/leonardo00/istanbul-traffic-index (resample to hourly, "
            "one column per series, date column first)",
        ),
        "wide",
        24,
        7,
        24,
    ),
    "turkey_power": PFSpec(
        "turkey_power",
        _file(
            "turkey_power",
            "pf/turkey_power.csv",
            "h",
            source="https://www.kaggle.com/datasets/dharanikra/electrical-power-demand-in-turkey (hourly, "
            "one column per series, date column first)",
        ),
        "wide",
        24,
        7,
        24,
    ),
    "walmart": PFSpec(
        "walmart",
        _file(
            "walmart",
            "pf/walmart/train.csv",
            "W",
            source="https://www.kaggle.com/competitions/walmart-recruiting-store-sales-forecasting (train.csv)",
        ),
        "walmart",
        8,
        4,
        1,
    ),
}
PF_DATASETS["weather"] = PF_DATASETS["jena_weather"]


def get_pf_spec(name: str) -> PFSpec:
    try:
        return PF_DATASETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown PF dataset {name!r}; expected one of {sorted(PF_DATASETS)}") from None


def _read_lstnet(path, spec: PFSpec) -> pd.DataFrame:
    values = pd.read_csv(path, header=None).to_numpy(np.float64)  # (time, series), no header, no dates
    frame = pd.DataFrame(values, index=pd.date_range(spec.start, periods=len(values), freq=spec.freq))
    if spec.resample:
        frame = frame.resample(spec.resample).sum()
    frame.columns = [f"{spec.name}_{i}" for i in range(frame.shape[1])]
    return frame.rename_axis("date").reset_index()


def _read_walmart(path) -> pd.DataFrame:
    """Kaggle ``train.csv`` (Store, Dept, Date, Weekly_Sales, IsHoliday) -> one weekly series per store×dept."""
    long = pd.read_csv(path, parse_dates=["Date"])
    wide = long.pivot_table(index="Date", columns=["Store", "Dept"], values="Weekly_Sales", aggfunc="sum")
    wide.columns = [f"{store}_{dept}" for store, dept in wide.columns]
    return wide.rename_axis("date").reset_index()


def load_pf(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> pd.DataFrame:
    """Wide frame (``date`` + one column per series, NaN where a series has no value) of a PF dataset."""
    spec = get_pf_spec(name)
    path = locate(spec.file, data_dir, download_missing=download)
    if spec.reader == "lstnet":
        return _read_lstnet(path, spec)
    if spec.reader == "walmart":
        return _read_walmart(path)
    return read_csv(path)


@dataclass(frozen=True)
class RollingWindows:
    """The rolling PF test set of a ``(time, series)`` array, every block as a univariate window.

    Shapes (``n = series × windows``, block ``w`` of series ``s`` at index ``s * windows + w``):
    ``past (n, context_length)`` with NaN where missing, ``future (n, horizon)``,
    ``seasonal_error (n,)``.
    """

    past: np.ndarray
    future: np.ndarray
    seasonal_error: np.ndarray
    horizon: int
    windows: int


def seasonal_error_before(values: np.ndarray, starts: np.ndarray, seasonality: int) -> np.ndarray:
    """Mean |y_t - y_{t-m}| over each column's history ``[0, start)``, NaN-aware, GluonTS's rule.

    ``values (time, series)``, ``starts (k,)`` -> ``(k, series)``; as GluonTS, a history shorter
    than the seasonality falls back to m = 1.
    """

    def mean_abs_diff(m: int) -> np.ndarray:  # (k, series)
        diff = np.abs(values[m:] - values[:-m]) if len(values) > m else np.empty((0, values.shape[1]))
        valid = ~np.isnan(diff)
        zero = np.zeros((1, values.shape[1]))
        csum = np.concatenate([zero, np.cumsum(np.where(valid, diff, 0.0), axis=0)])
        count = np.concatenate([zero, np.cumsum(valid, axis=0)])
        last = np.clip(starts - m, 0, len(diff))  # number of lag-m differences inside [0, start)
        with np.errstate(invalid="ignore", divide="ignore"):
            return csum[last] / count[last]

    use_season = (starts >= seasonality)[:, None]
    return np.where(use_season, mean_abs_diff(seasonality), mean_abs_diff(1))


def rolling_windows(
    values: np.ndarray, horizon: int, windows: int, context_length: int, seasonality: int
) -> RollingWindows:
    """Cut the last ``windows × horizon`` steps of ``values (time, series)`` into forecast blocks."""
    values = np.asarray(values, dtype=np.float64)
    n_time, n_series = values.shape
    first = n_time - windows * horizon
    for field, value in (("horizon", horizon), ("windows", windows), ("context_length", context_length)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{field}={value!r}; expected a positive int")
    if first - context_length < 0:
        raise ValueError(
            f"context_length={context_length} needs {context_length + windows * horizon} time "
            f"steps for {windows}×{horizon} test points; the data have {n_time}"
        )
    starts = first + horizon * np.arange(windows)  # (windows,)
    width = context_length + horizon
    view = np.lib.stride_tricks.sliding_window_view(values, width, axis=0)  # (time - width + 1, series, width)
    blocks = view[starts - context_length]  # (windows, series, width)
    blocks = blocks.transpose(1, 0, 2).reshape(n_series * windows, width)  # series-major
    error = seasonal_error_before(values, starts, seasonality).T.reshape(-1)  # (series * windows,)
    return RollingWindows(blocks[:, :context_length], blocks[:, context_length:], error, horizon, windows)
