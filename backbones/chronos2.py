"""Chronos-2 (``chronos-forecasting``, `chronos.chronos2.Chronos2Model`) as an msft backbone.

Chronos-2 is an encoder-only patch transformer: per series, instance normalisation (with arcsinh),
non-overlapping patches of ``[time encoding, values, observed mask]`` through the residual
``input_patch_embedding``, a [REG] token, one embedded "future" patch per output patch, then blocks
of time attention (RoPE over the token positions), group attention (across the series of one
group, at each token position) and a feed-forward layer, and a residual quantile head
(``output_patch_embedding``) on the future patches. `Chronos2Spec` runs exactly those pieces per
scale:

* a scale's pooled context is tokenised by the model's own ``_prepare_patched_context`` (its own
  instance statistics and time encoding) and ``input_patch_embedding``, followed by msft's
  per-scale adapter (it also sees the future patches, which go through the same embedding);
* per-scale LoRA on every block's time-attention ``q``/``k``/``v`` (``group_lora=True``: on group
  attention's ``v`` too, the only projection a group of one series reads);
* RoPE positions restart at 0 in every scale, exactly the positions Chronos-2 gives a series of
  that length. The [REG] token is stored first (the spec's one-token prefix) with its Chronos-2
  position (after the context patches): attention is order-free given the positions, and so the
  cross-scale aggregation sees ``[context | horizon]`` segments aligned at the forecast origin;
* intra-scale attention is a block mask in time attention (`join`), or attention per scale block
  with the projections and the feed-forward layer run once over all scales (`join_blocks`);
  group attention is token-wise along time, so it runs as Chronos-2 runs it, on every token, with
  each series in its own group (msft is channel-independent, as the pipeline is for 1-d inputs;
  computed as a group of one without the ``(tokens, series, series)`` mask, see `_block_from_pieces`);
* one quantile head per scale (msft-owned, trainable copies of ``output_patch_embedding``), fused
  by **quantile averaging**: the fused quantile at level q is ``sum_s w_s upsample(q_s)``.

Why `Chronos2Quantiles` is a probabilistic `Forecast` (it implements ``sample``): Chronos-2's output
is a set of quantiles, which define a distribution (linear between the levels, flat beyond the
extreme ones, as the pipeline's ``interpolate_quantiles``). Its "sample paths" are that quantile
function at the ``n`` midpoints ``(j + 1/2) / n``, the same for every scale and every step: path j
of every scale is its quantile at the same level, so the core's linear fusion of sample paths
(``sample_fusion="linear"``) *is* quantile averaging, and PF scoring, ``predict_samples``,
``fusion_objective="fused_crps"`` and the mixture fusion all work unchanged. ``point()`` is the
median (Chronos-2's point forecast), ``mean()`` the exact mean of that distribution, and ``loss``
the pinball loss Chronos-2 trains with (twice the pinball loss on the instance-normalised,
arcsinh-transformed scale, summed over its levels), averaged over the observed points. A point
forecast type would have lost the quantiles, and quantile heads per level (``quantile_levels``)
would have re-learnt what the head already gives. The core's ``predict_quantiles`` reads order
statistics of sample paths; `predict_quantiles` below fuses the heads' own quantiles at the asked
levels (exact quantile averaging; `Chronos2Quantiles.quantiles`).

Horizons: every scale forecasts its ``ceil(H / s)`` steps in one pass (``ceil(H / (s p))`` future
patches), also beyond the checkpoint's ``max_output_patches``, where the pipeline instead feeds its
forecast quantiles back as context and forecasts again; up to that limit the two compute the same.

Options (``backbone_options``): ``group_lora`` (bool, default False): LoRA on group attention's
value projection as well (its query and key do not change a group of one series).

Loading: `Chronos2Spec.load` (a hub id such as ``"amazon/chronos-2"``, a folder written by
``save_pretrained``, or random weights from a geometry: ``load(config="chronos-2", seed=0)``);
`Chronos2Spec.claims` says whether a source is a Chronos-2 checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from msft.registry import BackboneSpec, Forecast, ScaleTokens, TinyBackbone, register_backbone

logger = logging.getLogger(__name__)

#: published geometries shipped with msft (config.json without weights), by name.
GEOMETRY_DIR = Path(__file__).resolve().parent / "chronos2_geometry"
KNOWN_CHECKPOINTS = (
    "amazon/chronos-2",
    "autogluon/chronos-2",
    "autogluon/chronos-2-small",
    "autogluon/chronos-2-synth",
)
OPTIONS = ("group_lora",)


# -- the forecast ---------------------------------------------------------------------------------
def quantile_function(values: Tensor, levels: Tensor, query: Tensor) -> Tensor:
    """Quantiles ``values (..., Q)`` at ``levels (Q,)`` read at ``query (K,)``: linear between the
    levels, flat beyond the extreme ones (Chronos-2's ``interpolate_quantiles``) -> ``(..., K)``."""
    query = query.to(values.device, values.dtype).clamp(levels[0].item(), levels[-1].item())
    levels = levels.to(values.device, values.dtype)
    upper = torch.searchsorted(levels, query).clamp(1, len(levels) - 1)  # (K,)
    lower = upper - 1
    weight = (query - levels[lower]) / (levels[upper] - levels[lower])  # (K,)
    return values[..., lower] + weight * (values[..., upper] - values[..., lower])


def quantile_mean(values: Tensor, levels: Tensor) -> Tensor:
    """Exact mean of the distribution `quantile_function` defines: ``values (..., Q)`` -> ``(...)``."""
    levels = levels.to(values.device, values.dtype)
    inner = ((values[..., 1:] + values[..., :-1]) / 2 * (levels[1:] - levels[:-1])).sum(-1)
    return inner + values[..., 0] * levels[0] + values[..., -1] * (1 - levels[-1])


@dataclass
class Chronos2Quantiles(Forecast):
    """One scale's quantile forecast: Chronos-2's head output and its instance statistics."""

    normalized: Tensor  # (series, Q, horizon): the head's output (instance-normalised, arcsinh scale)
    levels: Tensor  # (Q,) increasing
    loc: Tensor  # (series, 1)
    scale: Tensor  # (series, 1)
    arcsinh: bool

    def values(self) -> Tensor:
        """``(series, Q, horizon)`` quantiles in the series' units (Chronos-2's ``instance_norm.inverse``)."""
        x = self.normalized.float()
        if self.arcsinh:
            x = torch.sinh(x)
        return x * self.scale[:, :, None] + self.loc[:, :, None]

    def quantiles(self, levels) -> Tensor:
        """``(series, len(levels), horizon)`` at any levels in (0, 1) (interpolated between the head's)."""
        query = torch.as_tensor(levels, dtype=torch.float32)
        out = quantile_function(self.values().transpose(1, 2), self.levels, query)  # (series, horizon, K)
        return out.transpose(1, 2)

    def point(self) -> Tensor:
        return self.quantiles([0.5])[:, 0]  # (series, horizon)

    def mean(self) -> Tensor:
        return quantile_mean(self.values().transpose(1, 2), self.levels)  # (series, horizon)

    def sample(self, num_samples: int) -> Tensor:
        """``(series, num_samples, horizon)``: the quantile function at the midpoints ``(j + 1/2) / n``."""
        grid = (torch.arange(num_samples, dtype=torch.float32) + 0.5) / num_samples
        return self.quantiles(grid)

    def loss(self, target: Tensor, observed: Tensor) -> Tensor:
        """Chronos-2's training loss: ``2 |(z - q)(1{z <= q} - level)|`` on the normalised target ``z``,
        summed over the levels, averaged over the observed points of ``target (series, horizon)``."""
        z = (target.float() - self.loc) / self.scale
        if self.arcsinh:
            z = torch.arcsinh(z)
        z = torch.where(observed, z, torch.zeros_like(z))[:, None]  # (series, 1, horizon)
        q = self.normalized.float()
        level = self.levels.to(q.device, q.dtype)[None, :, None]
        pinball = 2 * torch.abs((z - q) * ((z <= q).to(q.dtype) - level)).sum(1)  # (series, horizon)
        return torch.where(observed, pinball, torch.zeros_like(pinball)).sum() / observed.sum().clamp(min=1)


def predict_quantiles(model, past_target: Tensor, horizon: int, quantile_levels, past_observed=None) -> Tensor:
    """Quantile averaging of a wrapped Chronos-2: ``(batch, len(levels), horizon, variate)`` with the
    fused quantile at level q equal to ``sum_s w_s upsample(q_s)`` (every scale's head read at q;
    `MSFTModel.predict_quantiles`, which fuses a quantile head's own quantiles)."""
    return model.predict_quantiles(past_target, horizon, tuple(float(q) for q in quantile_levels), past_observed)


# -- the spec -------------------------------------------------------------------------------------
@dataclass
class Chronos2Aux:
    """What a block needs for one scale's (or the joined scales') tokens, and what the head needs."""

    attention_mask: Tensor  # (series, tokens) float 1/0: a token is an attention key
    position_ids: Tensor  # (1, tokens) long: RoPE positions, restarting at 0 in every scale
    time_mask: Tensor  # additive time-attention mask, (series, 1, 1, tokens) or (series, 1, tokens, tokens)
    blocks: list[slice] | None = None  # with join_blocks: time attention stays inside each slice
    loc_scale: tuple[Tensor, Tensor] | None = None  # (series, 1) each: the scale's instance statistics


@register_backbone
class Chronos2Spec(BackboneSpec):
    """msft spec for `chronos.chronos2.Chronos2Model` (see the module docstring)."""

    name = "chronos2"
    module_types = ("chronos.chronos2.model.Chronos2Model",)
    input_projection = "input_patch_embedding"
    forecast_type = Chronos2Quantiles

    def __init__(self, backbone: nn.Module, config):
        super().__init__(backbone, config)
        options = dict(config.backbone_options)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"backbone_options {unknown}: the chronos2 backbone expects some of {list(OPTIONS)}")
        self.group_lora = options.get("group_lora", False)
        if not isinstance(self.group_lora, bool):
            raise ValueError(f"backbone_options['group_lora']={self.group_lora!r}: expected True or False")
        cc = backbone.chronos_config
        if cc.input_patch_stride != cc.input_patch_size:
            raise ValueError(
                f"input_patch_stride={cc.input_patch_stride}: expected non-overlapping patches "
                f"(input_patch_stride == input_patch_size == {cc.input_patch_size})"
            )
        self.levels = torch.tensor(cc.quantiles, dtype=torch.float32)
        if 0.5 not in cc.quantiles:
            logger.info("Chronos-2 quantiles %s hold no 0.5: the median is interpolated", cc.quantiles)

    # -- geometry -------------------------------------------------------------------------------
    def d_model(self) -> int:
        return self.backbone.config.d_model

    def patch_size(self) -> int:
        return self.backbone.chronos_config.input_patch_size

    def layers(self) -> list[nn.Module]:
        return list(self.backbone.encoder.block)

    def lora_targets(self) -> tuple[str, ...]:
        time = r"encoder\.block\.\d+\.layer\.0\.self_attention\.(q|k|v)"
        return (time, r"encoder\.block\.\d+\.layer\.1\.self_attention\.v") if self.group_lora else (time,)

    def build_heads(self, num_scales: int) -> nn.Module:
        """Per-scale trainable copies of the pretrained quantile head (equal to it at init)."""
        own = self.backbone.output_patch_embedding
        return nn.ModuleList(copy.deepcopy(own) for _ in range(num_scales)).requires_grad_(True)

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        """``Chronos2Model.encode`` up to the encoder blocks, tokens stored as ``[REG | context | future]``."""
        m = self.backbone
        cc = m.chronos_config
        series = context.shape[0]
        values = torch.where(observed, context, torch.full_like(context, float("nan")))  # Chronos reads NaN as missing
        patched, key_valid, loc_scale = m._prepare_patched_context(context=values, context_mask=observed)
        num_context = key_valid.shape[-1]
        num_future = math.ceil(horizon / cc.output_patch_size)
        context_embeds = m.input_patch_embedding(patched)  # (series, n_ctx, d_model)
        patched_future, _ = m._prepare_patched_future(None, None, loc_scale, num_future, series)
        future_embeds = m.input_patch_embedding(patched_future)  # (series, n_future, d_model)
        dtype, device = context_embeds.dtype, context_embeds.device
        pieces, masks = (
            [context_embeds, future_embeds],
            [key_valid.to(dtype), context_embeds.new_ones(series, num_future)],
        )
        context_positions = torch.arange(num_context, device=device)
        positions = [context_positions, torch.arange(num_future, device=device) + num_context]
        if cc.use_reg_token:  # Chronos-2 puts it after the context; its position says so
            reg = m.shared(torch.full((series, 1), m.config.reg_token_id, device=device))  # (series, 1, d_model)
            pieces.insert(0, reg)
            masks.insert(0, context_embeds.new_ones(series, 1))
            positions = [torch.tensor([num_context], device=device), context_positions, positions[1] + 1]
        hidden = m.encoder.dropout(torch.cat(pieces, dim=1))  # (series, tokens, d_model)
        aux = self._aux(torch.cat(masks, dim=1), torch.cat(positions)[None])
        aux.loc_scale = loc_scale
        prefix = int(cc.use_reg_token)
        return ScaleTokens(hidden, num_prefix=prefix, num_context=num_context, num_horizon=num_future, aux=aux)

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: Chronos2Aux) -> Tensor:
        """One `Chronos2EncoderBlock` from its own pieces (`_block_from_pieces`), on one scale or on
        joined scales: the module's group attention builds a ``(tokens, series, series)`` mask, which
        an evaluation batch of thousands of series cannot hold."""
        return _block_from_pieces(layer, hidden, aux)

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> Chronos2Aux:
        aux = self._aux(
            torch.cat([t.aux.attention_mask for t in tokens], dim=1),
            torch.cat([t.aux.position_ids for t in tokens], dim=1),
        )
        if block_diagonal:
            from msft.ops import BlockLayout

            same = BlockLayout.of(tokens).mask(aux.attention_mask.device)  # (tokens, tokens)
            allowed = same[None, None] & (aux.attention_mask > 0)[:, None, None, :]  # (series, 1, tokens, tokens)
            aux.time_mask = _additive(allowed, tokens[0].hidden.dtype)
        return aux

    def join_blocks(self, tokens: list[ScaleTokens]) -> Chronos2Aux:
        """Scales joined, time attention per scale block (`_block_from_pieces`): every weight is read
        once per layer for all scales and attention costs sum n_s^2."""
        from msft.ops import BlockLayout

        aux = self.join(tokens, block_diagonal=False)
        aux.blocks = BlockLayout.of(tokens).slices()
        return aux

    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> Chronos2Quantiles:
        m = self.backbone
        hidden = m.encoder.dropout(m.encoder.final_layer_norm(hidden))  # the end of Chronos2Encoder
        future = hidden[:, hidden.shape[1] - tokens.num_horizon :]  # (series, n_future, d_model)
        head = heads[scale_idx] if heads is not None else m.output_patch_embedding
        out = rearrange(head(future), "b n (q p) -> b q (n p)", q=len(self.levels))[..., :horizon]
        loc, scale = tokens.aux.loc_scale
        return Chronos2Quantiles(out, self.levels, loc, scale, m.chronos_config.use_arcsinh)

    # -- internals --------------------------------------------------------------------------------
    def _aux(self, attention_mask: Tensor, position_ids: Tensor) -> Chronos2Aux:
        """Chronos-2's own time-attention mask for tokens with ``attention_mask (series, tokens)``."""
        encoder = type(self.backbone.encoder)
        time_mask = encoder._expand_and_invert_time_attention_mask(attention_mask, attention_mask.dtype)
        return Chronos2Aux(attention_mask=attention_mask, position_ids=position_ids, time_mask=time_mask)

    # -- building and loading ---------------------------------------------------------------------
    @classmethod
    def tiny(cls) -> TinyBackbone:
        """Chronos-2's real model on a 2-block, 32-wide geometry (patch 8, 11 quantile levels)."""
        config = {
            "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0,
            "chronos_config": {
                "context_length": 512, "input_patch_size": 8, "input_patch_stride": 8, "output_patch_size": 8,
                "quantiles": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], "use_reg_token": True, "use_arcsinh": True,
                "max_output_patches": 4, "time_encoding_scale": 512,
            },
        }  # fmt: skip
        backbone = cls.load(config=config, seed=0)
        horizon = 12
        levels = torch.tensor(config["chronos_config"]["quantiles"])

        def forecast(past: Tensor) -> Tensor:  # (batch, time, variate) -> (batch, horizon, variate): the mean
            flat = rearrange(past, "b t v -> (b v) t")
            preds = backbone(context=flat, num_output_patches=math.ceil(horizon / 8)).quantile_preds
            mean = quantile_mean(preds[..., :horizon].transpose(1, 2), levels)  # (series, horizon)
            return rearrange(mean, "(b v) t -> b t v", v=past.shape[2])

        return TinyBackbone(backbone, context_length=100, horizon=horizon, forecast=forecast)

    @classmethod
    def claims(cls, source: str) -> bool:
        """True for a Chronos-2 hub id (``amazon/chronos-2``, ``autogluon/chronos-2-small``, any
        ``owner/...chronos-2...``) or a local folder whose config.json is a Chronos-2 config."""
        path = Path(str(source)).expanduser()
        if path.is_dir():
            return _is_chronos2_config(path / "config.json")
        if path.is_file():
            return path.name == "config.json" and _is_chronos2_config(path)
        text = str(source)
        if text.startswith((".", "/", "~")):  # a path that does not exist
            return False
        return text in KNOWN_CHECKPOINTS or bool(re.fullmatch(r"[\w.-]+/[\w.-]*chronos-?2(?![\d])[\w.-]*", text, re.I))

    @classmethod
    def load(
        cls, source: str | None = None, *, config: str | dict | Path = "chronos-2", seed: int | None = 0, **options
    ) -> nn.Module:
        """A `Chronos2Model` in eval mode: pretrained from ``source`` (hub id or a ``save_pretrained``
        folder, through ``Chronos2Pipeline.from_pretrained``; ``options`` go to it), or with random
        weights of the geometry ``config`` (a shipped name such as ``"chronos-2"``, a config dict, a
        config.json or its folder) drawn from ``seed`` when ``source`` is None."""
        from msft.provenance import record_source

        options.pop("horizon", None)  # Chronos-2 takes the forecast length per call, not at construction
        if source is None:
            if options:
                raise ValueError(f"{sorted(options)}: random Chronos-2 weights take only config= and seed=")
            return _from_geometry(config, seed)
        from chronos.chronos2 import Chronos2Pipeline

        source = str(source)
        local = Path(source).expanduser()
        if local.exists():
            if not _is_chronos2_config(local / "config.json"):
                raise ValueError(
                    f"{source} holds no Chronos-2 config.json: expected a folder written by save_pretrained"
                )
        elif source.startswith((".", "/", "~")) or source.count("/") != 1:
            raise FileNotFoundError(f"{source!r} is neither an existing folder nor a Hugging Face id 'owner/name'")
        else:
            _check_hub(source, options.get("revision"))
        model = Chronos2Pipeline.from_pretrained(str(local) if local.exists() else source, **options).model
        model.eval()
        return record_source(model, source, options.get("revision"))


