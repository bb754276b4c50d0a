"""A small patch-based transformer encoder forecaster, for tests, smoke runs and examples.

It has the shape of an encoder TSFM (MOIRAI-like): instance normalisation, patching, an input
projection, masked "horizon" tokens, pre-norm attention layers and a patch head; no downloads.
Positions count from the forecast origin (context tokens ..., -2, -1; horizon tokens 0, 1, ...)
and fully-unobserved patches are masked as attention keys, so left padding changes nothing.

It is also the reference for writing a backbone spec: `ToySpec` below is all msft needs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from msft.ops import BlockLayout, masked_mean_var
from msft.registry import BackboneSpec, PointForecast, ScaleTokens, TinyBackbone, register_backbone

logger = logging.getLogger(__name__)


@dataclass
class ToyConfig:
    patch_size: int = 8
    d_model: int = 32
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 2
    dropout: float = 0.0


class ToyAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """x: (batch, tokens, d_model); attn_mask: bool, broadcastable to (batch, 1, tokens, tokens)."""
        q, k, v = (
            rearrange(proj(x), "b t (h d) -> b h t d", h=self.num_heads)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        dropout = self.dropout if self.training else 0.0
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.out_proj(rearrange(out, "b h t d -> b t (h d)"))


class ToyLayer(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = ToyAttention(cfg.d_model, cfg.num_heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


@dataclass
class ToyAux:
    key_valid: Tensor  # (series, tokens) bool: False for fully-unobserved context patches
    loc: Tensor | None = None  # (series, 1); one scale's, None where scales are joined
    scale: Tensor | None = None  # (series, 1)
    allowed: Tensor | None = None  # (tokens, tokens) bool: which query may see which key

    def attn_mask(self) -> Tensor:
        mask = self.key_valid[:, None, None, :]  # (series, 1, 1, tokens)
        return mask if self.allowed is None else mask & self.allowed


class ToyForecaster(nn.Module):
    """Univariate forecaster ``(series, time) -> (series, horizon)``; see `forecast` for (b, t, v)."""

    def __init__(self, config: ToyConfig | None = None, **overrides: Any):
        super().__init__()
        self.config = cfg = config or ToyConfig(**overrides)
        self.in_proj = nn.Linear(2 * cfg.patch_size, cfg.d_model)  # patch values + observed mask
        self.mask_token = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        self.layers = nn.ModuleList(ToyLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.patch_size)

    # The three pieces below are shared by `forward` and by `ToySpec`, so a wrapped model runs the
    # very same computation per scale.
    def tokenize(self, context: Tensor, observed: Tensor, horizon: int) -> tuple[Tensor, ToyAux, int, int]:
        """(series, time) -> tokens (series, n_context + n_horizon, d_model)."""
        p = self.config.patch_size
        observed = observed & ~torch.isnan(context)
        loc, var = masked_mean_var(context, observed)  # (series, 1) each
        scale = (var + 1e-5).sqrt()
        normed = torch.where(observed, (context - loc) / scale, torch.zeros_like(context))
        pad = -context.shape[-1] % p
        normed = nn.functional.pad(normed, (pad, 0))
        observed = nn.functional.pad(observed, (pad, 0))
        patches = rearrange(normed, "n (t p) -> n t p", p=p)
        patch_obs = rearrange(observed, "n (t p) -> n t p", p=p)
        context_tokens = self.in_proj(torch.cat([patches, patch_obs.to(patches.dtype)], dim=-1))
        n_ctx, n_hor = patches.shape[1], math.ceil(horizon / p)
        horizon_tokens = self.mask_token.expand(context.shape[0], n_hor, -1)
        hidden = torch.cat([context_tokens, horizon_tokens], dim=1)
        positions = torch.arange(-n_ctx, n_hor, device=hidden.device, dtype=hidden.dtype)
        hidden = hidden + _sinusoid(positions, self.config.d_model)
        key_valid = torch.cat([patch_obs.any(-1), patch_obs.new_ones(context.shape[0], n_hor)], dim=1)
        return hidden, ToyAux(key_valid, loc, scale), n_ctx, n_hor

    def decode(
        self, hidden: Tensor, aux: ToyAux, n_horizon: int, horizon: int, head: nn.Module | None = None
    ) -> Tensor:
        """Horizon tokens -> (series, horizon) forecast in the input's units (``head``: another output head)."""
        head = self.head if head is None else head
        out = head(self.norm(hidden[:, hidden.shape[1] - n_horizon :]))  # (series, n_horizon, patch)
        return rearrange(out, "n t p -> n (t p)")[:, :horizon] * aux.scale + aux.loc

    def forward(self, context: Tensor, horizon: int, observed: Tensor | None = None) -> Tensor:
        if observed is None:
            observed = ~torch.isnan(context)
        hidden, aux, _, n_hor = self.tokenize(context, observed, horizon)
        for layer in self.layers:
            hidden = layer(hidden, aux.attn_mask())
        return self.decode(hidden, aux, n_hor, horizon)

    def forecast(self, past_target: Tensor, horizon: int, past_observed: Tensor | None = None) -> Tensor:
        """Channel-independent forecast of ``(batch, time, variate)`` -> ``(batch, horizon, variate)``."""
        v = past_target.shape[2]
        observed = None if past_observed is None else rearrange(past_observed, "b t v -> (b v) t")
        out = self(rearrange(past_target, "b t v -> (b v) t"), horizon, observed)
        return rearrange(out, "(b v) t -> b t v", v=v)


