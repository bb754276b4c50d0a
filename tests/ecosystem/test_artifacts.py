"""Verified artifacts: every file a saved directory lists is checked against its SHA-256, and a damaged,
missing or unparseable file (or a missing path / unknown hub id) raises msft's own error naming it."""

import json
import logging
import shutil

import numpy as np
import pytest

import msft
from msft.calibration import ConformalCalibration
from msft.hub import FILES_KEY, ArtifactError

from .conftest import long_frame

H = 8
FAST = dict(context_length=64, batch_size=16, max_epochs=1, progress=False)


def _toy():
    """The toy_tiny backbone config's module."""
    return msft.registry.load_backbone(
        family="toy", patch_size=8, d_model=16, num_layers=1, num_heads=2, mlp_ratio=2, pretrain_steps=0, seed=0
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A LoRA forecaster directory (every file kind: forecaster, msft and peft configs and weights) and
    a calibrated model directory (adds calibration.json)."""
    root = tmp_path_factory.mktemp("artifacts")
    forecaster = msft.finetune("toy_tiny", long_frame(), H, method="lora", max_steps=2, **FAST)
    forecaster.save_pretrained(root / "forecaster")
    model = msft.wrap(_toy(), scales=[1, 2])
    model.calibration = ConformalCalibration(levels=(0.1, 0.9), corrections=((-0.1,), (0.2,)), per_step=False)
    model.save_pretrained(root / "model")
    return root, forecaster


def _copy(saved, tmp_path, kind):
    target = tmp_path / kind
    shutil.copytree(saved[0] / kind, target)
    return target


FORECASTER_FILES = [
    "forecaster.json",
    "msft_config.json",
    "trainable.safetensors",
    "adapter.safetensors",
    "adapter_model.safetensors",
    "adapter_config.json",
]


def test_save_pretrained_records_every_file_hash(saved):
    root, _ = saved
    listed = json.loads((root / "forecaster" / "forecaster.json").read_text())[FILES_KEY]
    assert set(listed) == {
        "msft_config.json",
        "trainable.safetensors",
        "adapter_model.safetensors",
        "adapter_config.json",
    }
    meta = json.loads((root / "model" / "msft_config.json").read_text())[FILES_KEY]
    assert set(meta) == {"adapter.safetensors", "calibration.json"}
    assert all(len(r["sha256"]) == 64 and r["bytes"] > 0 for r in [*listed.values(), *meta.values()])


def test_an_intact_directory_round_trips(saved):
    root, forecaster = saved
    loaded = msft.from_pretrained(root / "forecaster")
    data = long_frame()
    np.testing.assert_array_equal(
        loaded.predict_df(data, quantile_levels=None)["mean"], forecaster.predict_df(data, quantile_levels=None)["mean"]
    )
    model = msft.load_adapter(_toy(), root / "model")
    assert model.calibration is not None and model.calibration.levels == (0.1, 0.9)


def _truncate(file):
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_last_byte(file):
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF  # the payload's last byte (safetensors) or the closing brace (JSON)
    file.write_bytes(bytes(data))


DAMAGE = {
    "missing": (lambda f: f.unlink(), "is missing"),
    "truncated": (_truncate, "is truncated|is not JSON|not a readable safetensors"),
    "corrupted": (_flip_last_byte, "is corrupted|is not JSON"),
}


@pytest.mark.parametrize("name", FORECASTER_FILES)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damaged_forecaster_file_is_named(saved, tmp_path, name, damage):
    directory = _copy(saved, tmp_path, "forecaster")
    spoil, message = DAMAGE[damage]
    spoil(directory / name)
    with pytest.raises(ArtifactError, match=message) as raised:
        msft.from_pretrained(directory)
    assert name in str(raised.value)


@pytest.mark.parametrize("name", ["msft_config.json", "adapter.safetensors", "calibration.json"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damaged_model_file_is_named_by_load_adapter(saved, tmp_path, name, damage):
    directory = _copy(saved, tmp_path, "model")
    spoil, message = DAMAGE[damage]
    spoil(directory / name)
    backbone = _toy()
    with pytest.raises(ArtifactError, match=message) as raised:
        msft.load_adapter(backbone, directory)
    assert name in str(raised.value)


def test_random_bytes_inside_a_weight_payload_are_caught(saved, tmp_path):
    """The same size and a valid header: only the hash tells (this loaded silently before)."""
    directory = _copy(saved, tmp_path, "forecaster")
    file = directory / "trainable.safetensors"
    data = bytearray(file.read_bytes())
    data[-16:] = np.random.default_rng(0).integers(0, 256, 16, dtype=np.uint8).tobytes()
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="trainable.safetensors is corrupted: its SHA-256 differs"):
        msft.from_pretrained(directory)


def test_a_directory_saved_without_hashes_still_loads_and_says_so(saved, tmp_path, caplog):
    directory = _copy(saved, tmp_path, "forecaster")
    for name in ("forecaster.json", "msft_config.json"):
        values = json.loads((directory / name).read_text())
        values.pop(FILES_KEY)
        (directory / name).write_text(json.dumps(values))
    with caplog.at_level(logging.INFO, logger="msft.hub"):
        loaded = msft.from_pretrained(directory)
    assert isinstance(loaded, msft.Forecaster)
    assert "records no file hashes" in caplog.text and "not verified" in caplog.text


def test_a_missing_path_or_an_unknown_hub_id_gives_msfts_error(tmp_path, monkeypatch):
    with pytest.raises(ArtifactError, match="does not exist"):
        msft.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="msft_config.json is missing"):
        msft.from_pretrained(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="neither a local directory nor in the hub cache") as raised:
        msft.from_pretrained("does/not-exist")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
