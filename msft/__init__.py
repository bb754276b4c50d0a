"""msft: multi-scale finetuning of pretrained time-series foundation models.

``import msft`` is cheap: it imports nothing heavy (not even torch) until a name is used.
The data, protocol and experiment subpackages (``msft.data``, ``msft.protocols``,
``msft_runner``) are imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "MSFTConfig": "msft.config",
    "MSFTModel": "msft.model",
    "wrap": "msft.model",
    "unwrap": "msft.model",
    "load_adapter": "msft.model",
    "BackboneSpec": "msft.registry",
    "ScaleTokens": "msft.registry",
    "register_backbone": "msft.registry",
    "registered_backbones": "msft.registry",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from msft.config import MSFTConfig
    from msft.model import MSFTModel, load_adapter, unwrap, wrap
    from msft.registry import BackboneSpec, ScaleTokens, register_backbone, registered_backbones


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'msft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
