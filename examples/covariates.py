"""Finetune the embedded MOIRAI with covariates and forecast with future values of the known ones (offline).

python examples/covariates.py [plot.png]     # about 20 s on one CPU thread (OMP_NUM_THREADS=1 on a busy machine)

A long data frame holds each series' target (oil temperature, ``OT``), a past-only covariate (the
high-use load ``HUFL``, known only up to the forecast origin) and a known-future covariate (the hour
of day, known ahead). `msft.finetune` trains msft's multi-scale method on them (MOIRAI reads the
covariates as extra variates, any-variate attention, at every scale; the loss covers the target
only); `predict_df(history, future_df=...)` forecasts with the hours of the next day; the plot is
saved to a file.
"""

import sys

import matplotlib
import pandas as pd

import msft
from msft.data import load_lsf

matplotlib.use("Agg")  # write the figure to a file, no display needed

HORIZON = 24

# 1. A long frame (item_id, timestamp, target, covariates), Chronos-2's conventions: the last 800
#    hours of ETTh1 and ETTh2 (bundled with msft).
frames = []
for name in ("ETTh1", "ETTh2"):
    wide = load_lsf(name).iloc[-800:]
    stamps = pd.to_datetime(wide["date"])
    frames.append(
        pd.DataFrame(
            {
                "item_id": name,
                "timestamp": stamps,
                "target": wide["OT"].to_numpy(),
                "HUFL": wide["HUFL"].to_numpy(),  # past-only: measured, not known ahead
                "hour": stamps.dt.hour.to_numpy(float),  # known-future: the calendar
            }
        )
    )
df = pd.concat(frames, ignore_index=True)
cut = df.timestamp.max() - pd.Timedelta(hours=HORIZON)
history = df[df.timestamp <= cut]
future_df = df[df.timestamp > cut][["item_id", "timestamp", "hour"]]  # what is known about the next day
truth = df[df.timestamp > cut][["item_id", "timestamp", "target"]]

# 2. Finetune with covariates (early stopping on the end of each series).
forecaster = msft.finetune(
    "tiny_moirai",
    history,
    prediction_length=HORIZON,
    past_covariates=["HUFL"],
    known_covariates=["hour"],
    scales=[1, 2, 4],
    context_length=256,
    max_steps=20,
    progress=False,
)
print(forecaster.leaderboard())

# 3. Forecast the next day: the known covariate's future comes in future_df.
forecast = forecaster.predict_df(history, future_df=future_df)
print(forecast.head())

# 4. Plot context, truth and forecast, to a file.
path = sys.argv[1] if len(sys.argv) > 1 else "covariates.png"
forecaster.plot(history, truth, future_df=future_df).savefig(path, dpi=80)
print(f"plot written to {path}")
