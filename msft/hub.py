"""Hugging Face hub artifacts of an `MSFTModel`: ``save_pretrained`` / ``push_to_hub`` and the model card.

A saved directory holds ``adapter.safetensors`` (msft's parameters), ``msft_config.json`` (the msft
options and the base model's identity: source, revision and weight fingerprint, see
`msft.provenance`), ``calibration.json`` when the model is calibrated (`msft.calibration`) and a
generated ``README.md`` model card. It is what `msft.load_adapter(backbone,
dir)` reads; `msft.from_pretrained(dir_or_hub_id)` also loads the recorded base model.
huggingface_hub is imported only by `push_to_hub` and `download`.

**Verified files.** A config lists the files written next to it with their size and SHA-256
(`file_records`, key ``"files"``); a loader checks every listed file before reading it
(`verify_files`) and reads configs through `read_json`, so a missing, truncated, corrupted or
unparseable file raises one `ArtifactError` naming the file and what is wrong. A directory saved
before hashes were recorded still loads, with a log line saying it was not verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

CARD = "README.md"
FILES_KEY = "files"  # a config's record of the files saved beside it: {name: {"bytes": n, "sha256": hex}}

logger = logging.getLogger(__name__)


class ArtifactError(ValueError):
    """A saved msft artifact (directory or hub repository) that is missing, incomplete or damaged."""


class MissingArtifactError(ArtifactError, FileNotFoundError):
    """A file or directory of a saved artifact that does not exist (also a `FileNotFoundError`)."""


def sha256(file: str | Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_records(directory: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes", "sha256"}}`` of the files ``names`` of ``directory`` (those that exist)."""
    directory = Path(directory)
    return {
        name: {"bytes": (directory / name).stat().st_size, "sha256": sha256(directory / name)}
        for name in names
        if (directory / name).is_file()
    }


def verify_files(directory: str | Path, records: dict[str, Any] | None, config_name: str) -> None:
    """Check every file that ``config_name`` lists against its recorded size and SHA-256.

    ``records`` None (a directory saved before msft recorded hashes) is accepted with a log line."""
    directory = Path(directory)
    if records is None:
        logger.info(
            "%s: %s records no file hashes (saved by an older msft): files not verified", directory, config_name
        )
        return
    if not isinstance(records, dict):
        raise ArtifactError(f"{directory / config_name}: {FILES_KEY!r} is {records!r}, expected a mapping of files")
    for name, record in records.items():
        file = directory / name
        if not file.is_file():
            raise MissingArtifactError(f"{file} is missing: {config_name} lists it as part of this artifact")
        size, expected = file.stat().st_size, record.get("bytes")
        if expected is not None and size < expected:
            raise ArtifactError(f"{file} is truncated: {size} bytes, {config_name} records {expected}")
        if expected is not None and size > expected:
            raise ArtifactError(f"{file} is corrupted: {size} bytes, {config_name} records {expected}")
        if sha256(file) != record.get("sha256"):
            raise ArtifactError(
                f"{file} is corrupted: its SHA-256 differs from the one {config_name} records "
                "(changed after it was saved)"
            )


def read_json(file: str | Path) -> Any:
    """A saved JSON file, or an `ArtifactError` naming it when it is missing or not JSON."""
    file = Path(file)
    if not file.is_file():
        raise MissingArtifactError(f"{file} is missing: expected a directory written by save_pretrained")
    try:
        return json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{file} is not JSON ({err}): the file is corrupted or was not written by msft") from None


def read_safetensors(file: str | Path) -> dict[str, Any]:
    """`safetensors.torch.load_file`, with an `ArtifactError` naming the file when it cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise MissingArtifactError(f"{file} is missing: expected a directory written by save_pretrained")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(f"{file} is not a readable safetensors file ({err}): corrupted or truncated") from None


def save_pretrained(model: Any, path: str | Path, **card: Any) -> Path:
    """Write the adapter, its config and a model card into directory ``path``."""
    path = model.save_adapter(path)
    meta = json.loads((path / "msft_config.json").read_text())
    calibration = getattr(model, "calibration", None)
    if calibration is not None:
        card.setdefault("calibration", calibration.to_dict())
    (path / CARD).write_text(model_card(meta, **card))
    return path


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload msft adapter",
    **card: Any,
) -> str:
    """Save into a temporary directory and upload it to ``repo_id``; returns the commit URL."""
    with tempfile.TemporaryDirectory() as tmp:
        save = model.save_pretrained
        save(tmp, **card)
        return upload_folder(tmp, repo_id, token=token, private=private, commit_message=commit_message)


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload msft adapter",
) -> str:
    """`huggingface_hub.HfApi.create_repo` + ``upload_folder``, failing fast and clearly offline or without a token."""
    from huggingface_hub import HfApi, constants, get_token

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id={repo_id!r}: expected 'user_or_org/name'")
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(
            f"push_to_hub({repo_id!r}): HF_HUB_OFFLINE is set; unset it on a machine that "
            "reaches huggingface.co, or upload the saved directory later with `hf upload`"
        )
    token = token or get_token()
    if token is None:
        raise ValueError(
            f"push_to_hub({repo_id!r}): no Hugging Face token; run `hf auth login`, set HF_TOKEN, or pass token="
        )
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    except OSError as err:  # connection refused, DNS failure, timeout (requests/httpx errors are OSErrors)
        raise ConnectionError(
            f"push_to_hub({repo_id!r}): cannot reach the Hugging Face hub ({type(err).__name__}: "
            f"{err}); the directory was not uploaded"
        ) from err
    return str(getattr(info, "commit_url", info))


class HubUnreachableError(ConnectionError):
    """A hub repository that is not in the local cache while the hub cannot be reached (or
    ``HF_HUB_OFFLINE`` is set): raised within seconds, before any heavy import or retried download."""


def download(repo_id: str, revision: str | None = None, timeout: float = 3.0) -> Path:
    """A local copy of a hub repository holding a saved adapter (the cache when present).

    Not cached: `HubUnreachableError` at once when ``HF_HUB_OFFLINE`` is set, else after one metadata
    request of at most ``timeout`` seconds when the hub does not answer (snapshot_download's own
    retries take ~20 s); `ArtifactError` for a repository the hub does not have or does not show."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise HubUnreachableError(
                f"{repo_id!r} is neither a local directory nor in the hub cache, and HF_HUB_OFFLINE "
                "is set; download it where the hub is reachable or pass a directory"
            ) from None
    try:  # one quick request decides whether the hub answers and has the repository
        HfApi().model_info(repo_id, revision=revision, timeout=timeout)
    except HfHubHTTPError as err:  # not found, gated, private without a token
        raise ArtifactError(f"{repo_id!r} is neither a local directory nor a readable hub repository ({err})") from None
    except Exception as err:  # connection refused, DNS failure, timeout
        raise HubUnreachableError(
            f"{repo_id!r} is neither a local directory nor in the hub cache, and the hub cannot be reached "
            f"({type(err).__name__}: {err})"
        ) from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, etag_timeout=timeout))
    except LocalEntryNotFoundError as err:  # the hub stopped answering mid-download
        raise HubUnreachableError(
            f"{repo_id!r} is neither a local directory nor in the hub cache, and the hub cannot be reached ({err})"
        ) from None
    except HfHubHTTPError as err:
        raise ArtifactError(f"{repo_id!r} is neither a local directory nor a readable hub repository ({err})") from None