def _sinusoid(positions: Tensor, d_model: int) -> Tensor:
    """(tokens,) float positions -> (tokens, d_model) sinusoidal embedding."""
    freqs = torch.exp(
        torch.arange(0, d_model, 2, device=positions.device, dtype=positions.dtype) * (-math.log(1e4) / d_model)
    )
    angles = positions[:, None] * freqs[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[:, :d_model]


@register_backbone
class ToySpec(BackboneSpec):
    name = "toy"
    module_types = (f"{ToyForecaster.__module__}.ToyForecaster",)
    input_projection = "in_proj"
    output_head = "head"

    @classmethod
    def load(cls, source: str | None = None, *, horizon: int | None = None, **options: Any) -> nn.Module:
        """A `ToyForecaster` (no published weights: ``source`` must be None); see `build_toy`."""
        if source is not None:
            raise ValueError(f"toy: source={source!r}, but the toy backbone has no checkpoints; build it from options")
        return build_toy(**options)

    @classmethod
    def tiny(cls) -> TinyBackbone:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            backbone = ToyForecaster(d_model=16, num_layers=2, num_heads=2)
        return TinyBackbone(backbone, context_length=100, horizon=12, forecast=lambda past: backbone.forecast(past, 12))

    def d_model(self) -> int:
        return self.backbone.config.d_model

    def patch_size(self) -> int:
        return self.backbone.config.patch_size

    def layers(self) -> list[nn.Module]:
        return list(self.backbone.layers)

    def lora_targets(self) -> tuple[str, ...]:
        return (r"layers\.\d+\.attn\.(q|k|v)_proj",)

    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        hidden, aux, n_ctx, n_hor = self.backbone.tokenize(context, observed, horizon)
        return ScaleTokens(hidden, num_prefix=0, num_context=n_ctx, num_horizon=n_hor, aux=aux)

    def add_prefix(self, tokens: ScaleTokens, prefix: Tensor) -> ScaleTokens:
        """Soft prompt ``(series, P, d_model)`` in front: always-valid keys, no positional embedding
        (positions count from the forecast origin, so the series' own positions are unchanged);
        `decode` reads the last tokens, so the head is unaffected."""
        aux = tokens.aux
        key_valid = torch.cat([aux.key_valid.new_ones(prefix.shape[:2]), aux.key_valid], dim=1)
        return ScaleTokens(
            torch.cat([prefix, tokens.hidden], dim=1),  # (series, P + tokens, d_model)
            num_prefix=tokens.num_prefix + prefix.shape[1],
            num_context=tokens.num_context,
            num_horizon=tokens.num_horizon,
            aux=ToyAux(key_valid, aux.loc, aux.scale),
        )

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: ToyAux) -> Tensor:
        return layer(hidden, aux.attn_mask())

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> ToyAux:
        key_valid = torch.cat([t.aux.key_valid for t in tokens], dim=1)  # (series, all tokens)
        allowed = BlockLayout.of(tokens).mask(key_valid.device) if block_diagonal else None  # (T, T)
        return ToyAux(key_valid, allowed=allowed)

    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> PointForecast:
        head = heads[scale_idx] if heads is not None else None  # msft's quantile heads (copies of `head`)
        return PointForecast(
            self.backbone.decode(hidden, tokens.aux, tokens.num_horizon, horizon, head)
        )  # (series, horizon)

    def trainable_parameters(self, pattern: str) -> list[str]:
        """ "freeze_ffn": the MSFT authors' MOIRAI pattern on the toy's matching modules (attention output
        projections, layer norms, the final norm, the mask token and the head train; ``in_proj``, q/k/v
        and the MLPs stay frozen), so their recipes run on the toy too; or the generic "none" / "all"."""
        import re

        if pattern != "freeze_ffn":
            return super().trainable_parameters(pattern)
        trained = (
            r"layers\.\d+\.attn\.out_proj\..+",
            r"layers\.\d+\.norm[12]\..+",
            r"norm\..+",
            r"mask_token",
            r"head\..+",
        )
        return [n for n in self.own_parameters() if any(re.fullmatch(p, n) for p in trained)]