def _block_from_pieces(layer: nn.Module, x: Tensor, aux: Chronos2Aux) -> Tensor:
    """`Chronos2EncoderBlock.forward` with each series in its own group: time attention with
    ``aux.time_mask`` (or per scale block, ``aux.blocks``), group attention reduced to what a group of
    one series computes, then the feed-forward layer."""
    from chronos.chronos2.layers import Chronos2RotaryEmbedding

    time_attn, group_attn, feed_forward = layer.layer
    mha = time_attn.self_attention
    heads = mha.n_heads
    normed = time_attn.layer_norm(x)
    q, k, v = (rearrange(p(normed), "b s (h d) -> b h s d", h=heads) for p in (mha.q, mha.k, mha.v))
    cos, sin = mha.rope_embed(v, aux.position_ids)
    q, k = Chronos2RotaryEmbedding.apply_rotary_pos_emb(q, k, cos, sin)
    dropout = mha.dropout if mha.training else 0.0

    def attend(query, key, value, mask):  # Chronos-2's SDPA: no 1/sqrt(d) scaling
        return nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout, scale=1.0
        )

    if aux.blocks is None:
        out = attend(q, k, v, aux.time_mask)
    else:
        out = torch.cat(
            [attend(q[..., b, :], k[..., b, :], v[..., b, :], aux.time_mask[..., b]) for b in aux.blocks], dim=-2
        )
    x = x + time_attn.dropout(mha.o(rearrange(out, "b h s d -> b s (h d)")))  # (series, tokens, d_model)

    # Group attention with every series in its own group: a valid token's only key is itself, so its
    # attention weight is exactly 1 and the update is o(v(x)). Chronos-2 gives a fully-unobserved
    # context patch (no valid key at all) the mean of v over the whole batch; msft keeps its own v,
    # so that nothing depends on the batch (such tokens reach valid ones only through the
    # cross-scale aggregation). Per-head dropout stands in for dropout on the single weight.
    gha = group_attn.self_attention
    value = rearrange(gha.v(group_attn.layer_norm(x)), "b t (h d) -> b t h d", h=heads)
    if gha.training and gha.dropout > 0:
        value = value * nn.functional.dropout(value.new_ones(*value.shape[:-1], 1), gha.dropout, training=True)
    x = x + group_attn.dropout(gha.o(rearrange(value, "b t h d -> b t (h d)")))
    return feed_forward(x)


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Bool mask -> Chronos-2's additive float mask (0 where allowed, the dtype's minimum elsewhere)."""
    return (1.0 - allowed.to(dtype)) * torch.finfo(dtype).min


def _is_chronos2_config(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config.get("chronos_config"), dict) and (
        config.get("architectures") == ["Chronos2Model"] or config.get("chronos_pipeline_class") == "Chronos2Pipeline"
    )


def _read_geometry(config: str | dict | Path) -> dict[str, Any]:
    if isinstance(config, dict):
        return json.loads(json.dumps(config))  # a deep copy: the model writes into chronos_config
    bundled = GEOMETRY_DIR / f"{config}.json"
    path = bundled if isinstance(config, str) and bundled.is_file() else Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in GEOMETRY_DIR.glob("*.json"))
        raise FileNotFoundError(f"{path} not found: expected a Chronos-2 config.json, its folder, or one of {shipped}")
    return json.loads(path.read_text())


def _from_geometry(config: str | dict | Path, seed: int | None) -> nn.Module:
    from chronos.chronos2 import Chronos2Model
    from chronos.chronos2.config import Chronos2CoreConfig

    from msft.provenance import record_source

    values = _read_geometry(config)
    if not isinstance(values.get("chronos_config"), dict):
        raise ValueError("Chronos-2 config has no 'chronos_config' dict: expected the config.json of a Chronos-2 model")
    values = {k: v for k, v in values.items() if k not in ("model_type", "is_gated_act", "dense_act_fn")}
    values.setdefault("architectures", ["Chronos2Model"])
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        model = Chronos2Model(Chronos2CoreConfig(**values))
    model.eval()
    name = config if isinstance(config, str) else "custom"
    return record_source(model, f"random:{name}:seed={seed}")


def _check_hub(repo_id: str, revision: str | None, timeout: float = 3.0) -> None:
    """Fail fast, naming ``repo_id``, when it is not cached and the hub cannot be reached."""
    from msft.hub import check_hub

    check_hub(
        repo_id,
        what="Chronos-2 checkpoint",
        revision=revision,
        timeout=timeout,
        hint="pass that folder instead (it must hold config.json and model.safetensors). For random weights use "
        "Chronos2Spec.load(config=...).",
    )
