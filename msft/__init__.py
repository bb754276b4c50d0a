"""msft: multi-scale finetuning of pretrained time-series foundation models.

``import msft`` is cheap: it imports nothing heavy (not even torch) until a name is used.
The data, protocol and experiment subpackages (``msft.data``, ``msft.protocols``,
``msft_runner``) are imported only when asked for.

Three names come from the runner package ``msft_runner`` (installed with the ``full`` extra), resolved
only when used: ``finetune``, ``Forecaster`` and ``from_pretrained`` (`RUNNER_EXPORTS`, the core's one
declared door to the runner). They train with the runner's Lightning loop, which the core never
imports; every other module of the core imports neither the runner nor a backbone
(tests/core/test_packaging.py reads both the imports and these strings).
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
    "load_backbone": "msft.registry",
}
#: the one-call API lives in the runner (it trains with Lightning), resolved only when used
RUNNER_EXPORTS = {
    "finetune": "msft_runner.api",
    "Forecaster": "msft_runner.forecaster",
    "from_pretrained": "msft_runner.forecaster",
}
_EXPORTS.update(RUNNER_EXPORTS)

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from msft.config import MSFTConfig as MSFTConfig
    from msft.model import MSFTModel as MSFTModel
    from msft.model import load_adapter as load_adapter
    from msft.model import unwrap as unwrap
    from msft.model import wrap as wrap
    from msft.registry import BackboneSpec as BackboneSpec
    from msft.registry import ScaleTokens as ScaleTokens
    from msft.registry import load_backbone as load_backbone
    from msft.registry import register_backbone as register_backbone
    from msft.registry import registered_backbones as registered_backbones


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'msft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
