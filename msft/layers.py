"""The per-scale layers msft injects (docs/design.md §2.2–2.6), all backbone-agnostic.

Wrappers (`ScaleAdapter`, `ScaleLoRA`) replace a backbone module in place, keep it as
``base_layer`` and add a per-scale term that is zero at initialisation. Which scale a call belongs
to is read from a shared `ScaleState` that `MSFTModel` sets around each backbone call: either one
scale index (a block of one scale) or a list of ``(scale_idx, tokens)`` segments along the token
axis (scales concatenated). Outside an msft forward the state is empty and a wrapper is exactly its
``base_layer``, so the wrapped backbone still behaves as the original when called directly.

msft's parameters are found by module type, as peft finds its adapters: the wrappers injected into
a backbone are `ScaleLayer`s (their own parameters, not their ``base_layer``'s, are msft's), and the
parts `MSFTModel` holds beside the backbone (aggregation, heads, fusion, prompt) are msft's whole.
`injected_parameter_names` lists the former in any module.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from msft.ops import block_diagonal_mask  # noqa: F401  (re-exported: specs built on it before msft.ops)

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


class ScaleLayer(nn.Module):
    """A wrapper msft injects in place of a backbone module: the original stays as ``base_layer``
    and is restored by `msft.unwrap`; the wrapper's own parameters are msft's."""

    base_layer: nn.Module


def injected_parameter_names(module: nn.Module, prefix: str = "") -> set[str]:
    """Names (as ``module.named_parameters()`` gives them, with ``prefix``) of the parameters that
    msft's injected `ScaleLayer`s own in ``module``; everything else there is the backbone's."""
    names = set()
    for name, sub in module.named_modules(prefix=prefix.rstrip(".")):
        if isinstance(sub, ScaleLayer):
            names.update(f"{name}.{p}" if name else p for p, _ in sub.named_parameters(recurse=False))
    return names


class ScaleAdapter(ScaleLayer):
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


class ScaleLoRA(ScaleLayer):
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
        x = self.dropout(x)
        if isinstance(active, int):
            return out + self._delta(x, active).to(out.dtype)
        return out + self._delta_segments(x, active).to(out.dtype)

    def _delta(self, x: Tensor, scale_idx: int) -> Tensor:
        a = self.msft_lora_A[scale_idx]
        b = self.msft_lora_B[scale_idx]
        x = x.to(a.dtype)
        return (x @ a.T) @ b.T * self.scaling

    def _delta_segments(self, x: Tensor, segments: Segments) -> Tensor:
        """Every segment's own pair in two matmuls over all tokens (no split and concatenation):
        ``x (..., tokens, in)`` down to every used pair's rank (``S * r``), zero outside a token's own
        pair, then up through the stacked ``B``s."""
        lengths = [n for _, n in segments]
        if sum(lengths) != x.shape[-2]:
            raise RuntimeError(f"scale segments cover {sum(lengths)} tokens but the input has {x.shape[-2]}")
        index = [idx for idx, _ in segments]
        a, b = self.msft_lora_A, self.msft_lora_B  # (K, r, in), (K, out, r)
        if index != list(range(a.shape[0])):
            a, b = a[index], b[index]
        rank = a.shape[1]
        segment = torch.arange(len(lengths), device=x.device)
        own = torch.repeat_interleave(segment, torch.tensor(lengths, device=x.device))  # (tokens,)
        mask = (own[:, None] == segment.repeat_interleave(rank)).to(a.dtype)  # (tokens, S * r)
        down = (x.to(a.dtype) @ a.flatten(0, 1).T) * mask  # (..., tokens, S * r)
        return down @ b.permute(1, 0, 2).flatten(1).T * self.scaling  # (..., tokens, out)


class CrossScaleAggregation(nn.Module):
    """Exchange between adjacent scales after one backbone layer (docs/design.md §2.5).

    For fine scale ``i`` and coarse ``i + 1`` with factor ``f``:
    C2F ``fine += repeat(phi_c2f(coarse), f)``; F2C ``coarse += avgpool(phi_f2c(fine), f)``.
    Context tokens are aligned at their right end (the forecast origin), horizon tokens at their
    left end; a coarse token covers ``f`` fine tokens, and where a scale has fewer tokens than the
    other covers, the overlap is used (pooling averages only existing tokens). The maps start at
    zero, so the layer is the identity at initialisation. Both directions read the layer's output
    (before either update).

    ``causal=True`` (a causal decoder backbone, such as Moirai-2) keeps every token's information
    at or before its own end: C2F gives a fine token only the latest coarse token that ends at or
    before it (the covering coarse token ends later, except for the last fine token it covers), so
    the repeated coarse updates shift by ``f - 1`` fine tokens; F2C is causal as it is (a coarse
    token averages only fine tokens it covers, which end at or before it). Default False: the
    encoder behaviour above, unchanged.
    """

    def __init__(
        self,
        scales: Sequence[int],
        d_model: int,
        c2f: bool,
        f2c: bool,
        rank: int | None = None,
        causal: bool = False,
    ):
        super().__init__()
        self.causal = causal
        self.factors = [coarse // fine for fine, coarse in zip(scales, scales[1:])]
        pairs = len(self.factors)
        self.msft_c2f = nn.ModuleList(_zero_map(d_model, rank) for _ in range(pairs)) if c2f else None
        self.msft_f2c = nn.ModuleList(_zero_map(d_model, rank) for _ in range(pairs)) if f2c else None

    def forward(self, hidden: list[Tensor], layouts: Sequence[tuple[int, int, int]]) -> list[Tensor]:
        """hidden[i]: ``(batch, tokens_i, d_model)``; layouts[i]: (prefix, context, horizon) tokens.

        Each scale's update is assembled per segment and added once (no zero-filled buffers written
        slice by slice). F2C averages the fine tokens first and maps the average (the map is affine,
        so this is the same value) on the coarse tokens only, ``f`` times fewer rows."""
        updates: list[list[list[Tensor]]] = [[[], []] for _ in hidden]  # [scale][segment] -> terms
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
                    if self.causal and f > 1:  # fine token k gets coarse token (k + 1) // f - 1 (none if < 0)
                        up = nn.functional.pad(up, (0, 0, f - 1, 0))[:, : up.shape[1]]
                    updates[i][segment].append(_fit(up, n_fine, right))
                if self.msft_f2c is not None:
                    # which fine tokens each coarse token averages: counts from the layout alone
                    counts = _fit(fine.new_ones(1, n_fine, 1), n_coarse * f, right).unflatten(1, (n_coarse, f)).sum(2)
                    pooled = _fit(fine[:, fine_slice], n_coarse * f, right).unflatten(1, (n_coarse, f)).sum(2)
                    down = self.msft_f2c[i](pooled / counts.clamp(min=1))  # (batch, n_coarse, d)
                    updates[i + 1][segment].append(down * (counts > 0).to(down.dtype))  # none covered: 0
        return [_add_updates(h, layout, terms) for h, layout, terms in zip(hidden, layouts, updates)]


def _add_updates(h: Tensor, layout: tuple[int, int, int], terms: list[list[Tensor]]) -> Tensor:
    """``h`` with the summed context and horizon updates added to those segments."""
    if not terms[0] and not terms[1]:
        return h
    pieces = [h[:, : layout[0]]] if layout[0] else []
    for segment, segment_terms in enumerate(terms):
        part = h[:, _segment(layout, segment)]
        if part.shape[1]:
            pieces.append(sum(segment_terms, part) if segment_terms else part)
    rest = h[:, sum(layout) :]  # tokens after the horizon (none for the backbones here)
    if rest.shape[1]:
        pieces.append(rest)
    return torch.cat(pieces, dim=1)


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
    """Softmax fusion weights over scales (docs/design.md §2.6)."""

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
