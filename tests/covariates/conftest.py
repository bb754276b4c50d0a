"""Data frames with covariates for the covariate tests."""

import numpy as np
import pandas as pd


def covariate_frame(items=2, length=200, seed=0, start="2024-01-01"):
    """A long frame: ``target`` follows a past-only ``load`` (one step behind) and a known-future
    ``hour`` (the hour of day, a daily cycle)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(items):
        stamps = pd.date_range(start, periods=length, freq="h")
        hour = stamps.hour.to_numpy(np.float64)
        load = np.cumsum(rng.standard_normal(length)) + 5 * i
        target = 3 * np.sin(2 * np.pi * hour / 24) + np.roll(load, 1) + 0.2 * rng.standard_normal(length)
        frames.append(
            pd.DataFrame({"item_id": f"s{i}", "timestamp": stamps, "target": target, "load": load, "hour": hour})
        )
    return pd.concat(frames, ignore_index=True)


def split_future(frame, horizon):
    """``(history, future_df)``: each item's last ``horizon`` rows become ``future_df`` (id, timestamp and
    the known-future ``hour`` only)."""
    last = frame.groupby("item_id").timestamp.transform("max")
    cut = last - pd.Timedelta(hours=horizon)
    history = frame[frame.timestamp <= cut]
    future = frame[frame.timestamp > cut][["item_id", "timestamp", "hour"]]
    return history.reset_index(drop=True), future.reset_index(drop=True)