def check_hub(
    repo_id: str,
    filename: str = "config.json",
    *,
    what: str = "checkpoint",
    revision: str | None = None,
    timeout: float = 3.0,
    endpoint: str | None = None,
    cache_dir: str | None = None,
    hint: str = "pass that folder instead.",
) -> None:
    """Return when ``filename`` of the hub repository ``repo_id`` is cached or the hub answers for it
    within ``timeout`` seconds; else raise `HubUnreachableError` naming the repository (``what``: what
    it holds, e.g. "MOMENT checkpoint") and how to load it from a local folder. A backbone loader calls
    this before importing its library, so an offline load fails in well under 2 s."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=True)
        return
    except LocalEntryNotFoundError:
        pass
    reason = "HF_HUB_OFFLINE is set and it is not in the local cache" if constants.HF_HUB_OFFLINE else None
    if reason is None:
        try:
            url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
            get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
            return
        except Exception as err:  # connection refused, DNS failure, timeout, 404, gated repo, ...
            reason = f"{type(err).__name__}: {err}"
    folder = repo_id.split("/")[-1]
    raise HubUnreachableError(
        f"cannot load {what} {repo_id!r} from the Hugging Face hub ({reason}). Download it where the hub is "
        f"reachable, e.g. `hf download {repo_id} --local-dir ./{folder}`, and {hint.format(folder=folder)}"
    )


def model_card(
    meta: dict[str, Any],
    *,
    data: str | None = None,
    metrics: dict[str, float] | None = None,
    command: str | None = None,
    method: str = "msft",
    title: str | None = None,
    calibration: dict[str, Any] | None = None,
) -> str:
    """A model card (YAML front matter + markdown) from a saved config and what the caller knows."""
    base = meta.get("base") or {}
    config = meta.get("config", {})
    source = base.get("source")
    hub_base = source if isinstance(source, str) and source.count("/") == 1 and not os.path.exists(source) else None
    front = [
        "---",
        "library_name: msft",
        "pipeline_tag: time-series-forecasting",
        "tags:",
        "- time-series",
        "- msft",
        f"- {meta.get('backbone', 'backbone')}",
    ]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front.append("---")
    lines = [
        *front,
        "",
        f"# {title or 'msft adapter'}",
        "",
        f"A {method} adapter made with msft (multi-scale finetuning, Qiao et al., "
        "NeurIPS 2025) for the base model below. It holds only the finetuned parameters; load it with "
        "`msft.from_pretrained(<this directory or repo>)`, which loads the recorded base model too, or "
        "`msft.load_adapter(base_backbone, <directory>)`.",
        "",
        "## Base model",
        "",
        f"- backbone family: `{meta.get('backbone')}` (`{base.get('class', '?')}`)",
        f"- source: `{source or 'not recorded'}`"
        + (f" (revision `{base['revision']}`)" if base.get("revision") else ""),
        f"- weight fingerprint: `{base.get('fingerprint', 'not recorded')}`",
        "",
        "Loading onto a backbone with other weights raises an error unless `allow_base_mismatch=True`.",
        "",
        "## msft options",
        "",
        f"- scales: {config.get('scales')}",
        *(
            f"- {key}: {config[key]}"
            for key in ("horizon", "patch_size", "lora_rank", "quantile_levels")
            if config.get(key) is not None
        ),
    ]
    if calibration:
        lines += [
            "",
            "## Calibration",
            "",
            f"Conformal ({calibration.get('method')}): corrections for quantile levels {calibration.get('levels')}, "
            f"fitted on {calibration.get('windows')} validation windows"
            + (", one per horizon step" if calibration.get("per_step") else ", pooled over the horizon")
            + "; `predict_quantiles`, `predict_samples` and the GluonTS predictor apply them "
            "(`calibration.json`, msft.calibration).",
        ]
    if data:
        lines += ["", "## Data", "", data]
    if metrics:
        lines += [
            "",
            "## Metrics",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()),
        ]
    if command:
        lines += ["", "## How it was made", "", "```", command, "```"]
    return "\n".join(lines) + "\n"
