"""Build a uni2ts `MoiraiModule` from the Hugging Face hub, a local directory or a bare config.

A MOIRAI checkpoint is a directory (or hub repository) holding ``config.json`` and
``model.safetensors``, as written by ``MoiraiModule.save_pretrained``. When the hub cannot be
reached, `load_moirai` fails within a few seconds (one metadata request with a short timeout and no
retries) with an error that says how to point it at a local directory instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from msft.hub import HubUnreachableError  # noqa: F401  (re-exported: loaders raise it)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: published MOIRAI checkpoints (any repository with the same layout works too).
KNOWN_CHECKPOINTS = tuple(
    f"Salesforce/moirai-{version}-R-{size}" for version in ("1.0", "1.1") for size in ("small", "base", "large")
)


def load_moirai(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = 3.0,
    endpoint: str | None = None,
):
    """A pretrained `MoiraiModule` from a hub id (``"Salesforce/moirai-1.1-R-small"``) or a directory.

    A directory must hold ``config.json`` and ``model.safetensors``. Hub files come from the local
    cache when present (so ``HF_HUB_OFFLINE=1`` works after a first download); otherwise one metadata
    request with ``timeout`` seconds decides whether the hub is reachable before downloading.
    """
    from msft.provenance import record_source

    local = _local_directory(source)
    directory = local or _download(str(source), revision, cache_dir, timeout, endpoint)
    from uni2ts.model.moirai import MoiraiModule  # after the hub check: an offline failure is fast

    module = MoiraiModule.from_pretrained(str(directory))
    module.eval()
    # hub snapshots live in .../snapshots/<commit>/: that commit is the revision actually loaded
    return record_source(module, str(source), revision if local else (revision or directory.name))


def moirai_from_config(config: dict[str, Any] | str | Path, seed: int | None = None):
    """A `MoiraiModule` with the geometry of ``config`` (a dict, a ``config.json`` or its directory) and
    random weights, e.g. ``moirai_from_config("../shared/reference/moirai-1.1-R-small")``, or the name of
    a geometry shipped in ``backbones/moirai/geometry`` (``"moirai-1.1-R-small"``)."""
    import torch
    from uni2ts.model.moirai import MoiraiModule
    from uni2ts.model.moirai.module import decode_distr_output

    values = _read_config(config)
    required = ("distr_output", "d_model", "num_layers", "patch_sizes", "max_seq_len", "attn_dropout_p", "dropout_p")
    missing = [key for key in required if key not in values]
    if missing:
        raise ValueError(
            f"MOIRAI config is missing {missing}: expected the keys of MoiraiModule.__init__ {list(required)}"
        )
    values = dict(values)
    values["distr_output"] = decode_distr_output(values["distr_output"])
    values["patch_sizes"] = tuple(values["patch_sizes"])
    if seed is not None:
        torch.manual_seed(seed)
    module = MoiraiModule(**values)
    module.eval()
    return module


# Published geometries shipped with msft (config.json only, no weights), usable by name.
GEOMETRY_DIR = Path(__file__).resolve().parent / "geometry"
#: msft's embedded pretrained MOIRAI (config.json, model.safetensors, README.md model card).
TINY_MOIRAI_DIR = Path(__file__).resolve().parent / "tiny_moirai"


def load_tiny_moirai():
    """The embedded tiny MOIRAI (pretrained on synthetic series only) as a `MoiraiModule` in eval mode.

    It is an ordinary MOIRAI checkpoint directory, loaded by `load_moirai` like any other; the model
    card (``TINY_MOIRAI_DIR / "README.md"``) has its recipe and zero-shot numbers.
    """
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (TINY_MOIRAI_DIR / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{TINY_MOIRAI_DIR} lacks {missing}: the installation is incomplete")
    from msft.provenance import record_source

    return record_source(load_moirai(TINY_MOIRAI_DIR), "tiny_moirai")


def _read_config(config: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(config, dict):
        return config
    bundled = GEOMETRY_DIR / f"{config}.json"
    path = bundled if isinstance(config, str) and bundled.is_file() else Path(config)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a MOIRAI config.json or a directory holding one")
    return json.loads(path.read_text())


def _local_directory(source: str | Path) -> Path | None:
    path = Path(source).expanduser()
    if not path.exists():
        if isinstance(source, Path) or str(source).startswith((".", "/", "~")):
            raise FileNotFoundError(
                f"{path} does not exist: expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE}"
            )
        return None
    if not path.is_dir():
        raise ValueError(
            f"source={str(source)!r} is a file: expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} has no {missing}: expected a MOIRAI checkpoint ({CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    return path


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    timeout: float,
    endpoint: str | None,
    what: str = "MOIRAI checkpoint",
    hint: str = (
        f"pass that directory instead: load_moirai('./{{folder}}') (it must hold {CONFIG_FILE} and {WEIGHTS_FILE}). "
        "For random weights use moirai_from_config(config)."
    ),
) -> Path:
    """The cached snapshot of ``repo_id``, else a download after one quick reachability check
    (`msft.hub.check_hub`: offline and uncached it fails in well under 2 s, naming ``what``)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from msft.hub import check_hub

    common = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir)
    try:  # a cached checkpoint needs no network at all
        paths = [hf_hub_download(filename=f, local_files_only=True, **common) for f in (CONFIG_FILE, WEIGHTS_FILE)]
        return Path(paths[0]).parent
    except LocalEntryNotFoundError:
        pass
    check_hub(
        repo_id,
        WEIGHTS_FILE,
        what=what,
        revision=revision,
        timeout=timeout,
        endpoint=endpoint,
        cache_dir=cache_dir,
        hint=hint,
    )
    logger.info("downloading %s from the Hugging Face hub", repo_id)
    paths = [
        hf_hub_download(filename=f, etag_timeout=timeout, endpoint=endpoint, **common)
        for f in (CONFIG_FILE, WEIGHTS_FILE)
    ]
    return Path(paths[0]).parent


#: the name `load_source` gives the embedded checkpoint
EMBEDDED_NAME = "tiny_moirai"


def is_moirai_source(source: str) -> bool:
    """Whether ``source`` is a MOIRAI 1.x checkpoint: the embedded name, a directory whose
    config.json has MOIRAI 1.x keys, or a hub id naming MOIRAI (not Moirai-2 / Moirai-MoE, which are
    other families)."""
    if source == EMBEDDED_NAME:
        return True
    path = Path(source).expanduser()
    if path.is_dir():
        config = path / CONFIG_FILE
        values = json.loads(config.read_text()) if config.is_file() else {}
        return "distr_output" in values and "patch_sizes" in values
    lowered = source.lower()
    other = ("moirai-2", "moirai2", "moirai-moe", "moirai_moe")
    return source.count("/") == 1 and "moirai" in lowered and not any(o in lowered for o in other)


def load_source(source: str | None = None, *, config: Any = None, seed: int = 0, **hub: Any):
    """`MoiraiSpec.load`: the embedded checkpoint (``"tiny_moirai"``), a pretrained one from a hub id
    or directory (``hub``: `load_moirai`'s options), or random weights of geometry ``config``."""
    if (source is None) == (config is None):
        raise ValueError(f"moirai: give exactly one of source={source!r} (pretrained) or config={config!r} (random)")
    if source == EMBEDDED_NAME:
        return load_tiny_moirai()
    return load_moirai(source, **hub) if source is not None else moirai_from_config(config, seed=seed)
