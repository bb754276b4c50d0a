"""The per-scale layers msft injects (DESIGN.md §2.2–2.6), all backbone-agnostic.

Wrappers (`ScaleAdapter`, `ScaleLoRA`) replace a backbone module in place, keep it as
``base_layer`` and add a per-scale term that is zero at initialisation. Which scale a call belongs
to is read from a shared `ScaleState` that `MSFTModel` sets around each backbone call: either one
scale index (a block of one scale) or a list of ``(scale_idx, tokens)`` segments along the token
axis (scales concatenated). Outside an msft forward the state is empty and a wrapper is exactly its
``base_layer``, so the wrapped backbone still behaves as the original when called directly.

Every parameter msft adds has ``msft_`` in its name; `MSFTModel` saves and counts by that prefix.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

Segments = list[tuple[int, int]]  # (scale_idx, number of tokens), in token order


class ScaleState:
    """Which scale the tokens in the current backbone call belong to."""

    def __init__(self) -> None:
        self.active: int | Segments | None = None

    @contextlib.contextmanager
    def use(self, active: int | Segments) -> Iterator[None]:
        previous, self.active = self.active, active
        try:
            yield
        finally:
            self.active = previous


def _per_scale(x: Tensor, active: int | Segments, fn) -> Tensor:
    """Apply ``fn(x_block, scale_idx)`` to each scale's tokens (token axis = -2)."""
    if isinstance(active, int):
        return fn(x, active)
    lengths = [n for _, n in active]
    if sum(lengths) != x.shape[-2]:
        raise RuntimeError(f"scale segments cover {sum(lengths)} tokens but the input has {x.shape[-2]}")
    blocks = x.split(lengths, dim=-2)
    return torch.cat([fn(block, idx) for block, (idx, _) in zip(blocks, active)], dim=-2)


