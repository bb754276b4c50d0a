"""MOMENT (``momentfm``) as an msft backbone: MSFT on the real MOMENT-1 small/base/large.

MOMENT reads a fixed ``seq_len`` (512) window with an ``input_mask``: RevIN over the observed steps,
non-overlapping patches of 8, a frozen patch embedding, a T5 encoder (relative position bias from
the first block, shared by all blocks) and a flatten-linear forecasting head that is *not*
pretrained. `MomentSpec` runs exactly that computation per scale:

* a scale's context (``ceil(L / s)`` steps) is left-padded to ``seq_len`` and masked: padding and
  missing steps are left out of the RevIN statistics, their normalised value is 0 (so the padded
  values never reach the network), and a patch is an attention key only when all its steps are
  observed (MOMENT's own rule, ``Masking.convert_seq_to_patch_view``);
* per-scale adapters act on the output of ``patch_embedding``; per-scale LoRA on every block's
  ``SelfAttention.{q,k,v}``; each T5 block runs per scale with that scale's padding mask and
  position bias (or on all scales concatenated with a block-diagonal mask, see `join`);
* one msft-owned `ForecastingHead` per scale with ``ceil(H / s)`` outputs, trained with the rest.

``padding="seq_len"`` (the default) runs every scale at MOMENT's full 64 tokens, the heads reading
the padding tokens' outputs too: exactly MOMENT's own forecast for any context length, so
``wrap(m, scales=[1])`` equals ``m`` at initialisation. The fast path runs only the tokens that hold
data (``backbone_options={"padding": "trim"}``, 1.98x peft LoRA's step instead of 3.48x on
MOMENT-small, results/moment/step_time.md): a scale
keeps its last ``n_s`` patches, the fewest that cover its pooled context while one coarse token still
covers exactly ``s_{i+1}/s_i`` fine ones (64, 32, 16 for [1, 2, 4] at context 512), at their
original T5 positions. The dropped tokens are never attention keys (no observed step), and with that
alignment no kept token reads a dropped one through the cross-scale aggregation either, so the kept
tokens' outputs equal those of the padded computation. The heads keep their ``seq_len / patch_len``
inputs and read zeros at the dropped positions, so for a context shorter than ``seq_len`` the
forecast differs from the padded one (equal at a full context); the right ends of the tokens are
aligned at the forecast origin in both.

Loading: `load_moment` (Hugging Face id or local directory) and `build_moment` (offline, from a T5
config with random weights); `MOMENT_T5_CONFIGS` has the encoder geometries of MOMENT-1.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from msft.ops import BlockLayout, masked_mean_var
from msft.registry import BackboneSpec, PointForecast, ScaleTokens, TinyBackbone, register_backbone

# Encoder geometries of MOMENT-1 (the ``t5_config`` of the hub's config.json: google/flan-t5-*).
_FLAN_T5 = {
    "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new",
    "is_gated_act": True,
    "d_kv": 64,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "initializer_factor": 1.0,
    "vocab_size": 32128,
    "model_type": "t5",
    "is_encoder_decoder": False,
    "tie_word_embeddings": False,
}
MOMENT_T5_CONFIGS: dict[str, dict[str, Any]] = {
    "small": {**_FLAN_T5, "d_model": 512, "d_ff": 1024, "num_layers": 8, "num_heads": 6},
    "base": {**_FLAN_T5, "d_model": 768, "d_ff": 2048, "num_layers": 12, "num_heads": 12},
    "large": {**_FLAN_T5, "d_model": 1024, "d_ff": 2816, "num_layers": 24, "num_heads": 16},
}
MOMENT_HUB_IDS = {size: f"AutonLab/MOMENT-1-{size}" for size in MOMENT_T5_CONFIGS}
PADDINGS = ("trim", "seq_len")


def moment_config(t5_config: str | dict[str, Any] = "small", seq_len: int = 512, patch_len: int = 8) -> dict[str, Any]:
    """The MOMENT config dict (the hub's config.json) for a T5 geometry: a size name or a T5 dict."""
    if isinstance(t5_config, str):
        if t5_config not in MOMENT_T5_CONFIGS:
            raise ValueError(
                f"t5_config={t5_config!r}: expected one of {sorted(MOMENT_T5_CONFIGS)} or a T5 config dict"
            )
        size, t5_config = t5_config, MOMENT_T5_CONFIGS[t5_config]
    elif isinstance(t5_config, dict):
        size = "custom"
    else:
        raise ValueError(f"t5_config={t5_config!r}: expected a size name or a T5 config dict")
    for key in ("d_model", "num_layers", "num_heads", "d_kv", "d_ff"):
        if key not in t5_config:
            raise ValueError(
                f"t5_config lacks {key!r}: expected a T5 config with d_model, num_layers, num_heads, d_kv, d_ff"
            )
    for name, value in (("seq_len", seq_len), ("patch_len", patch_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    if seq_len % patch_len:
        raise ValueError(f"seq_len={seq_len}: expected a multiple of patch_len={patch_len}")
    return {
        "task_name": "reconstruction",
        "model_name": "MOMENT",
        "transformer_type": "encoder_only",
        "d_model": t5_config["d_model"],
        "seq_len": seq_len,
        "patch_len": patch_len,
        "patch_stride_len": patch_len,
        "transformer_backbone": f"google/flan-t5-{size}" if size != "custom" else "custom",
        "t5_config": dict(t5_config),
        "device": "cpu",
    }


def _model_kwargs(forecast_horizon: int | None, overrides: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"enable_gradient_checkpointing": False, **overrides}
    if forecast_horizon is not None:
        if isinstance(forecast_horizon, bool) or not isinstance(forecast_horizon, int) or forecast_horizon < 1:
            raise ValueError(f"forecast_horizon={forecast_horizon!r}: expected a positive integer or None")
        kwargs.setdefault("task_name", "forecasting")
        kwargs["forecast_horizon"] = forecast_horizon
    return kwargs


def build_moment(
    t5_config: str | dict[str, Any] = "small",
    forecast_horizon: int | None = 96,
    seq_len: int = 512,
    patch_len: int = 8,
    **model_kwargs: Any,
) -> nn.Module:
    """A `MOMENTPipeline` with random weights, built offline from a T5 geometry (no download).

    ``model_kwargs`` are momentfm's (``head_dropout``, ``revin_affine``, ...); gradient
    checkpointing is off unless ``enable_gradient_checkpointing=True`` (msft then checkpoints the
    encoder blocks itself while wrapped, as with ``MSFTConfig.gradient_checkpointing``).
    """
    from momentfm.models.moment import MOMENTPipeline

    config = moment_config(t5_config, seq_len=seq_len, patch_len=patch_len)
    with warnings.catch_warnings():  # "Only reconstruction head is pre-trained": msft trains its heads
        warnings.simplefilter("ignore", UserWarning)
        model = MOMENTPipeline(config, model_kwargs=_model_kwargs(forecast_horizon, model_kwargs))
        model.init()
    return model


def load_moment(name_or_path: str | os.PathLike, forecast_horizon: int | None = 96, **model_kwargs: Any) -> nn.Module:
    """Pretrained MOMENT from a Hugging Face id (``AutonLab/MOMENT-1-small``) or a local directory
    holding ``config.json`` and ``model.safetensors`` (as written by ``save_pretrained``). Offline and
    not cached, a hub id fails within seconds with `msft.hub.HubUnreachableError`."""
    if isinstance(name_or_path, str) and name_or_path in MOMENT_HUB_IDS:
        name_or_path = MOMENT_HUB_IDS[name_or_path]
    source = str(name_or_path)
    local = Path(source).is_dir()
    if local and not (Path(source) / "config.json").is_file():
        raise ValueError(f"{source} has no config.json: expected a MOMENT directory written by save_pretrained")
    if not local and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise ValueError(f"{source!r} is neither a directory nor a Hugging Face id of the form 'owner/name'")
    if not local:  # before importing momentfm: an offline failure is fast and names the repository
        from msft.hub import check_hub

        check_hub(
            source,
            what="MOMENT checkpoint",
            hint="pass that folder instead (it must hold config.json and model.safetensors). For random weights "
            "use build_moment().",
        )
    from momentfm.models.moment import MOMENTPipeline

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = MOMENTPipeline.from_pretrained(source, model_kwargs=_model_kwargs(forecast_horizon, model_kwargs))
            model.init()
    except Exception as err:  # huggingface_hub / httpx raise several unrelated types when offline
        if local:
            raise
        raise OSError(
            f"could not load MOMENT {source!r} from the Hugging Face hub ({type(err).__name__}: {err}). "
            "The hub may be unreachable or HF_HUB_OFFLINE=1 set without a cached copy: download the model "
            "where the hub is reachable and pass its local directory, or use build_moment() for random weights."
        ) from err
    from msft.provenance import record_source

    return record_source(model, source)


@dataclass
class MomentAux:
    """What a T5 block needs for one scale's (or the joint) token sequence."""

    key_valid: Tensor  # (series, tokens) bool: patch fully observed, usable as an attention key
    positions: Tensor  # (tokens,) long: token position inside its own scale
    attention_mask: Tensor | None  # T5's extended mask for the encoder's attention implementation
    position_bias: Tensor  # (1, heads, tokens, tokens) relative position bias
    loc: Tensor | None = None  # (series, 1) RevIN statistics of the scale's observed context
    scale: Tensor | None = None


@register_backbone
class MomentSpec(BackboneSpec):
    """msft spec for momentfm's `MOMENT` / `MOMENTPipeline`.

    ``backbone_options``: ``padding`` ("seq_len", the default and exact, or "trim", the fast path; see the module docstring).
    ``MSFTConfig.horizon`` is required: the per-scale heads have ``ceil(horizon / s)``
    outputs. A backbone with a `ForecastingHead` of ``horizon`` outputs gives
    its weights to the scale-1 head, so ``wrap(m, scales=[1])`` starts equal to ``m.forecast``.
    """

    name = "moment"
    module_types = ("momentfm.models.moment.MOMENT",)
    input_projection = "patch_embedding"
    #: T5's token embedding (MOMENT embeds patches) and MOMENT's head (msft's per-scale heads replace it)
    unused_modules = ("encoder.embed_tokens", "head")

    @classmethod
    def claims(cls, source: str) -> bool:
        """A size name (``"small"``), a hub id naming MOMENT, or a directory of MOMENT's config.json."""
        path = Path(source).expanduser()
        if path.is_dir():
            config = path / "config.json"
            values = json.loads(config.read_text()) if config.is_file() else {}
            return "t5_config" in values or "MOMENT" in json.dumps(values.get("architectures", ""))
        return source in MOMENT_HUB_IDS or (source.count("/") == 1 and "moment" in source.lower())

    @classmethod
    def load(
        cls,
        source: str | None = None,
        *,
        horizon: int | None = 96,
        t5_config: str | dict[str, Any] | None = None,
        seed: int = 0,
        **model_kwargs: Any,
    ) -> nn.Module:
        """Pretrained from ``source`` (hub id, size name or directory), or random weights of the T5
        geometry ``t5_config``; its forecasting head has ``horizon`` outputs."""
        if (source is None) == (t5_config is None):
            raise ValueError(f"moment: give exactly one of source={source!r} or t5_config={t5_config!r}")
        torch.manual_seed(seed)
        if source is not None:
            return load_moment(source, forecast_horizon=horizon, **model_kwargs)
        return build_moment(t5_config, forecast_horizon=horizon, **model_kwargs)

    @classmethod
    def tiny(cls) -> TinyBackbone:
        """MOMENT's real pipeline on a 2-block, 32-wide T5 encoder (seq_len 512, as MOMENT-1)."""
        t5 = {
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 64,
            "num_layers": 2,
            "num_heads": 4,
            "vocab_size": 8,
            "dropout_rate": 0.0,
        }
        with torch.random.fork_rng():
            torch.manual_seed(0)
            backbone = build_moment(t5, forecast_horizon=12, head_dropout=0.0)

        def forecast(past: Tensor) -> Tensor:  # (batch, time, variate) -> (batch, 12, variate), one variate at a time
            out = []
            for v in range(past.shape[2]):
                x = nn.functional.pad(past[:, None, :, v], (backbone.seq_len - past.shape[1], 0), value=float("nan"))
                mask = (~torch.isnan(x[:, 0])).float()  # (batch, seq_len): MOMENT's input_mask
                out.append(backbone(x_enc=x, input_mask=mask).forecast[:, 0])  # (batch, horizon)
            return torch.stack(out, dim=-1)

        return TinyBackbone(backbone, context_length=96, horizon=12, forecast=forecast)

    def __init__(self, backbone: nn.Module, config):
        super().__init__(backbone, config)
        if config.horizon is None:
            raise ValueError(
                "horizon=None: MOMENT needs the forecast horizon to build its per-scale heads, "
                "e.g. msft.wrap(moment, scales=[1, 2, 4], horizon=96)"
            )
        if backbone.config.patch_stride_len != backbone.patch_len:
            raise ValueError(
                f"patch_stride_len={backbone.config.patch_stride_len}: expected non-overlapping patches "
                f"(patch_stride_len == patch_len == {backbone.patch_len})"
            )
        options = dict(config.backbone_options)
        unknown = sorted(set(options) - {"padding"})
        if unknown:
            raise ValueError(f"backbone_options {unknown}: the moment backbone expects only 'padding'")
        self.padding = options.get("padding", "seq_len")
        if self.padding not in PADDINGS:
            raise ValueError(f"backbone_options['padding']={self.padding!r}: expected one of {PADDINGS}")
        self.encoder = backbone.encoder
        self.seq_len = backbone.seq_len
        self.num_patches = backbone.seq_len // backbone.patch_len

    # -- geometry -------------------------------------------------------------------------------
    def d_model(self) -> int:
        return self.encoder.config.d_model

    def patch_size(self) -> int:
        return self.backbone.patch_len

    def layers(self) -> list[nn.Module]:
        return list(self.encoder.block)

    def lora_targets(self) -> tuple[str, ...]:
        return (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v)",)

    def check_context(self, context_length: int) -> None:
        if context_length > self.seq_len:
            raise ValueError(
                f"past_target has {context_length} time steps: MOMENT takes at most seq_len={self.seq_len} "
                "(pass the last steps of the series)"
            )

    def build_heads(self, num_scales: int) -> nn.Module:
        from momentfm.models.moment import ForecastingHead

        horizon, head_nf = self.config.horizon, self.d_model() * self.num_patches
        dropout = self.backbone.config.getattr("head_dropout", 0.1)
        heads = nn.ModuleList(
            ForecastingHead(head_nf, math.ceil(horizon / scale), dropout) for scale in self.config.scales
        )
        own = getattr(self.backbone, "head", None)
        if isinstance(own, ForecastingHead) and own.linear.weight.shape == heads[0].linear.weight.shape:
            heads[0].load_state_dict(own.state_dict())
        return heads

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        """``context``/``observed``: (series, steps <= seq_len) -> 64 patch tokens of the scale."""
        pad = self.seq_len - context.shape[-1]
        observed = nn.functional.pad(observed & ~torch.isnan(context), (pad, 0))  # (series, seq_len)
        values = nn.functional.pad(torch.nan_to_num(context), (pad, 0))
        normed, loc, scale = self._normalize(values, observed)
        patches = self.backbone.tokenizer(x=normed[:, None, :])  # (series, 1, patches, patch_len)
        # In forecast mode MOMENT embeds every patch with its values (no [MASK] embedding).
        embedded = self.backbone.patch_embedding(patches, mask=torch.ones_like(normed))
        kept = self.kept_patches(context.shape[-1], scale_idx)
        first = self.num_patches - kept  # the dropped patches hold padding only
        hidden = self.encoder.dropout(embedded[:, 0, first:])  # (series, kept, d_model), as T5Stack does
        key_valid = observed.unflatten(-1, (self.num_patches, -1)).all(-1)[:, first:]  # (series, kept)
        positions = torch.arange(first, self.num_patches, device=hidden.device)  # MOMENT's own positions
        aux = self._aux(hidden, key_valid, positions, scale_ids=None)
        aux.loc, aux.scale = loc, scale
        return ScaleTokens(hidden, num_prefix=0, num_context=kept, num_horizon=0, aux=aux)

    def kept_patches(self, steps: int, scale_idx: int) -> int:
        """Patches scale ``scale_idx`` runs for a pooled context of ``steps`` steps: all of them with
        ``padding="seq_len"``; else the coarsest scale's patch count times ``s_K / s``, at most 64."""
        if self.padding == "seq_len":
            return self.num_patches
        scales = self.config.scales
        ratio = scales[-1] // scales[scale_idx]
        coarsest = math.ceil(math.ceil(steps / ratio) / self.backbone.patch_len)
        return min(self.num_patches, coarsest * ratio)

    def add_prefix(self, tokens: ScaleTokens, prefix: Tensor) -> ScaleTokens:
        """Soft prompt ``(series, P, d_model)`` in front: always-valid keys at T5 positions 0..P-1,
        the patches shifted by P (the relative bias between patches is unchanged); the heads read
        only the patch tokens."""
        aux, n = tokens.aux, prefix.shape[1]
        hidden = torch.cat([prefix.to(tokens.hidden.dtype), tokens.hidden], dim=1)  # (series, P + patches, d)
        key_valid = torch.cat([aux.key_valid.new_ones(prefix.shape[:2]), aux.key_valid], dim=1)
        positions = torch.cat([torch.arange(n, device=hidden.device), aux.positions + n])
        new = self._aux(hidden, key_valid, positions, scale_ids=None)
        new.loc, new.scale = aux.loc, aux.scale
        return ScaleTokens(hidden, tokens.num_prefix + n, tokens.num_context, tokens.num_horizon, new)

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: MomentAux) -> Tensor:
        """One T5 block on ``hidden`` ``(series, tokens, d_model)``."""
        return layer(hidden, attention_mask=aux.attention_mask, position_bias=aux.position_bias)[0]

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> MomentAux:
        hidden = torch.cat([t.hidden for t in tokens], dim=1)  # (series, all tokens, d_model)
        key_valid = torch.cat([t.aux.key_valid for t in tokens], dim=1)
        positions = torch.cat([t.aux.positions for t in tokens])
        scale_ids = BlockLayout.of(tokens).scale_ids(positions.device) if block_diagonal else None  # (tokens,)
        return self._aux(hidden, key_valid, positions, scale_ids)

    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> PointForecast:
        hidden = hidden[:, tokens.num_prefix :]  # (series, patches, d_model): a soft prompt may precede them
        hidden = self.encoder.dropout(self.encoder.final_layer_norm(hidden))  # the end of T5Stack
        dropped = self.num_patches - hidden.shape[1]  # trimmed padding: the head reads zeros there
        hidden = nn.functional.pad(hidden, (0, 0, dropped, 0))  # (series, 64, d_model)
        out = heads[scale_idx](hidden)[:, :horizon]  # (series, horizon)
        return PointForecast(self._denormalize(out, tokens.aux.loc, tokens.aux.scale))

    # -- internals --------------------------------------------------------------------------------
    def _normalize(self, values: Tensor, observed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MOMENT's RevIN over observed steps only (population std + eps); unobserved steps -> 0."""
        revin = self.backbone.normalizer
        loc, var = masked_mean_var(values, observed)  # (series, 1) each
        scale = var.sqrt() + revin.eps
        normed = (values - loc) / scale
        if revin.affine:
            normed = normed * revin.affine_weight[0, 0] + revin.affine_bias[0, 0]
        return torch.where(observed, normed, 0.0), loc, scale

    def _denormalize(self, out: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        revin = self.backbone.normalizer
        if revin.affine:
            out = (out - revin.affine_bias[0, 0]) / (revin.affine_weight[0, 0] + revin.eps * revin.eps)
        return out * scale + loc

    def _aux(self, hidden: Tensor, key_valid: Tensor, positions: Tensor, scale_ids: Tensor | None) -> MomentAux:
        from transformers.masking_utils import create_bidirectional_mask

        same_scale = None
        if scale_ids is not None:

            def same_scale(batch_idx, head_idx, q_idx, kv_idx):
                return scale_ids[q_idx] == scale_ids[kv_idx]

        mask = create_bidirectional_mask(
            config=self.encoder.config,
            inputs_embeds=hidden,
            attention_mask=key_valid.long(),
            and_mask_function=same_scale,
        )
        return MomentAux(key_valid, positions, mask, self._position_bias(positions))

    def _position_bias(self, positions: Tensor) -> Tensor:
        """T5's bucketed relative position bias for tokens at ``positions`` (restarting per scale)."""
        attention = self.encoder.block[0].layer[0].SelfAttention
        relative = positions[None, :] - positions[:, None]  # (query, key): key - query, as T5
        buckets = attention._relative_position_bucket(
            relative,
            bidirectional=not attention.is_decoder,
            num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        return attention.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, q, k)
