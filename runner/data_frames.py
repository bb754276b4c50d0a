"""Training windows of user series (`msft.data.frames.SeriesSet`) for the runner's Lightning loop.

Every series is cut as the PF protocol cuts a dataset: validation is its last ``validation_windows ×
horizon`` steps (non-overlapping blocks of ``horizon``), training every window that ends before it.
Series may be shorter than the context: windows are left-padded with missing values (NaN, masked),
so a training window needs only ``horizon`` observed context steps. Values stay on their own scale
(every msft backbone normalises each window itself).

Covariates (`read_covariates`, Chronos-2's data-frame conventions): columns of the same long frame,
past-only ones (known up to each series' end) and known-future ones (also known over the horizon:
``future_df`` at prediction). They ride along the target in every window and come out as the
batch's ``past_covariates`` ``(batch, context, k1)`` and ``known_covariates`` ``(batch, context +
horizon, k2)``; `CovariateForecastModule` hands them to the model's loss and validation.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from msft.data.frames import SeriesSet, read_series
from msft.data.windows import Windows
from msft_runner.module import EpochShuffledBatches, ForecastModule, covariates_of  # noqa: F401 (api.py imports it here)

COVARIATE_KEYS = ("past_covariates", "known_covariates")


def read_covariates(
    data: Any,
    series: SeriesSet,
    past: tuple[str, ...],
    known: tuple[str, ...],
    names: dict[str, str],
    what: str = "data",
) -> list[np.ndarray]:
    """Per item of ``series`` (read from the same ``data``), its covariates ``(time, len(past) + len(known))``
    on the series' own time grid: the ``past`` columns, then the ``known`` ones (NaN where missing).

    ``data`` must be a long frame (or CSV path) holding every named column once; a column named twice,
    among both kinds, or the same as the target / id / timestamp column raises ``ValueError``."""
    columns = (*past, *known)
    if isinstance(data, (str, os.PathLike)):
        data = pd.read_csv(data)
    if not isinstance(data, pd.DataFrame) or names["id_column"] not in data.columns:
        raise ValueError(
            f"{what}: covariates {list(columns)} need a long data frame with an {names['id_column']!r} column "
            "(one row per item and timestamp, one column per covariate)"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"covariate column(s) {repeated} named more than once: expected each column in one list, once")
    reserved = sorted(set(columns) & {names["target"], names["id_column"], names["timestamp_column"]})
    if reserved:
        raise ValueError(
            f"covariate column(s) {reserved} are the target, id or timestamp column: expected other columns"
        )
    duplicated = sorted({str(c) for c in data.columns[data.columns.duplicated()]} & set(columns))
    if duplicated:
        raise ValueError(f"{what} has duplicated column(s) {duplicated}: expected each covariate column once")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{what} lacks covariate column(s) {missing}; its columns are {list(data.columns)}")
    per_column = [read_series(data, **{**names, "target": c}) for c in columns]
    out = []
    for i, item in enumerate(series.ids):
        values = []
        for column, covariate in zip(columns, per_column):
            j = covariate.ids.index(item)
            if covariate.starts[j] != series.starts[i] or len(covariate.values[j]) != len(series.values[i]):
                raise ValueError(f"{what}: covariate {column!r} of item {item!r} is not on the target's time grid")
            values.append(covariate.values[j])
        out.append(np.stack(values, axis=1) if values else np.zeros((len(series.values[i]), 0)))
    return out


def check_known_complete(series: SeriesSet, covariates: list[np.ndarray], known: tuple[str, ...], what: str) -> None:
    """Known-future covariates must be known at every step (each may become a forecast step)."""
    for i, (item, values) in enumerate(zip(series.ids, covariates)):
        gaps = np.isnan(values[:, values.shape[1] - len(known) :])
        if gaps.any():
            t, k = np.argwhere(gaps)[0]
            raise ValueError(
                f"{what}: known covariate {known[k]!r} of item {item!r} is missing at {series.index(i)[t]}: "
                "known-future covariates must be known at every time step"
            )


def split_covariates(batch: dict[str, Tensor], num_past: int) -> dict[str, Tensor]:
    """A batch of windows over ``[target | past covariates | known covariates]`` variates -> the target's
    batch plus ``past_covariates`` ``(batch, context, k1)`` and ``known_covariates`` ``(batch, context +
    horizon, k2)``, missing values as NaN."""

    def values(key: str) -> Tensor:  # Windows zero missing values and flag them: NaN again
        observed = key.replace("target", "observed")
        return torch.where(batch[observed], batch[key], torch.nan)

    past, future = values("past_target"), values("future_target")
    out = {key: batch[key][..., :1] for key in ("past_target", "future_target", "past_observed", "future_observed")}
    out["past_covariates"] = past[..., 1 : 1 + num_past]
    out["known_covariates"] = torch.cat([past[..., 1 + num_past :], future[..., 1 + num_past :]], dim=1)
    return out


class CovariateForecastModule(ForecastModule):
    """`ForecastModule`, which hands a model built with covariates the batch's (`covariates_of`) in its
    loss and validation; the name stays for callers that build it for covariate batches."""


class ManyWindows(Dataset):
    """Several `Windows` as one dataset whose batches are gathered per part (index tensors in, dicts out)."""

    def __init__(self, parts: list[Windows], num_past: int | None = None):
        self.parts = [p for p in parts if len(p)]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.num_past = num_past  # covariates ride along the target: split them off (`split_covariates`)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        part = np.searchsorted(self.offsets, index.numpy(), side="right") - 1
        batches = [self.parts[k][index[part == k] - int(self.offsets[k])] for k in np.unique(part)]
        batch = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
        return batch if self.num_past is None else split_covariates(batch, self.num_past)


class FrameDataModule(L.LightningDataModule):
    """Train / validation windows of a `SeriesSet` (validation held out of each series or given)."""

    def __init__(
        self,
        series: SeriesSet,
        horizon: int,
        context_length: int | None,
        batch_size: int,
        seed: int = 0,
        validation: SeriesSet | None = None,
        validation_windows: int = 1,
        covariates: list[np.ndarray] | None = None,
        validation_covariates: list[np.ndarray] | None = None,
        num_past: int = 0,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("validation_windows", validation_windows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if context_length is not None and (
            isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1
        ):
            raise ValueError(f"context_length={context_length!r}: expected a positive integer")
        self.series, self.validation, self.horizon = series, validation, horizon
        self.context_length = context_length or 512
        self.batch_size, self.seed, self.validation_windows = batch_size, seed, validation_windows
        self.covariates, self.validation_covariates = covariates, validation_covariates
        self.num_past = num_past if covariates is not None else None
        self.train_set: ManyWindows | None = None
        self.val_set: ManyWindows | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        held_out = 0 if self.validation is not None else self.validation_windows * self.horizon
        train_parts, val_parts = [], []
        for i, (item, values) in enumerate(zip(self.series.ids, self.series.values)):
            values = self._with_covariates(values, self.covariates, i)
            train = values[: len(values) - held_out]
            need = 2 * self.horizon + held_out
            if len(values) < need or not np.isfinite(train[:, 0]).any():
                raise ValueError(
                    f"item {item!r} has {len(values)} time steps: too short for prediction_length={self.horizon} "
                    f"(expected at least {need}: {self.horizon} of context and {self.horizon} to learn from"
                    + (f", plus {held_out} held out for validation" if held_out else "")
                    + ")"
                )
            train_parts.append(self._windows(train, stride=1))
            if held_out:
                val_parts.append(self._windows(values[-(held_out + self.context_length) :], stride=self.horizon))
        if self.validation is not None:
            size = self.validation_windows * self.horizon
            for i, (item, values) in enumerate(zip(self.validation.ids, self.validation.values)):
                values = self._with_covariates(values, self.validation_covariates, i)
                if len(values) < size + self.horizon:
                    raise ValueError(
                        f"validation item {item!r} has {len(values)} time steps: expected at least "
                        f"{size + self.horizon} ({self.validation_windows} x prediction_length of "
                        "validation after some context)"
                    )
                val_parts.append(self._windows(values[-(size + self.context_length) :], stride=self.horizon))
        self.train_set = ManyWindows(train_parts, self.num_past)
        self.val_set = ManyWindows(val_parts, self.num_past)
        if not len(self.train_set):
            raise ValueError("no training window: the series are too short for this prediction_length")

    @staticmethod
    def _with_covariates(values: np.ndarray, covariates: list[np.ndarray] | None, i: int) -> np.ndarray:
        """``(time, 1 + covariates)``: the target and, when there are any, item ``i``'s covariates."""
        columns = [values[:, None]] + ([covariates[i]] if covariates is not None else [])
        return np.concatenate(columns, axis=1)

    def _windows(self, values: np.ndarray, stride: int) -> Windows:
        """Training (``stride`` 1): every window of one series, left-padded so that a window needs only
        ``horizon`` context steps. Validation (``stride`` = horizon): the blocks of ``horizon`` steps
        ending at the series' end, with up to ``context_length`` steps of context before each."""
        if stride == 1:
            pad = max(self.context_length - self.horizon, 0)
        else:
            pad = max(self.context_length + self.validation_windows * self.horizon - len(values), 0)
        padded = np.concatenate([np.full((pad, values.shape[1]), np.nan), values])  # (time, 1 + covariates)
        return Windows(padded, self.context_length, self.horizon, stride=stride, mode="M")

    def check_context(self, model) -> None:
        """ValueError when the model cannot take this context length (too short for its coarsest scale)."""
        needed = max(model.scales) * model.spec.patch_size()
        if self.context_length < needed:
            raise ValueError(
                f"context_length={self.context_length}: the model needs at least max(scales) x "
                f"patch_size = {needed}; pass a longer context_length or fewer scales"
            )
        model.spec.check_context(self.context_length)

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffledBatches(len(self.train_set), self.batch_size, self.seed)
        return DataLoader(self.train_set, sampler=sampler, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set, sampler=BatchSampler(SequentialSampler(self.val_set), 256, drop_last=False), batch_size=None
        )
