"""`msft.finetune` on data frames, `Forecaster.predict_df` / `plot`, and hub-style artifacts with provenance."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import msft

from .conftest import long_frame

H = 8
FAST = dict(context_length=64, batch_size=16, max_epochs=1, progress=False)


@pytest.fixture(scope="module")
def toy_forecaster():
    return msft.finetune("toy_tiny", long_frame(), H, scales=[1, 2], max_steps=3, **FAST)


def test_finetune_trains_with_the_runner_and_predicts_a_long_frame(toy_forecaster):
    f = toy_forecaster
    assert isinstance(f, msft.Forecaster) and f.freq == "h" and f.training["steps"] == 3
    assert f.training["val_loss"] is not None and np.isfinite(f.training["val_loss"])
    out = f.predict_df(long_frame(), quantile_levels=None)
    assert list(out.columns) == ["item_id", "timestamp", "mean"] and len(out) == 3 * H
    first = out[out.item_id == "s0"]
    assert first.timestamp.iloc[0] == pd.Timestamp("2024-01-01") + pd.Timedelta(hours=160)
    assert (first.timestamp.diff().dropna() == pd.Timedelta(hours=1)).all()
    with pytest.raises(ValueError, match="point forecasts only; pass quantile_levels=None"):  # no quantile heads
        f.predict_df(long_frame())
    with pytest.raises(ValueError, match="trained on h"):
        f.predict_df(long_frame(freq="D"), quantile_levels=None)


def test_the_embedded_moirai_gives_sorted_quantile_columns_and_a_plot(tmp_path):
    data = long_frame(items=2, length=200)
    f = msft.finetune(
        "tiny_moirai", data, H, scales=[1, 2], max_steps=1, num_samples=20, **{**FAST, "context_length": 128}
    )
    out = f.predict_df(data)
    levels = [str(round(0.1 * i, 1)) for i in range(1, 10)]
    assert list(out.columns) == ["item_id", "timestamp", "mean", *levels]
    assert (np.diff(out[levels].to_numpy(), axis=1) >= 0).all()  # quantiles never cross
    history, truth = data[data.timestamp < "2024-01-08"], data[data.timestamp >= "2024-01-08"]
    fig = f.plot(history, truth)
    assert len(fig.axes) == 2 and {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == {
        "context",
        "truth",
        "mean",
        "80%",
    }


def test_a_point_backbone_with_quantile_heads_fills_the_quantile_columns(tmp_path):
    f = msft.finetune("toy_tiny", long_frame(items=2), H, quantile_levels=[0.1, 0.5, 0.9], max_steps=2, **FAST)
    out = f.predict_df(long_frame(items=2), quantile_levels=(0.1, 0.9))
    assert list(out.columns) == ["item_id", "timestamp", "mean", "0.1", "0.9"] and (out["0.9"] >= out["0.1"]).all()
    loaded = msft.from_pretrained(f.save_pretrained(tmp_path / "q"))
    pd.testing.assert_frame_equal(loaded.predict_df(long_frame(items=2), quantile_levels=(0.1, 0.9)), out)


def test_save_pretrained_and_from_pretrained_round_trip(toy_forecaster, tmp_path):
    path = toy_forecaster.save_pretrained(tmp_path / "adapter")
    names = {p.name for p in path.iterdir()}
    assert {"adapter.safetensors", "msft_config.json", "forecaster.json", "README.md"} <= names
    base = json.loads((path / "msft_config.json").read_text())["base"]
    assert base["source"] == "toy_tiny" and base["fingerprint"].startswith("sha256:")
    card = (path / "README.md").read_text()
    assert "toy_tiny" in card and "scales: [1, 2]" in card and "msft.finetune(" in card
    loaded = msft.from_pretrained(path)  # loads the recorded base by its name
    expected = toy_forecaster.predict_df(long_frame(), quantile_levels=None)
    pd.testing.assert_frame_equal(loaded.predict_df(long_frame(), quantile_levels=None), expected)
    model_dir = toy_forecaster.model.save_pretrained(tmp_path / "model")  # the MSFTModel alone
    assert isinstance(msft.from_pretrained(model_dir), msft.MSFTModel)


def test_a_different_base_is_refused_unless_overridden(toy_forecaster, tmp_path):
    from msft_backbones.toy import ToyForecaster

    path = toy_forecaster.save_pretrained(tmp_path / "adapter")
    torch.manual_seed(123)
    other = ToyForecaster(patch_size=8, d_model=16, num_layers=1, num_heads=2)  # same geometry, other weights
    with pytest.raises(ValueError, match="toy_tiny.*weights differ.*allow_base_mismatch=True"):
        msft.from_pretrained(path, backbone=other)
    assert not hasattr(other, "_msft_wrapped")
    adapter = toy_forecaster.model.save_adapter(tmp_path / "plain")  # the core's load_adapter checks it too
    with pytest.raises(ValueError, match="weights differ"):
        msft.load_adapter(other, adapter)
    assert msft.from_pretrained(path, backbone=other, allow_base_mismatch=True).model.backbone is other


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_lora_baselines_save_in_peft_format(method, tmp_path):
    import peft
    from safetensors.torch import load_file

    from msft_backbones.toy import ToyForecaster

    f = msft.finetune("toy_tiny", long_frame(), H, method=method, max_steps=2, **FAST)
    path = f.save_pretrained(tmp_path / method)
    config = peft.PeftConfig.from_pretrained(str(path))
    assert config.peft_type.value == method.upper() and config.base_model_name_or_path == "toy_tiny"
    saved = load_file(str(path / "adapter_model.safetensors"))
    assert saved and all(k.startswith("base_model.model.") and "lora_" in k and ".default." not in k for k in saved)
    torch.manual_seed(0)
    base = ToyForecaster(patch_size=8, d_model=16, num_layers=1, num_heads=2)
    peft_model = peft.PeftModel.from_pretrained(base, str(path)).eval()  # a peft user's path, no msft
    past = torch.as_tensor(long_frame().target.to_numpy()[-64:], dtype=torch.float32)[None]
    with torch.no_grad():
        np.testing.assert_allclose(
            peft_model(past, H).numpy(), f.model.predict(past[..., None], H)[..., 0].numpy(), rtol=1e-5, atol=1e-5
        )
    reloaded = msft.from_pretrained(path)
    pd.testing.assert_frame_equal(
        reloaded.predict_df(long_frame(), quantile_levels=None), f.predict_df(long_frame(), quantile_levels=None)
    )


def test_push_to_hub_fails_fast_and_clearly_offline(toy_forecaster, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        toy_forecaster.push_to_hub("someone/msft-toy")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="no Hugging Face token"):
        toy_forecaster.model.push_to_hub("someone/msft-toy")
    with pytest.raises(ValueError, match="repo_id"):
        toy_forecaster.push_to_hub("no-owner")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backbone="no_such_model"), "not a backbone name"),
        (dict(method="bogus"), "method='bogus'"),
        (dict(prediction_length=100), "too short for prediction_length=100"),
        (dict(learning_rate=1e-3), "unknown option 'learning_rate'"),
        (dict(context_length=8), "context_length=8"),
    ],
)
def test_finetune_errors(kwargs, message):
    args = dict(backbone="toy_tiny", train_data=long_frame(items=1, length=120), prediction_length=H)
    args.update(kwargs)
    options = {**FAST, **({"context_length": kwargs["context_length"]} if "context_length" in kwargs else {})}
    args.pop("context_length", None)
    with pytest.raises(ValueError, match=message):
        msft.finetune(
            args.pop("backbone"), args.pop("train_data"), args.pop("prediction_length"), max_steps=1, **args, **options
        )


def test_threads_apply_to_the_call_only_and_are_checked():
    before = torch.get_num_threads()
    seen = []
    original = torch.set_num_threads
    try:
        torch.set_num_threads = lambda n: (seen.append(n), original(n))[1]
        msft.finetune("toy_tiny", long_frame(items=2), H, method="lora", max_steps=2, threads=1, **FAST)
    finally:
        torch.set_num_threads = original
    assert seen[0] == 1 and seen[-1] == before and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0: expected a positive integer"):
        msft.finetune("toy_tiny", long_frame(items=2), H, threads=0)