def linear_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a linear-like module (nn.Linear or GPT-2's Conv1D)."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return module.in_features, module.out_features
    if hasattr(module, "nf") and hasattr(module, "nx"):  # transformers.pytorch_utils.Conv1D
        return module.nx, module.nf
    weight = getattr(module, "weight", None)
    if isinstance(weight, Tensor) and weight.dim() == 2:
        return weight.shape[1], weight.shape[0]
    raise ValueError(f"{type(module).__name__} is not a linear layer: cannot attach LoRA to it")


class ScaleAdapter(nn.Module):
    """``base_layer`` followed by a per-scale linear map ``x -> x W_s + b_s`` that starts as identity.

    Stored as a residual ``x + x D_s + b_s`` with ``D_s = W_s - I`` zero-initialised: the same
    family of maps, but the identity at init is exact in floating point.
    """

    def __init__(self, base_layer: nn.Module, num_scales: int, d_model: int, state: ScaleState):
        super().__init__()
        self.base_layer = base_layer
        self.msft_adapter_weight = nn.Parameter(torch.zeros(num_scales, d_model, d_model))
        self.msft_adapter_bias = nn.Parameter(torch.zeros(num_scales, d_model))
        self._state = state

    def forward(self, *args, **kwargs) -> Tensor:
        out = self.base_layer(*args, **kwargs)
        active = self._state.active
        if active is None:
            return out
        return _per_scale(out, active, self._adapt)

    def _adapt(self, x: Tensor, scale_idx: int) -> Tensor:
        return x + x @ self.msft_adapter_weight[scale_idx].to(x.dtype) + self.msft_adapter_bias[scale_idx].to(x.dtype)


class ScaleLoRA(nn.Module):
    """``base_layer(x) + (alpha / r) * B_s A_s x``: one LoRA pair per scale, ``B_s = 0`` at init."""

    def __init__(
        self,
        base_layer: nn.Module,
        num_scales: int,
        rank: int,
        alpha: float,
        dropout: float,
        state: ScaleState,
    ):
        super().__init__()
        self.base_layer = base_layer
        in_features, out_features = linear_features(base_layer)
        self.msft_lora_A = nn.Parameter(torch.empty(num_scales, rank, in_features))
        self.msft_lora_B = nn.Parameter(torch.zeros(num_scales, out_features, rank))
        for a in self.msft_lora_A:  # the same init as peft / nn.Linear
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._state = state

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        out = self.base_layer(x, *args, **kwargs)
        active = self._state.active
        if active is None:
            return out
        return out + _per_scale(self.dropout(x), active, self._delta).to(out.dtype)

    def _delta(self, x: Tensor, scale_idx: int) -> Tensor:
        a = self.msft_lora_A[scale_idx]
        b = self.msft_lora_B[scale_idx]
        x = x.to(a.dtype)
        return (x @ a.T) @ b.T * self.scaling


def block_diagonal_mask(lengths: Sequence[int], device: torch.device | None = None) -> Tensor:
    """``(tokens, tokens)`` bool mask, True where query and key belong to the same block."""
    ids = torch.repeat_interleave(
        torch.arange(len(lengths), device=device), torch.tensor(list(lengths), device=device)
    )
    return ids[:, None] == ids[None, :]


class CrossScaleAggregation(nn.Module):
    """Exchange between adjacent scales after one backbone layer (DESIGN.md §2.5).

    For fine scale ``i`` and coarse ``i + 1`` with factor ``f``:
    C2F ``fine += repeat(phi_c2f(coarse), f)``; F2C ``coarse += avgpool(phi_f2c(fine), f)``.
    Context tokens are aligned at their right end (the forecast origin), horizon tokens at their
    left end; a coarse token covers ``f`` fine tokens, and where a scale has fewer tokens than the
    other covers, the overlap is used (pooling averages only existing tokens). The maps start at
    zero, so the layer is the identity at initialisation. Both directions read the layer's output
    (before either update).
    """

    def __init__(self, scales: Sequence[int], d_model: int, c2f: bool, f2c: bool, rank: int | None = None):
        super().__init__()
        self.factors = [coarse // fine for fine, coarse in zip(scales, scales[1:])]
        pairs = len(self.factors)
        self.msft_c2f = nn.ModuleList(_zero_map(d_model, rank) for _ in range(pairs)) if c2f else None
        self.msft_f2c = nn.ModuleList(_zero_map(d_model, rank) for _ in range(pairs)) if f2c else None

    def forward(self, hidden: list[Tensor], layouts: Sequence[tuple[int, int, int]]) -> list[Tensor]:
        """hidden[i]: ``(batch, tokens_i, d_model)``; layouts[i]: (prefix, context, horizon) tokens."""
        updates = [torch.zeros_like(h) for h in hidden]
        for i, f in enumerate(self.factors):
            fine, coarse = hidden[i], hidden[i + 1]
            for segment in (0, 1):  # 0: context (right-aligned), 1: horizon (left-aligned)
                fine_slice = _segment(layouts[i], segment)
                coarse_slice = _segment(layouts[i + 1], segment)
                n_fine = fine_slice.stop - fine_slice.start
                n_coarse = coarse_slice.stop - coarse_slice.start
                if n_fine == 0 or n_coarse == 0:
                    continue
                right = segment == 0
                if self.msft_c2f is not None:
                    up = self.msft_c2f[i](coarse[:, coarse_slice]).repeat_interleave(f, dim=1)
                    updates[i][:, fine_slice] += _fit(up, n_fine, right)
                if self.msft_f2c is not None:
                    down = self.msft_f2c[i](fine[:, fine_slice])  # (batch, n_fine, d)
                    counts = torch.ones_like(down[..., :1])
                    down = _fit(down, n_coarse * f, right).unflatten(1, (n_coarse, f)).sum(2)
                    counts = _fit(counts, n_coarse * f, right).unflatten(1, (n_coarse, f)).sum(2)
                    updates[i + 1][:, coarse_slice] += down / counts.clamp(min=1)
        return [h + u for h, u in zip(hidden, updates)]


def _zero_map(d_model: int, rank: int | None) -> nn.Module:
    """A d -> d linear map that outputs zero at init: full, or low-rank ``d -> rank -> d``."""
    out = nn.Linear(d_model if rank is None else rank, d_model)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    if rank is None:
        return out
    return nn.Sequential(nn.Linear(d_model, rank, bias=False), out)


def _segment(layout: tuple[int, int, int], which: int) -> slice:
    prefix, context, horizon = layout
    if which == 0:
        return slice(prefix, prefix + context)
    return slice(prefix + context, prefix + context + horizon)


def _fit(x: Tensor, length: int, right_aligned: bool) -> Tensor:
    """Crop or zero-pad ``(batch, n, d)`` to ``length`` tokens, keeping the aligned end."""
    n = x.shape[1]
    if n >= length:
        return x[:, n - length :] if right_aligned else x[:, :length]
    pad = (0, 0, length - n, 0) if right_aligned else (0, 0, 0, length - n)
    return nn.functional.pad(x, pad)


class ScaleFusion(nn.Module):
    """Softmax fusion weights over scales (DESIGN.md §2.6)."""

    def __init__(self, num_scales: int, learned: bool, prior: float):
        super().__init__()
        logits = torch.zeros(num_scales)
        logits[0] = prior  # learned or fixed alike: a fixed prior pins the weights at softmax(prior, 0, ...)
        if learned:
            self.msft_fusion_logits = nn.Parameter(logits)
        else:
            self.register_buffer("msft_fusion_logits", logits)

    def weights(self) -> Tensor:
        return torch.softmax(self.msft_fusion_logits, dim=0)
