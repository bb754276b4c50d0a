"""Small tensor operations every backbone spec needs, written once (pure functions, no state).

- `masked_mean_var`: per-series statistics over observed steps only (instance normalisation, RevIN);
- `BlockLayout`: the scales' token blocks once concatenated along the token axis: per-token
  ``scale_ids``, the block-diagonal mask of intra-scale attention, and each block's slice;
- `match_modules`: the module names a list of targets selects (msft's per-scale LoRA and peft's
  LoRA / AdaLoRA both target exactly these).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def masked_mean_var(x: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and population variance of ``x`` over the steps where ``observed`` is True.

    ``x``, ``observed``: ``(series, time)`` -> ``loc``, ``var``: ``(series, 1)`` each. A series with
    no observed step gets 0 and 0 (callers add their own epsilon, inside or outside the square root,
    as their backbone was trained). Unobserved values (NaN included) never reach the result.
    """
    count = observed.sum(-1, keepdim=True).clamp(min=1)
    loc = torch.where(observed, x, torch.zeros_like(x)).sum(-1, keepdim=True) / count
    var = (torch.where(observed, x - loc, torch.zeros_like(x)) ** 2).sum(-1, keepdim=True) / count
    return loc, var


@dataclass(frozen=True)
class BlockLayout:
    """Scales concatenated along the token axis: block ``i`` holds scale ``i``'s ``lengths[i]`` tokens."""

    lengths: tuple[int, ...]

    @classmethod
    def of(cls, blocks: Sequence[Tensor]) -> BlockLayout:
        """The layout of hidden states ``(series, tokens_i, d_model)`` (or anything with a ``hidden``)."""
        return cls(tuple(int(getattr(b, "hidden", b).shape[1]) for b in blocks))

    @property
    def total(self) -> int:
        return sum(self.lengths)

    def slices(self) -> list[slice]:
        """Each block's slice of the token axis."""
        starts = [sum(self.lengths[:i]) for i in range(len(self.lengths))]
        return [slice(start, start + n) for start, n in zip(starts, self.lengths)]

    def scale_ids(self, device: torch.device | None = None) -> Tensor:
        """``(tokens,)`` long: the scale index of every token."""
        return torch.repeat_interleave(
            torch.arange(len(self.lengths), device=device), torch.tensor(list(self.lengths), device=device)
        )

    def mask(self, device: torch.device | None = None) -> Tensor:
        """``(tokens, tokens)`` bool, True where query and key belong to the same scale."""
        ids = self.scale_ids(device)
        return ids[:, None] == ids[None, :]


def block_diagonal_mask(lengths: Sequence[int], device: torch.device | None = None) -> Tensor:
    """``(tokens, tokens)`` bool mask, True where query and key belong to the same block."""
    return BlockLayout(tuple(lengths)).mask(device)


def match_modules(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """Names of ``model``'s modules matched by any target: exact name, dotted suffix, or a regex
    matching the full name. ValueError when nothing matches."""
    names = []
    for name, _ in model.named_modules():
        if not name:
            continue
        for t in targets:
            if name == t or name.endswith("." + t) or re.fullmatch(t, name):
                names.append(name)
                break
    if not names:
        raise ValueError(f"lora_targets={list(targets)} matched no module of {type(model).__name__}")
    return names
