"""Training data for the PF protocol: univariate windows of a wide frame, on the raw scale.

The standard PF setup (GluonTS / uni2ts): the test region is the last ``windows × horizon`` points of
every series (`msft.data.pf.rolling_windows`); the model trains on the history before it and
early-stops on the last ``windows × horizon`` points of that history, cut the same way as the test.
Values stay on the raw scale (PF metrics are computed there, and msft backbones normalise each window
internally); missing values are NaN, flagged by the observed masks of `msft.data.windows.Windows`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from msft.data.pf import load_pf
from msft.data.windows import Windows
from msft_runner.lsf_data import LSFDataModule


@dataclass(frozen=True)
class PFSplit:
    """A wide PF frame cut into train / val / test along time, every column its own series.

    ``values (time, series)`` float64 with NaN where missing; the test region is the last
    ``windows × horizon`` steps, validation the same number of steps before it, training the rest.
    """

    frame: pd.DataFrame
    values: np.ndarray
    context_length: int
    horizon: int
    num_windows: int  # rolling blocks in each of val and test

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, context_length: int, horizon: int, windows: int) -> PFSplit:
        for field, value in (("context_length", context_length), ("horizon", horizon), ("windows", windows)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{field}={value!r}; expected a positive int")
        values = frame.drop(columns=["date"], errors="ignore").to_numpy(np.float64)  # (time, series)
        need = context_length + horizon + 2 * windows * horizon  # one training window + val + test
        if len(values) < need:
            raise ValueError(
                f"context_length={context_length}: a PF split with {windows}×{horizon} validation and "
                f"test points needs at least {need} time steps; the data have {len(values)}"
            )
        return cls(frame, values, context_length, horizon, windows)

    @property
    def test_start(self) -> int:
        return len(self.values) - self.num_windows * self.horizon

    @property
    def val_start(self) -> int:
        return self.test_start - self.num_windows * self.horizon

    def windows_of(self, split: str, stride: int = 1) -> Windows:
        """``train``: every window ending before the validation region (``stride`` apart);
        ``val`` / ``test``: the region's ``num_windows`` non-overlapping blocks, series-major."""
        context = self.context_length
        if split == "train":
            return Windows(self.values[: self.val_start], context, self.horizon, stride=stride)
        if split == "val":
            segment = self.values[self.val_start - context : self.test_start]
        elif split == "test":
            segment = self.values[self.test_start - context :]
        else:
            raise ValueError(f"split={split!r}; expected 'train', 'val' or 'test'")
        return Windows(segment, context, self.horizon, stride=self.horizon)

    def windows(self, split: str, horizon: int, mode: str = "S", stride: int = 1) -> Windows:
        """`LSFSplit.windows`'s signature (plots use it); PF series are univariate, so mode is "S"."""
        if horizon != self.horizon or mode != "S":
            raise ValueError(f"horizon={horizon}, mode={mode!r}: this PF split has horizon {self.horizon}, mode 'S'")
        return self.windows_of(split, stride)


def load_pf_frame(
    dataset: str | os.PathLike,
    targets: str | list[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> pd.DataFrame:
    """A PF dataset by name (`msft.data.load_pf`) or a wide CSV file (``date`` + one column per series),
    restricted to the ``targets`` columns when given."""
    if os.path.isfile(dataset):
        from msft.data.lsf import read_csv

        frame = read_csv(dataset)
    else:
        frame = load_pf(str(dataset), data_dir=data_dir, download=download)
    if targets:
        targets = [targets] if isinstance(targets, str) else list(targets)
        missing = [t for t in targets if t not in frame.columns]
        if missing:
            raise ValueError(f"target={missing!r} not in the data; columns are {list(frame.columns)[1:]}")
        frame = frame[["date", *targets]]
    return frame


class PFDataModule(LSFDataModule):
    """`LSFDataModule`'s loaders over a `PFSplit`: batches of univariate raw-scale windows with masks."""

    def __init__(
        self,
        dataset: str | os.PathLike | pd.DataFrame,
        context_length: int,
        horizon: int,
        windows: int,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        targets: str | list[str] | None = None,
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        train_stride: int = 1,
        num_workers: int = 0,
    ):
        super().__init__(
            dataset,
            context_length,
            horizon,
            "S",
            batch_size,
            eval_batch_size,
            targets,
            data_dir,
            download,
            train_stride,
            num_workers,
        )
        self.windows = windows

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            frame = (
                self.dataset
                if isinstance(self.dataset, pd.DataFrame)
                else load_pf_frame(self.dataset, self.targets, self.data_dir, self.download)
            )
            self.data = PFSplit.from_frame(frame, self.context_length, self.horizon, self.windows)
            self.splits = {
                split: self.data.windows_of(split, self.train_stride if split == "train" else 1)
                for split in ("train", "val", "test")
            }
