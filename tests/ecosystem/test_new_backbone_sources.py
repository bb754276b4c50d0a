"""msft.finetune on a local Chronos-2 or Moirai-2 folder (each library's own save_pretrained): the one
backbone lookup finds the family from the folder alone."""

import numpy as np
import pandas as pd
import pytest

import msft


def _frame(length=600):
    t = pd.date_range("2024-01-01", periods=length, freq="h")
    values = np.sin(2 * np.pi * np.arange(length) / 24) + 0.1 * np.random.default_rng(0).standard_normal(length)
    return pd.DataFrame({"item_id": "a", "timestamp": t, "target": values})


def _chronos2_folder(path):
    pytest.importorskip("chronos")
    from chronos import Chronos2Pipeline

    from msft_backbones.chronos2 import Chronos2Spec

    Chronos2Pipeline(Chronos2Spec.tiny().backbone).save_pretrained(path)
    return path


def _moirai2_folder(path):
    from msft_backbones.moirai2 import Moirai2Spec

    Moirai2Spec.tiny().backbone.save_pretrained(path)
    return path


@pytest.mark.parametrize("make, family", [(_chronos2_folder, "chronos2"), (_moirai2_folder, "moirai2")])
def test_finetune_takes_a_local_folder_of_the_new_families(tmp_path, make, family):
    folder = make(tmp_path / family)
    forecaster = msft.finetune(str(folder), _frame(), prediction_length=8, context_length=64, max_steps=2)
    assert forecaster.model.spec.name == family and forecaster.source == str(folder)
    frame = forecaster.predict_df(_frame(), quantile_levels=None)
    assert len(frame) == 8 and np.isfinite(frame["mean"]).all()
