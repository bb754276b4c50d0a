"""msft in one file: finetune the embedded MOIRAI on a data frame, forecast, score with GluonTS (offline).

python examples/quickstart.py     # README "Finetune on a data frame"; timing noted there
"""

import pandas as pd
from gluonts.dataset.pandas import PandasDataset
from gluonts.dataset.split import split
from gluonts.ev.metrics import MASE, MSE, MeanWeightedSumQuantileLoss
from gluonts.model import evaluate_model

import msft
from msft.data import load_lsf

# A long-format frame (item_id, timestamp, target), as AutoGluon and Chronos-2 take: three ETTh1
# series (bundled with msft), the last 1000 hours each.
wide = load_lsf("ETTh1").set_index("date")[["HUFL", "MUFL", "OT"]].iloc[-1000:]
df = wide.rename_axis("timestamp").reset_index().melt("timestamp", var_name="item_id", value_name="target")
train = df[df.timestamp <= df.timestamp.max() - pd.Timedelta(days=7)]  # hold out the last week

# 1. Finetune (msft's multi-scale method; early stopping on the end of each series).
forecaster = msft.finetune("tiny_moirai", train, prediction_length=24, context_length=512, max_steps=30)

# 2. Forecast the next day of every series: mean and quantile columns "0.1" ... "0.9".
print(forecaster.predict_df(train).head())

# 3. Score it with GluonTS on the held-out week: 7 rolling windows of 24 h, as GIFT-Eval does.
dataset = PandasDataset.from_long_dataframe(df, item_id="item_id", timestamp="timestamp", target="target")
_, template = split(dataset, offset=-7 * 24)
test_data = template.generate_instances(prediction_length=24, windows=7, distance=24)
predictor = forecaster.model.create_predictor(prediction_length=24, context_length=512)
metrics = [MSE(), MASE(), MeanWeightedSumQuantileLoss(quantile_levels=[0.1 * i for i in range(1, 10)])]
print(evaluate_model(predictor, test_data=test_data, metrics=metrics, seasonality=24))

# 4. Keep it: safetensors + config with the base model's identity + a model card.
forecaster.save_pretrained("my-forecaster")  # later: msft.from_pretrained("my-forecaster")
