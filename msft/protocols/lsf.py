"""The LSF protocol: stride-1 windows over a split, MSE/MAE on the train-stat z-scored scale."""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd
import torch

from msft.data.lsf import LSFSplit, prepare_lsf
from msft.protocols._forecasters import check_shape, point_forecaster
from msft.protocols.covariates import batch_covariates, prepare_covariates

logger = logging.getLogger(__name__)


def evaluate_lsf(
    forecaster: Any,
    dataset: str | os.PathLike | pd.DataFrame | LSFSplit = "ETTh1",
    horizon: int = 96,
    context_length: int = 512,
    mode: str = "S",
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "test",
    batch_size: int = 1024,
    targets: str | list[str] | None = None,
    download: bool = False,
    device: str | torch.device | None = None,
    stride: int = 1,
    progress: bool = False,
    past_covariates: list[str] | tuple[str, ...] = (),
    known_covariates: list[str] | tuple[str, ...] = (),
) -> dict[str, float | int]:
    """MSE and MAE of ``forecaster`` over every window of ``split``, averaged over windows × steps × channels.

    ``forecaster``: ``f(past (batch, L, V)) -> (batch, H, V)`` or an object with
    ``.predict(past_target, horizon)``; it may return ``{"mean": ..., "median": ...}`` instead of one
    forecast: MSE is then computed on the mean and MAE on the median, as GluonTS (and the MSFT
    authors) score probabilistic forecasts. Mode ``"S"`` feeds each channel as its own series (V=1),
    ``"M"`` all channels together. ``windows`` in the result counts forecast windows (in mode S,
    time windows × channels). ``dataset`` may be a name, a CSV path, a frame or a prepared
    :class:`~msft.data.LSFSplit` (whose ``context_length`` must equal ``context_length``). ``stride`` > 1
    keeps every ``stride``-th window (off-protocol: a cheaper estimate; the protocol is stride 1).
    ``progress``: a progress bar over the windows on stderr (tqdm).

    Covariates (``past_covariates`` / ``known_covariates``: column names, or calendar features as in
    `msft.protocols.covariates.CALENDAR`; or a prepared `~msft.protocols.covariates.CovariateSplit`):
    the forecaster is called with ``past_covariates=(batch, L, k1)`` and ``known_covariates=(batch,
    L + H, k2)`` keyword arguments, and only the target columns are scored, on the same windows as
    without covariates.
    """
    if isinstance(dataset, LSFSplit):
        if dataset.context_length != context_length:
            raise ValueError(
                f"context_length={context_length} but the LSFSplit was prepared with {dataset.context_length}"
            )
        data = dataset
    elif past_covariates or known_covariates:
        data = prepare_covariates(
            dataset, context_length, targets, past_covariates, known_covariates, data_dir=data_dir, download=download
        )
    else:
        data = prepare_lsf(dataset, context_length, targets=targets, data_dir=data_dir, download=download)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride={stride!r}: expected a positive integer (1 = the protocol's every window)")
    windows = data.windows(split, horizon, mode, stride=stride)
    if len(windows) == 0:
        raise ValueError(
            f"{data.name} {split} split has no window of context_length={context_length} + horizon={horizon}"
        )
    predict = point_forecaster(forecaster)
    squared = absolute = 0.0
    bar = _bar(len(windows), f"{os.path.basename(str(data.name))} {split}") if progress else None
    with torch.no_grad():
        for batch in windows.batches(batch_size):
            past, future = batch["past_target"], batch["future_target"]  # (batch, L, V), (batch, H, V)
            if device is not None:
                past, future = past.to(device), future.to(device)
            out = predict(past, horizon, **batch_covariates(batch, device))
            if isinstance(out, dict):  # probabilistic: MSE of the mean, MAE of the median
                mean = check_shape(out.get("mean"), tuple(future.shape), "forecaster['mean']")
                median = check_shape(out.get("median"), tuple(future.shape), "forecaster['median']")
            else:
                mean = median = check_shape(out, tuple(future.shape), "forecaster")
            squared += float((mean.to(future.dtype) - future).double().square().sum())
            absolute += float((median.to(future.dtype) - future).double().abs().sum())
            if bar is not None:
                bar.update(len(future))
    if bar is not None:
        bar.close()
    count = future.shape[1] * future.shape[2] * len(windows)
    result = {"mse": squared / count, "mae": absolute / count, "windows": len(windows)}
    logger.info("LSF %s H=%d L=%d mode=%s: %s", data.name, horizon, context_length, mode, result)
    return result


def _bar(total: int, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="window", dynamic_ncols=True)
