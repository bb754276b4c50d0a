"""A Lightning data module serving LSF train/val/test windows as ``(batch, time, variate)`` dicts."""

from __future__ import annotations

import os

import lightning
import pandas as pd
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from msft.data.lsf import LSFSplit, prepare_lsf
from msft.data.windows import Windows
from msft.protocols.covariates import prepare_covariates


class LSFDataModule(lightning.LightningDataModule):
    """Train/val/test windows of one LSF dataset, z-scored with train statistics.

    Batches are dicts with ``past_target (batch, context_length, variate)``, ``future_target (batch,
    horizon, variate)`` float32 and ``past_observed`` / ``future_observed`` bool masks. Each batch is
    gathered in one indexing operation (batch sampler + ``batch_size=None``), not item by item.

    ``past_covariates`` / ``known_covariates``: columns (or calendar features) read as covariates
    (`msft.protocols.covariates`): the windows stay the targets' windows, and batches also hold
    ``past_covariates (batch, context_length, k1)`` and ``known_covariates (batch, context_length +
    horizon, k2)``.
    """

    def __init__(
        self,
        dataset: str | os.PathLike | pd.DataFrame | LSFSplit = "ETTh1",
        context_length: int = 512,
        horizon: int = 96,
        mode: str = "S",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        targets: str | list[str] | None = None,
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        train_stride: int = 1,
        num_workers: int = 0,
        past_covariates: list[str] | tuple[str, ...] = (),
        known_covariates: list[str] | tuple[str, ...] = (),
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected a positive int")
        self.dataset, self.context_length, self.horizon, self.mode = dataset, context_length, horizon, mode
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.targets, self.data_dir, self.download = targets, data_dir, download
        self.train_stride, self.num_workers = train_stride, num_workers
        self.past_covariates, self.known_covariates = tuple(past_covariates or ()), tuple(known_covariates or ())
        self.data: LSFSplit | None = None
        self.splits: dict[str, Windows] = {}  # CovariateWindows with covariates

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            if isinstance(self.dataset, LSFSplit):
                self.data = self.dataset
            elif self.past_covariates or self.known_covariates:
                self.data = prepare_covariates(
                    self.dataset,
                    self.context_length,
                    self.targets,
                    self.past_covariates,
                    self.known_covariates,
                    data_dir=self.data_dir,
                    download=self.download,
                )
            else:
                self.data = prepare_lsf(
                    self.dataset,
                    self.context_length,
                    targets=self.targets,
                    data_dir=self.data_dir,
                    download=self.download,
                )
            self.splits = {
                "train": self.data.windows("train", self.horizon, self.mode, stride=self.train_stride),
                "val": self.data.windows("val", self.horizon, self.mode),
                "test": self.data.windows("test", self.horizon, self.mode),
            }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        windows = self.splits[split]
        order = RandomSampler(windows) if shuffle else SequentialSampler(windows)
        size = self.batch_size if split == "train" else self.eval_batch_size
        return DataLoader(
            windows, sampler=BatchSampler(order, size, drop_last=False), batch_size=None, num_workers=self.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
