"""LSF windows with covariates: target columns forecast and scored, other columns as inputs only.

A `CovariateSplit` is an `msft.data.LSFSplit` whose columns are ``[targets | past-only covariates |
known-future covariates]``, every column z-scored with its own train statistics (the target columns
exactly as `prepare_lsf` scales them without covariates). Its windows (`CovariateWindows`) are the
target's windows of the protocol, unchanged in number, order and mode (``"S"``: each target column its
own series), each carrying the covariates of its time window: ``past_covariates (batch, context, k1)``
and ``known_covariates (batch, context + horizon, k2)``, NaN where missing. Scores are on the targets.

Known covariates may also be calendar features computed from the date column (`CALENDAR`), when the
data have no column of that name.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from msft.data.lsf import LSFSplit, load_lsf, prepare_lsf
from msft.data.registry import get_spec
from msft.data.windows import Windows

#: calendar features computable from the date column, usable as covariate names
CALENDAR = {
    "hour_of_day": lambda dates: dates.dt.hour,
    "day_of_week": lambda dates: dates.dt.dayofweek,
    "day_of_month": lambda dates: dates.dt.day,
    "month_of_year": lambda dates: dates.dt.month,
}
COVARIATE_KEYS = ("past_covariates", "known_covariates")


@dataclasses.dataclass(frozen=True)
class CovariateSplit(LSFSplit):
    """An `LSFSplit` over ``[targets | past_covariates | known_covariates]`` columns."""

    past_covariates: tuple[str, ...] = ()
    known_covariates: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        return self.columns[: len(self.columns) - len(self.past_covariates) - len(self.known_covariates)]

    def windows(self, split: str, horizon: int, mode: str = "S", stride: int = 1) -> CovariateWindows:
        start, end = self.segment(split)
        values = self.values[start:end]  # (time, targets + covariates)
        return CovariateWindows(
            values, len(self.targets), len(self.past_covariates), self.context_length, horizon, stride, mode
        )


class CovariateWindows(torch.utils.data.Dataset):
    """The target columns' `Windows` (``mode`` as the protocol's) with each window's covariates.

    Window ``i`` is target window ``i`` (series ``i // num_time_windows``) and covariate window
    ``i % num_time_windows``: every target series of a time window reads the same covariates."""

    def __init__(
        self, values: np.ndarray, targets: int, past: int, context_length: int, horizon: int, stride: int, mode: str
    ):
        self.target = Windows(values[:, :targets], context_length, horizon, stride=stride, mode=mode)
        self.covariates = Windows(values[:, targets:], context_length, horizon, stride=stride, mode="M")
        self.past, self.context_length, self.horizon = past, context_length, horizon
        self.num_time_windows, self.num_series = self.target.num_time_windows, self.target.num_series
        self.num_variates = self.target.num_variates

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, index) -> dict[str, Tensor]:
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"window {index} out of range for {len(self)} windows")
            return {key: value[0] for key, value in self[torch.tensor([index % len(self)])].items()}
        if isinstance(index, slice):
            index = torch.arange(*index.indices(len(self)))
        index = torch.as_tensor(index, dtype=torch.long)
        if len(index) and not (0 <= int(index.min()) and int(index.max()) < len(self)):
            raise IndexError(f"windows {index.tolist()} out of range for {len(self)} windows")
        batch = self.target[index]
        covariates = self.covariates[index % max(self.num_time_windows, 1)]

        def values(part: str) -> Tensor:  # Windows zero missing values and flag them: NaN again
            return torch.where(covariates[f"{part}_observed"], covariates[f"{part}_target"], torch.nan)

        past, future = values("past"), values("future")  # (batch, L, k1 + k2), (batch, H, k1 + k2)
        batch["past_covariates"] = past[..., : self.past]
        batch["known_covariates"] = torch.cat([past[..., self.past :], future[..., self.past :]], dim=1)
        return batch

    def batches(self, batch_size: int):
        """Consecutive batches covering every window once, in index order (as `Windows.batches`)."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected a positive int")
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]


def check_covariate_names(
    columns: list[str], targets: list[str] | None, past: list[str], known: list[str], what: str
) -> list[str]:
    """The target columns (``targets``, or every column that is not a covariate); ``ValueError`` for a
    covariate named twice, in both lists, equal to a target, or neither a column nor in `CALENDAR`."""
    named = [*past, *known]
    for name in named:
        if not isinstance(name, str) or not name:
            raise ValueError(f"covariate {name!r}: expected a column name (str)")
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise ValueError(
            f"covariate(s) {repeated} named more than once: expected each in one of past_covariates / "
            "known_covariates, once"
        )
    unknown = [c for c in named if c not in columns and c not in CALENDAR]
    if unknown:
        raise ValueError(
            f"{what}: covariate(s) {unknown} are not columns; expected columns of the data {columns} "
            f"or calendar features {list(CALENDAR)}"
        )
    if targets is None:
        return [c for c in columns if c not in named]
    both = [t for t in targets if t in named]
    if both:
        raise ValueError(
            f"{what}: {both} named as target and as covariate: expected a column to be either the target "
            "or a covariate (remove it from data.target or from the covariates)"
        )
    return targets


def prepare_covariates(
    dataset: str | os.PathLike | pd.DataFrame,
    context_length: int,
    targets: str | list[str] | None = None,
    past_covariates: list[str] | tuple[str, ...] = (),
    known_covariates: list[str] | tuple[str, ...] = (),
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> CovariateSplit:
    """`prepare_lsf` with covariate columns: same borders, each column z-scored with its train statistics."""
    past, known = list(past_covariates), list(known_covariates)
    if isinstance(dataset, pd.DataFrame):
        frame, name, spec = dataset, "frame", None
        if "date" not in frame.columns:
            frame = frame.rename(columns={frame.columns[0]: "date"})
    else:
        frame = load_lsf(dataset, data_dir=data_dir, download=download)
        name, spec = str(dataset), None
        if isinstance(dataset, str) and not dataset.endswith(".csv") and dataset.lower() != "synthetic":
            spec = get_spec(dataset)
            name = spec.name
    columns = [c for c in frame.columns if c != "date"]
    targets = [targets] if isinstance(targets, str) else (None if targets is None else list(targets))
    targets = check_covariate_names(columns, targets, past, known, f"data {name}")
    calendar = [c for c in (*past, *known) if c not in columns]
    if calendar:
        dates = pd.to_datetime(frame["date"])
        frame = frame.assign(**{c: CALENDAR[c](dates).astype(np.float64) for c in calendar})
    data = prepare_lsf(frame[["date", *targets, *past, *known]], context_length, split=spec.split if spec else None)
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(LSFSplit)}
    fields.update(name=name, season=spec.season if spec else None)
    return CovariateSplit(**fields, past_covariates=tuple(past), known_covariates=tuple(known))


def batch_covariates(batch: dict[str, Tensor], device: Any = None) -> dict[str, Tensor]:
    """The covariates of a batch (none for windows without covariates), on ``device``."""
    out = {key: batch[key] for key in COVARIATE_KEYS if key in batch}
    return {key: value.to(device) for key, value in out.items()} if device is not None else out
