"""The PF protocol: rolling evaluation over the last ``windows × horizon`` points, GluonTS metrics."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch

from msft.data.pf import get_pf_spec, load_pf, rolling_windows
from msft.protocols._forecasters import check_shape
from msft.protocols._forecasters import sampler as as_sampler
from msft.protocols.metrics import QUANTILES, pf_metrics


def evaluate_pf(
    sampler: Any,
    dataset: str | pd.DataFrame,
    *,
    horizon: int | None = None,
    windows: int | None = None,
    context_length: int | None = None,
    num_samples: int = 100,
    seasonality: int | None = None,
    batch_size: int = 256,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    levels=QUANTILES,
) -> dict[str, float]:
    """CRPS, MSIS, sMAPE, MASE, ND and NRMSE of ``sampler`` on a PF dataset's rolling test windows.

    ``sampler``: ``f(past (batch, L, 1), horizon, num_samples) -> (batch, num_samples, horizon, 1)``
    or an object with ``.predict_samples(past_target, horizon, num_samples=...)``. Each series is
    forecast univariately on its raw scale; missing context points are NaN. Defaults come from the
    dataset's protocol (H=24 and 7 windows; Jena weather H=144; Walmart H=8, 4 windows).
    ``context_length`` defaults to ``min(512, history before the first window)``. ``dataset`` may
    be a wide frame (``date`` + one column per series); then ``horizon``, ``windows`` and
    ``seasonality`` are required.
    """
    if isinstance(dataset, pd.DataFrame):
        if None in (horizon, windows, seasonality):
            raise ValueError("a frame dataset needs horizon, windows and seasonality")
        frame = dataset
    else:
        spec = get_pf_spec(dataset)
        horizon, windows = horizon or spec.horizon, windows or spec.windows
        seasonality = seasonality or spec.seasonality
        frame = load_pf(dataset, data_dir=data_dir, download=download)
    values = frame.drop(columns=["date"], errors="ignore").to_numpy(np.float64)  # (time, series)
    if context_length is None:
        context_length = min(512, len(values) - windows * horizon)
    test = rolling_windows(values, horizon, windows, context_length, seasonality)
    sample = as_sampler(sampler)
    past = torch.as_tensor(test.past, dtype=torch.float32).unsqueeze(-1)  # (n, L, 1)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(past), batch_size):
            chunk = past[start : start + batch_size]
            out = sample(chunk, horizon, num_samples)
            out = check_shape(out, (len(chunk), num_samples, horizon, 1), "sampler")
            outputs.append(out[..., 0].double().cpu().numpy())  # (batch, samples, horizon)
    samples = np.concatenate(outputs)
    return pf_metrics(test.future, samples, test.seasonal_error, mask=~np.isnan(test.future), levels=levels)
