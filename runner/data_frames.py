"""Training windows of user series (`msft.data.frames.SeriesSet`) for the runner's Lightning loop.

Every series is cut as the PF protocol cuts a dataset: validation is its last ``validation_windows ×
horizon`` steps (non-overlapping blocks of ``horizon``), training every window that ends before it.
Series may be shorter than the context: windows are left-padded with missing values (NaN, masked),
so a training window needs only ``horizon`` observed context steps. Values stay on their own scale
(every msft backbone normalises each window itself).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from msft.data.frames import SeriesSet
from msft.data.windows import Windows
from msft_runner.module import EpochShuffledBatches


class ManyWindows(Dataset):
    """Several `Windows` as one dataset whose batches are gathered per part (index tensors in, dicts out)."""

    def __init__(self, parts: list[Windows]):
        self.parts = [p for p in parts if len(p)]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        part = np.searchsorted(self.offsets, index.numpy(), side="right") - 1
        batches = [self.parts[k][index[part == k] - int(self.offsets[k])] for k in np.unique(part)]
        return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


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
        self.train_set: ManyWindows | None = None
        self.val_set: ManyWindows | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        held_out = 0 if self.validation is not None else self.validation_windows * self.horizon
        train_parts, val_parts = [], []
        for item, values in zip(self.series.ids, self.series.values):
            train = values[: len(values) - held_out]
            need = 2 * self.horizon + held_out
            if len(values) < need or not np.isfinite(train).any():
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
            for item, values in zip(self.validation.ids, self.validation.values):
                if len(values) < size + self.horizon:
                    raise ValueError(
                        f"validation item {item!r} has {len(values)} time steps: expected at least "
                        f"{size + self.horizon} ({self.validation_windows} x prediction_length of "
                        "validation after some context)"
                    )
                val_parts.append(self._windows(values[-(size + self.context_length) :], stride=self.horizon))
        self.train_set, self.val_set = ManyWindows(train_parts), ManyWindows(val_parts)
        if not len(self.train_set):
            raise ValueError("no training window: the series are too short for this prediction_length")

    def _windows(self, values: np.ndarray, stride: int) -> Windows:
        """Training (``stride`` 1): every window of one series, left-padded so that a window needs only
        ``horizon`` context steps. Validation (``stride`` = horizon): the blocks of ``horizon`` steps
        ending at the series' end, with up to ``context_length`` steps of context before each."""
        if stride == 1:
            pad = max(self.context_length - self.horizon, 0)
        else:
            pad = max(self.context_length + self.validation_windows * self.horizon - len(values), 0)
        padded = np.concatenate([np.full(pad, np.nan), values])[:, None]  # (time, 1)
        return Windows(padded, self.context_length, self.horizon, stride=stride)

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
