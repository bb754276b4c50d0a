"""Data-directory resolution, missing and corrupt files, verified atomic downloads (no network: file:// URLs)."""

import hashlib
import shutil
from pathlib import Path

import pytest

from msft.data import ChecksumError, DataNotFoundError, files, load_lsf, resolve_data_dir
from msft.data.registry import DatasetSpec


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    monkeypatch.setattr(files, "_VERIFIED", set())


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("MSFT_DATA_DIR", raising=False)
    monkeypatch.setenv("MSFT_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "data"
    monkeypatch.setenv("MSFT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_missing_file_names_path_and_download_command(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_lsf("ETTm1", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "ETT-small" / "ETTm1.csv") in message
    assert "python -m msft.data.download ETTm1" in message
    assert "raw.githubusercontent.com/zhouhaoyi/ETDataset" in message
    assert isinstance(info.value, FileNotFoundError)


def test_etth1_falls_back_to_the_bundled_copy(tmp_path):
    from msft.data.files import BUNDLED_DIR

    frame = load_lsf("ETTh1", data_dir=tmp_path)  # tmp_path holds nothing
    assert (BUNDLED_DIR / "LICENSE-ETTh1").is_file()
    assert frame.shape == (17420, 8) and str(frame["date"].iloc[0]).startswith("2016-07-01 00:00")


def test_missing_file_without_url_names_the_source(tmp_path):
    with pytest.raises(DataNotFoundError, match="drive.google.com"):
        load_lsf("Electricity", data_dir=tmp_path)


def _copy(data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ETT-small" / "ETTh1.csv"
    target.parent.mkdir(parents=True)
    shutil.copyfile(data_dir / "ETT-small" / "ETTh1.csv", target)
    return target


def test_truncated_file_is_rejected(data_dir, tmp_path):
    target = _copy(data_dir, tmp_path)
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(ChecksumError, match="truncated"):
        load_lsf("ETTh1", data_dir=tmp_path)


def test_corrupt_file_of_right_size_is_rejected(data_dir, tmp_path):
    target = _copy(data_dir, tmp_path)
    content = bytearray(target.read_bytes())
    content[5000] = ord("9") if content[5000] != ord("9") else ord("8")
    target.write_bytes(bytes(content))
    with pytest.raises(ChecksumError, match="sha256"):
        load_lsf("ETTh1", data_dir=tmp_path)
    assert len(load_lsf("ETTh1", data_dir=tmp_path, verify=False)) == 17420  # explicit opt-out only


def test_download_verifies_then_renames(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MSFT_DATA_MIRROR", data_dir.as_uri())
    frame = load_lsf("ETTh2", data_dir=tmp_path / "cache", download=True)
    assert len(frame) == 17420
    assert (tmp_path / "cache" / "ETT-small" / "ETTh2.csv").exists()
    assert not list((tmp_path / "cache" / "ETT-small").glob("*.part"))


def test_corrupt_download_is_never_kept(tmp_path, monkeypatch):
    source = tmp_path / "mirror" / "x" / "data.csv"
    source.parent.mkdir(parents=True)
    source.write_text("date,a\n2020-01-01 00:00:00,1\n")
    good = hashlib.sha256(b"something else").hexdigest()
    spec = DatasetSpec("X", "x/data.csv", "ratio", "h", 1, sha256=good)
    monkeypatch.setenv("MSFT_DATA_MIRROR", (tmp_path / "mirror").as_uri())
    with pytest.raises(ChecksumError):
        files.download(spec, tmp_path / "cache")
    assert list((tmp_path / "cache" / "x").iterdir()) == []


def test_unverifiable_file_logs_a_warning(tmp_path, caplog):
    path = tmp_path / "f.csv"
    path.write_text("x")
    with caplog.at_level("WARNING"):
        files.verify_file(path, None)
    assert "no published checksum" in caplog.text