def build_toy(
    patch_size: int = 8,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_ratio: int = 2,
    dropout: float = 0.0,
    pretrain_steps: int = 0,
    pretrain_context: int = 256,
    pretrain_horizon: int = 96,
    pretrain_batch_size: int = 64,
    pretrain_lr: float = 1e-3,
    seed: int = 0,
) -> ToyForecaster:
    """A `ToyForecaster`; with ``pretrain_steps > 0`` pretrained on S2 synthetic series (which share
    nothing with the benchmarks, so that "zero-shot" and "finetuning" mean what they mean for a real
    foundation model), cached by its arguments under ``<MSFT_CACHE_DIR>/pretrained``."""
    import hashlib
    import json

    from msft.data.files import cache_root

    arch = dict(
        patch_size=patch_size,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
    )
    torch.manual_seed(seed)
    model = ToyForecaster(**arch)
    if pretrain_steps <= 0:
        return model
    recipe = dict(
        arch,
        steps=pretrain_steps,
        context=pretrain_context,
        horizon=pretrain_horizon,
        batch_size=pretrain_batch_size,
        lr=pretrain_lr,
        seed=seed,
    )
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "pretrained" / f"toy-s2-{key}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("toy backbone: loaded S2-pretrained weights %s", path)
        return model
    logger.info("toy backbone: pretraining on S2 synthetic series for %d steps (cached at %s)", pretrain_steps, path)
    _pretrain_s2(model, recipe)
    _save_atomic(model.state_dict(), path)
    return model


def _save_atomic(state: dict, path) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)  # a crashed pretraining leaves no half-written cache entry
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _pretrain_s2(model: ToyForecaster, recipe: dict) -> None:
    """Plain MSE training on random windows of S2 series with trend and seasonality."""
    import numpy as np

    from msft.data.synthetic import add_trend_seasonality, s2_series

    context, horizon, batch = recipe["context"], recipe["horizon"], recipe["batch_size"]
    length = 4 * (context + horizon)
    series = add_trend_seasonality(s2_series(512, length, seed=recipe["seed"]), recipe["seed"] + 1)
    series = torch.as_tensor(series, dtype=torch.float32)  # (series, time)
    rng = np.random.default_rng(recipe["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe["steps"])
    model.train()
    for _ in range(recipe["steps"]):
        rows = torch.as_tensor(rng.integers(0, series.shape[0], batch))
        starts = torch.as_tensor(rng.integers(0, length - context - horizon + 1, batch))
        index = starts[:, None] + torch.arange(context + horizon)  # (batch, context + horizon)
        window = series[rows[:, None], index]
        past, future = window[:, :context], window[:, context:]
        # Targets on the context's own scale, as the benchmark's z-scored data are.
        loc, scale = past.mean(-1, keepdim=True), past.std(-1, keepdim=True) + 1e-5
        pred = model((past - loc) / scale, horizon)
        loss = torch.nn.functional.mse_loss(pred, (future - loc) / scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
