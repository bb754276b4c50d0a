"""The ``backbone`` config group: each yaml instantiates `msft.registry.load_backbone` with a
``family`` and that family's own `BackboneSpec.load` options, plus the ``wrap_options`` every method
on the backbone needs. Knowing how a backbone is built lives in its family's module (backbones/),
nowhere here: adding a family is one module plus one yaml file.
"""

from __future__ import annotations

from typing import Any

import torch


def build_backbone(cfg: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Instantiate a ``backbone`` config; return the module and its ``wrap_options`` (the `msft.wrap`
    options every method on this backbone needs, e.g. MOIRAI's ``patch_size``), which are not
    arguments of the loader."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    wrap_options = values.pop("wrap_options", None) or {}
    try:
        module = instantiate(values, _convert_="all")
    except InstantiationException as err:  # the loader's own message (bad option, hub unreachable), unwrapped
        if err.__cause__ is None:
            raise
        raise err.__cause__ from None
    return module, dict(wrap_options)


def backbone_config_names() -> list[str]:
    """The names of the ``backbone`` config group (``"tiny_moirai"``, ``"moirai_1.1_small"``, ...)."""
    import importlib.resources

    folder = importlib.resources.files("msft_runner.configs") / "backbone"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_backbone(
    backbone: Any, horizon: int, freq: Any, context_length: int
) -> tuple[torch.nn.Module, dict[str, Any], str | None]:
    """``(module, wrap_options, source)`` for a module, a backbone config name, or a hub id or local
    checkpoint directory of a registered family (`msft.registry.load_backbone`)."""
    import importlib.resources
    import os

    from omegaconf import OmegaConf

    from msft.provenance import SOURCE_ATTR, record_source
    from msft.registry import family_of

    if isinstance(backbone, torch.nn.Module):
        return backbone, {}, (getattr(backbone, SOURCE_ATTR, None) or {}).get("source")
    if not isinstance(backbone, (str, os.PathLike)):
        raise ValueError(f"backbone={backbone!r}: expected an nn.Module, a backbone name, a hub id or a directory")
    name = str(backbone)
    if name in backbone_config_names():
        file = importlib.resources.files("msft_runner.configs") / "backbone" / f"{name}.yaml"
        cfg = OmegaConf.create(
            {"data": {"horizon": horizon, "context_length": context_length}, "backbone": OmegaConf.load(str(file))}
        )
        module, wrap_options = build_backbone(cfg.backbone)
        record_source(module, name, (getattr(module, SOURCE_ATTR, None) or {}).get("revision"))
        return module, wrap_options, name
    try:
        spec = family_of(name)
    except ValueError as err:
        names = ", ".join(backbone_config_names())
        raise ValueError(f"backbone={name!r}: not a backbone name ({names}); {err}") from None
    options = spec.source_wrap_options(name, freq=freq.freqstr if freq is not None else None)
    return spec.load(name, horizon=horizon), options, name
