"""Which base model an adapter belongs to: its source (hub id or path), revision and a weight fingerprint.

An adapter holds only msft's (or peft's) parameters; it is meaningless on any other base model, and
loading it onto another checkpoint of the same family fails silently (same shapes, other weights).
So every saved adapter records the base model's identity, and `msft.load_adapter` compares it with
the backbone it is given. Loaders call `record_source` on the module they build; the fingerprint is
computed from the weights themselves, so it holds for any module, however it was built.

The fingerprint is a sha256 over every backbone tensor's name, shape, dtype and a strided sample of
at most ``SAMPLE`` of its values (the whole tensor when smaller): fast enough to compute at every
`wrap` (milliseconds for MOIRAI-small, well under a second for a 7B LLM) and different for any two
trained checkpoints in practice. Names are canonical: msft's and peft's injected parameters are left
out and wrappers' ``base_layer`` is removed, so a wrapped, peft-injected or bare backbone give the
same fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import torch
from torch import nn

SOURCE_ATTR = "_msft_source"
SAMPLE = 4096
_INJECTED = re.compile(r"(^|\.)(msft_|lora_|ranknum)")  # msft's parameters; peft's LoRA / AdaLoRA ones


def record_source(module: nn.Module, source: str, revision: str | None = None) -> nn.Module:
    """Remember where ``module``'s weights came from (a hub id, a directory or a registered name)."""
    setattr(module, SOURCE_ATTR, {"source": str(source), "revision": revision})
    return module


def fingerprint(module: nn.Module) -> str:
    """``"sha256:<hex>"`` of the backbone's own tensors (see the module docstring)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(_own_tensors(module).items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() > SAMPLE:
            flat = flat[:: -(-flat.numel() // SAMPLE)]
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(flat.to("cpu", torch.float32).contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def identity(module: nn.Module, spec_name: str) -> dict[str, Any]:
    """The base model's identity as saved with an adapter."""
    source = getattr(module, SOURCE_ATTR, None) or {}
    return {
        "spec": spec_name,
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "source": source.get("source"),
        "revision": source.get("revision"),
        "fingerprint": fingerprint(module),
    }


def check_same_base(saved: dict[str, Any] | None, actual: dict[str, Any], where: str) -> None:
    """ValueError when ``actual`` is not the base recorded in ``saved`` (checked by fingerprint)."""
    if not saved or not saved.get("fingerprint"):
        return  # an adapter saved before provenance existed: nothing to compare
    if saved["fingerprint"] != actual["fingerprint"]:
        raise ValueError(
            f"{where} was saved for base model {_describe(saved)} but the backbone given is "
            f"{_describe(actual)}: its weights differ (fingerprint {actual['fingerprint'][:19]}..., expected "
            f"{saved['fingerprint'][:19]}...). Load the recorded base, or pass allow_base_mismatch=True to "
            "load the adapter onto this backbone anyway"
        )


def _describe(identity: dict[str, Any]) -> str:
    source = identity.get("source") or "(source not recorded)"
    revision = f"@{identity['revision']}" if identity.get("revision") else ""
    return f"{source}{revision} [{identity.get('class', '?')}]"


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if _INJECTED.search(name):
            continue
        tensors[name.replace(".base_layer.", ".").replace(".base_model.model.", ".")] = tensor
    return tensors
