"""Checkpoints shipped inside msft, so a first run needs no download.

``tiny_moirai``: a small uni2ts ``MoiraiModule`` (d_model 128, 4 layers, patch sizes 16/32/64,
MOIRAI's mixture head) pretrained from scratch on synthetic series only; see
``tiny_moirai/README.md`` (the model card) for the command, data recipe and zero-shot numbers.
It is an ordinary MOIRAI checkpoint directory (``config.json`` + ``model.safetensors``): any MOIRAI
loader reads it, e.g. ``backbones.moirai.load_moirai(TINY_MOIRAI_DIR)``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TINY_MOIRAI_DIR", "load_tiny_moirai"]

#: The shipped checkpoint directory (config.json, model.safetensors, README.md model card).
TINY_MOIRAI_DIR = Path(__file__).resolve().parent / "tiny_moirai"


def load_tiny_moirai():
    """The shipped tiny MOIRAI as a uni2ts ``MoiraiModule`` in eval mode, on CPU.

    Loaded with ``MoiraiModule.from_pretrained(directory)``, the call every MOIRAI checkpoint goes
    through (hub snapshots and local directories alike).
    """
    from uni2ts.model.moirai import MoiraiModule  # heavy import, only when asked for

    missing = [name for name in ("config.json", "model.safetensors") if not (TINY_MOIRAI_DIR / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{TINY_MOIRAI_DIR} lacks {missing}: the msft installation is incomplete")
    module = MoiraiModule.from_pretrained(str(TINY_MOIRAI_DIR))
    module.eval()
    return module
