"""Locating, verifying and downloading data files.

Resolution order of the data directory: explicit ``data_dir`` argument → ``MSFT_DATA_DIR`` →
``$MSFT_CACHE_DIR/data`` (default ``~/.cache/msft/data``); ETTh1, bundled with msft, is the fallback
when the resolved directory does not hold it. Verification is sha256 against the
published checksums; a file that does not match is never used. Downloads go to a temporary file in
the target directory and are renamed into place only after verification.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

from msft.data.registry import DatasetSpec

logger = logging.getLogger(__name__)

# Datasets shipped inside the package (licence in bundled/LICENSE-ETTh1), the fallback when no data
# directory holds them, so the default experiment runs offline.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED = ("ETTh1",)

_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already checked this process


class DataNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message names the path looked at and how to get the file."""


class ChecksumError(OSError):
    """A dataset file exists but its size or sha256 differs from the published one."""


def cache_root() -> Path:
    return Path(os.environ.get("MSFT_CACHE_DIR", Path.home() / ".cache" / "msft")).expanduser()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$MSFT_DATA_DIR``, else ``<cache root>/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MSFT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return cache_root() / "data"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str | None, size: int | None = None) -> None:
    """Raise ChecksumError if ``path`` does not have the expected size / sha256.

    With no known checksum there is nothing to verify: log a warning, because the file is then used
    on trust. Results are memoised per (path, size, mtime) so repeated loads hash once.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    if sha256 is None:
        logger.warning("no published checksum for %s; using it unverified", path)
        _VERIFIED.add(key)
        return
    if size is not None and stat.st_size != size:
        raise ChecksumError(
            f"{path} has {stat.st_size} bytes, expected {size}: the file is truncated "
            "or not the published one; delete it and download it again"
        )
    actual = sha256_of(path)
    if actual != sha256:
        raise ChecksumError(
            f"{path} has sha256 {actual}, expected {sha256}: the file is corrupt or "
            "not the published one; delete it and download it again"
        )
    _VERIFIED.add(key)


def how_to_get(spec: DatasetSpec) -> str:
    if spec.url is not None:
        return f"run `python -m msft.data.download {spec.name}` or fetch {spec.url}"
    return (
        f"download {spec.relpath} from {spec.source} (or set MSFT_DATA_MIRROR to a base URL serving "
        f"it and run `python -m msft.data.download {spec.name}`)"
    )


def download_url(spec: DatasetSpec) -> str | None:
    mirror = os.environ.get("MSFT_DATA_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + spec.relpath
    return spec.url


def download(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Path:
    """Download ``spec`` into the data directory (if not already there and valid); return its path."""
    target = resolve_data_dir(data_dir) / spec.relpath
    if target.exists():
        verify_file(target, spec.sha256, spec.size)
        return target
    url = download_url(spec)
    if url is None:
        raise DataNotFoundError(
            f"{target} does not exist and {spec.name} has no direct download URL: " + how_to_get(spec)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        logger.info("downloading %s from %s", spec.name, url)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                out.write(block)
        verify_file(tmp, spec.sha256, spec.size)
        os.replace(tmp, target)  # atomic within one filesystem
    finally:
        tmp.unlink(missing_ok=True)
    return target


def locate(
    spec: DatasetSpec, data_dir: str | os.PathLike | None = None, download_missing: bool = False, verify: bool = True
) -> Path:
    """Path of a verified local copy of ``spec``; DataNotFoundError if absent (and not downloaded)."""
    path = resolve_data_dir(data_dir) / spec.relpath
    if not path.exists() and (BUNDLED_DIR / Path(spec.relpath).name).exists() and spec.name in BUNDLED:
        path = BUNDLED_DIR / Path(spec.relpath).name  # shipped with msft (see bundled/LICENSE-ETTh1)
    if not path.exists():
        if download_missing:
            return download(spec, data_dir)
        raise DataNotFoundError(
            f"{spec.name}: no file at {path}; {how_to_get(spec)} "
            "(or pass download=True, or point data_dir / MSFT_DATA_DIR at a directory "
            f"holding {spec.relpath})"
        )
    if verify:
        verify_file(path, spec.sha256, spec.size)
    return path
