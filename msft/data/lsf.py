"""Long-horizon (LSF) datasets: loading, the standard train/val/test borders and train-stat z-scoring.

The borders are the ones of Informer / Autoformer / Time-Series-Library: ETTh train ``[0, 8640)``,
val ``[8640, 11520)``, test ``[11520, 14400)`` (rows past 14400 unused); ETTm the same ×4; every other
dataset ``n_train = int(0.7 N)``, ``n_test = int(0.2 N)``, validation the rest. A later split's
windows look back ``context_length`` points into the previous split for their context.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from msft.data.files import locate
from msft.data.registry import DatasetSpec, get_spec
from msft.data.windows import Windows

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_ETT_HOUR = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)  # 8640 / 2880 / 2880 rows


def read_csv(path: str | os.PathLike, date_column: str | None = None) -> pd.DataFrame:
    """A benchmark CSV as a frame with a datetime ``date`` column first and float variables after.

    Tolerates the quirks of the distributed files (CRLF line endings, undecodable header bytes,
    duplicated timestamps): rows are kept exactly as in the file, because the published borders count
    rows, not timestamps.
    """
    frame = pd.read_csv(path, encoding="utf-8", encoding_errors="replace")
    return _with_date(frame, date_column)


def _with_date(frame: pd.DataFrame, date_column: str | None) -> pd.DataFrame:
    date_column = date_column or ("date" if "date" in frame.columns else frame.columns[0])
    if date_column not in frame.columns:
        raise ValueError(f"date_column={date_column!r} is not a column; columns are {list(frame.columns)}")
    dates = frame[date_column]
    try:
        dates = pd.to_datetime(dates, format="%Y-%m-%d %H:%M:%S")
    except (ValueError, TypeError):
        dates = pd.to_datetime(dates)
    variables = frame.drop(columns=[date_column]).astype(np.float64)
    variables.insert(0, "date", dates.to_numpy())
    return variables


def load_lsf(
    name: str | os.PathLike, data_dir: str | os.PathLike | None = None, download: bool = False, verify: bool = True
) -> pd.DataFrame:
    """Raw frame (``date`` column + variables) of a known dataset, ``"synthetic"`` or a CSV path.

    Known files are checksum-verified (``verify=False`` skips it explicitly); a missing file raises
    :class:`~msft.data.files.DataNotFoundError` naming the path looked at and how to get it.
    """
    if isinstance(name, str) and name.lower() == "synthetic":
        from msft.data.synthetic import synthetic_frame

        return synthetic_frame()
    if isinstance(name, os.PathLike) or str(name).endswith(".csv"):
        path = Path(name)
        if not path.exists():
            raise FileNotFoundError(f"no CSV at {path}")
        return read_csv(path)
    return read_csv(locate(get_spec(str(name)), data_dir, download_missing=download, verify=verify))


def split_borders(rule: str | tuple, n_rows: int) -> dict[str, tuple[int, int]]:
    """Target rows ``[start, end)`` of train/val/test for a split rule.

    ``rule``: ``"ett_hour"``, ``"ett_minute"``, ``"ratio"`` or explicit ``(n_train, n_val, n_test)``
    row counts (ints) or fractions (floats, val may be ``None`` for "the rest").
    """
    if rule in ("ett_hour", "ett_minute"):
        factor = 1 if rule == "ett_hour" else 4
        n_train, n_val, n_test = (n * factor for n in _ETT_HOUR)
        if n_rows < n_train + n_val + n_test:
            raise ValueError(f"{rule} borders need {n_train + n_val + n_test} rows, the data have {n_rows}")
    elif rule == "ratio":
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        n_val = n_rows - n_train - n_test
    elif isinstance(rule, tuple) and len(rule) == 3:
        n_train, n_val, n_test = rule
        if all(isinstance(n, float) or n is None for n in rule):
            n_train, n_test = int(n_rows * n_train), int(n_rows * n_test)
            n_val = n_rows - n_train - n_test if n_val is None else int(n_rows * n_val)
        if min(n_train, n_val, n_test) < 1 or n_train + n_val + n_test > n_rows:
            raise ValueError(
                f"split {rule!r} gives rows {(n_train, n_val, n_test)}; expected positive "
                f"counts summing to at most {n_rows}"
            )
    else:
        raise ValueError(f"split rule {rule!r}; expected 'ett_hour', 'ett_minute', 'ratio' or (n_train, n_val, n_test)")
    return {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, n_train + n_val + n_test),
    }


@dataclass(frozen=True)
class LSFSplit:
    """One dataset prepared for the LSF protocol: z-scored values and the split borders.

    ``values`` are ``(time, variate)`` float32, scaled with the train split's per-channel mean and
    (population, ddof=0, as sklearn's StandardScaler) std; NaN where missing. ``borders[split]`` are
    the split's target rows; :meth:`segment` adds the look-back into the previous split.
    """

    name: str
    values: np.ndarray
    dates: np.ndarray
    columns: tuple[str, ...]
    borders: dict[str, tuple[int, int]]
    context_length: int
    mean: np.ndarray
    std: np.ndarray
    season: int | None = None
    extra: dict = field(default_factory=dict)

    def segment(self, split: str) -> tuple[int, int]:
        """Rows ``[start, end)`` that the split's windows read: target rows plus the look-back."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; expected one of {SPLITS}")
        start, end = self.borders[split]
        return max(start - self.context_length, 0), end

    def split_dates(self, split: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last timestamp of the split's target rows."""
        start, end = self.borders[split]
        return pd.Timestamp(self.dates[start]), pd.Timestamp(self.dates[end - 1])

    def windows(self, split: str, horizon: int, mode: str = "S", stride: int = 1) -> Windows:
        """Every ``(context_length, horizon)`` window whose forecast lies in the split, stride 1 default."""
        start, end = self.segment(split)
        return Windows(self.values[start:end], self.context_length, horizon, stride=stride, mode=mode)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        """Back to the original units; ``x`` has the channels on its last axis."""
        return x * self.std + self.mean


def prepare_lsf(
    dataset: str | os.PathLike | pd.DataFrame,
    context_length: int,
    targets: str | list[str] | None = None,
    split: str | tuple | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    normalize: bool = True,
) -> LSFSplit:
    """Load (name, CSV path or frame), choose target columns, split and z-score with train statistics.

    ``targets=None`` keeps every variable; ``targets="OT"`` is the classic univariate "S" setting of
    Time-Series-Library. ``split`` defaults to the dataset's published rule (``"ratio"`` for frames,
    CSVs and unknown names).
    """
    if not isinstance(context_length, (int, np.integer)) or context_length < 1:
        raise ValueError(f"context_length={context_length!r}; expected a positive int")
    spec: DatasetSpec | None = None
    if isinstance(dataset, pd.DataFrame):
        frame, name = _with_date(dataset, None), "frame"
    else:
        frame = load_lsf(dataset, data_dir=data_dir, download=download)
        name = str(dataset)
        if isinstance(dataset, str) and not dataset.endswith(".csv") and dataset.lower() != "synthetic":
            spec = get_spec(dataset)
            name = spec.name
    variables = [c for c in frame.columns if c != "date"]
    if targets is not None:
        targets = [targets] if isinstance(targets, str) else list(targets)
        missing = [t for t in targets if t not in variables]
        if missing:
            raise ValueError(f"targets {missing} are not columns; columns are {variables}")
        variables = targets
    values = frame[variables].to_numpy(np.float64)  # (time, variate)
    borders = split_borders(split or (spec.split if spec else "ratio"), len(values))
    train = values[slice(*borders["train"])]
    mean = np.nanmean(train, axis=0) if normalize else np.zeros(values.shape[1])
    std = np.nanstd(train, axis=0) if normalize else np.ones(values.shape[1])
    std = np.where(std > 0, std, 1.0)  # constant channels: leave unscaled, as StandardScaler does
    scaled = ((values - mean) / std).astype(np.float32)
    return LSFSplit(
        name=name,
        values=scaled,
        dates=frame["date"].to_numpy(),
        columns=tuple(variables),
        borders=borders,
        context_length=int(context_length),
        mean=mean,
        std=std,
        season=spec.season if spec else None,
    )
