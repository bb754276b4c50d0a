"""Hugging Face hub artifacts of an `MSFTModel`: ``save_pretrained`` / ``push_to_hub`` and the model card.

A saved directory holds ``adapter.safetensors`` (msft's parameters), ``msft_config.json`` (the msft
options and the base model's identity: source, revision and weight fingerprint, see
`msft.provenance`), ``calibration.json`` when the model is calibrated (`msft.calibration`) and a
generated ``README.md`` model card. It is what `msft.load_adapter(backbone,
dir)` reads; `msft.from_pretrained(dir_or_hub_id)` also loads the recorded base model.
huggingface_hub is imported only by `push_to_hub` and `download`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

CARD = "README.md"


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


def download(repo_id: str, revision: str | None = None) -> Path:
    """A local copy of a hub repository holding a saved adapter (the cache when present)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise ConnectionError(
                f"{repo_id!r} is neither a local directory nor in the hub cache, and HF_HUB_OFFLINE "
                "is set; download it where the hub is reachable or pass a directory"
            ) from None
    return Path(snapshot_download(repo_id, revision=revision))


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
