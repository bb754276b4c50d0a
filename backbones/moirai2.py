"""The msft spec of uni2ts `Moirai2Module` (Moirai-2: a causal decoder with a quantile head).

Each scale is one univariate series packed as `Moirai2Forecast` packs it: patches of the module's
single ``patch_size`` (context left-padded), the packed std scaler over the context, the frozen
``in_proj`` on ``[scaled values, observed mask]`` (followed by msft's per-scale adapter), the
decoder layers under uni2ts' causal mask (a token attends to tokens of its sample with a time id
at or before its own) with rotary time ids, then the final norm and the pretrained quantile head
``out_proj``. Missing values enter as 0 with observed mask 0, which is what
`Moirai2Forecast.predict` passes for a univariate series (its imputation leaves univariate gaps
at 0; uni2ts' gluonts predictor imputes a causal mean instead, so the two uni2ts paths differ).

Multi-token prediction. The last context token predicts ``num_predict_token`` patches at once;
for ``horizon <= num_predict_token * patch_size`` that single token is the forecast, exactly as in
`Moirai2Forecast`. Longer horizons are forecast in the same single pass: the horizon enters as
missing patches (value 0, observed 0, the time ids continuing after the context) and every
``num_predict_token``-th of them predicts the next group of patches. uni2ts instead runs one pass
per group and feeds its predicted quantiles back (recursive multi-quantile decoding); msft's core
runs the layers once, so beyond ``num_predict_token`` patches this spec is not uni2ts' forecast,
and finetuning adapts the backbone to it.

Causality is kept at every scale: attention within a scale is uni2ts' causal mask; cross-scale
aggregation must be the core's causal variant (``CrossScaleAggregation(causal=True)``: a coarse
token aggregates only fine tokens it fully covers, a fine token receives only coarse tokens that end
at or before it), which the spec declares with ``causal = True`` below (the core's wrap passes the
declaration on once `BackboneSpec` declares ``causal``; tests/backbones/test_moirai2.py checks both);
without intra-scale attention the joined mask lets a token see another scale's token only when that
token ends at or before it. Instance scaling is uni2ts' own: each scale is normalised with its whole
context's mean and standard deviation.

Quantile head. A scale's output is a `Moirai2Output`: the ``(series, levels, horizon)`` quantiles
the pretrained head gives. Its ``point()`` is the median, so msft's point fusion
``sum_s w_s upsample(median_s)`` is the fused median, and `fused_quantiles` fuses every level the
same way (quantile averaging: ``q_fused = sum_s w_s upsample(q_s)``, non-decreasing in the level
wherever every scale's quantiles are). Its ``loss`` is the pinball loss over all levels in units of the
scale's instance scaling (as uni2ts trains Moirai-2 on scaled targets), so the spec is a point
backbone to the core (no sample paths): quantile averaging is the natural fusion of quantile
forecasts, whereas sampling from quantiles would invent tails the model never predicted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from msft.losses import pinball_loss
from msft.ops import BlockLayout
from msft.registry import BackboneSpec, Forecast, ScaleTokens, TinyBackbone, register_backbone

#: the published Moirai-2 geometry shipped with msft (config.json only, no weights).
DEFAULT_GEOMETRY = "moirai-2.0-R-small"
CONFIG_KEYS = ("d_model", "d_ff", "num_layers", "patch_size", "max_seq_len", "attn_dropout_p", "dropout_p")


@dataclass
class Moirai2Aux:
    """What a layer needs (mask, ids) and, for one scale's block, what its head needs."""

    attn_mask: Tensor  # (series, tokens, tokens) bool: True where the query may attend to the key
    time_id: Tensor  # (series, tokens) long
    variate_id: Tensor  # (series, tokens) long
    end: Tensor | None = None  # (tokens,) long: where each token ends, in steps after the forecast origin
    loc: Tensor | None = None  # (series, 1, 1)
    scale: Tensor | None = None  # (series, 1, 1)


@dataclass
class Moirai2Output(Forecast):
    """One scale's quantile forecast: ``scaled`` quantiles in units of the instance scaling."""

    scaled: Tensor  # (series, levels, horizon), levels ascending
    loc: Tensor  # (series, 1, 1)
    scale: Tensor  # (series, 1, 1)
    levels: tuple[float, ...]

    def head_quantiles(self) -> Tensor:
        """``(series, levels, horizon)`` the head's quantiles (at `levels`) in the series' units."""
        return self.scaled * self.scale + self.loc

    def quantiles(self, levels: tuple[float, ...]) -> Tensor:
        """``(series, len(levels), horizon)`` at ``levels`` within the head's (the core fuses these)."""
        if tuple(levels) == self.levels:
            return self.head_quantiles()
        return torch.stack([self.level(q) for q in levels], dim=1)

    def point(self) -> Tensor:
        """``(series, horizon)``: the median (interpolated between the two nearest levels if 0.5 is
        not one of them)."""
        return self.level(0.5)

    def level(self, q: float) -> Tensor:
        """``(series, horizon)`` quantile at level ``q`` within the head's levels (linear interpolation)."""
        levels = self.levels
        if not levels[0] <= q <= levels[-1]:
            raise ValueError(f"quantile level {q}: the Moirai-2 head predicts levels {list(levels)}")
        hi = next(i for i, level in enumerate(levels) if level >= q)
        quantiles = self.head_quantiles()
        if levels[hi] == q or hi == 0:
            return quantiles[:, hi]
        frac = (q - levels[hi - 1]) / (levels[hi] - levels[hi - 1])
        return torch.lerp(quantiles[:, hi - 1], quantiles[:, hi], frac)

    def loss(self, target: Tensor, observed: Tensor) -> Tensor:
        """Mean pinball loss over the levels and the observed points of ``target`` ``(series, horizon)``,
        target and quantiles both in units of the instance scaling."""
        scaled_target = (target - self.loc[:, 0]) / self.scale[:, 0]  # (series, horizon)
        return pinball_loss(self.scaled, scaled_target, observed, self.levels)


@register_backbone
class Moirai2Spec(BackboneSpec):
    name = "moirai2"
    module_types = ("uni2ts.model.moirai2.module.Moirai2Module",)
    input_projection = "in_proj"
    output_head = "out_proj"  # the pretrained quantile head (what linear probing trains)
    forecast_type = Moirai2Output
    #: a causal decoder: cross-scale aggregation must keep causality (msft.layers.CrossScaleAggregation).
    causal = True

    def __init__(self, backbone: nn.Module, config):
        super().__init__(backbone, config)
        if config.backbone_options:
            raise ValueError(
                f"backbone_options {sorted(config.backbone_options)}: the moirai2 backbone takes no backbone options"
            )
        if config.patch_size is not None and config.patch_size != backbone.patch_size:
            raise ValueError(
                f"patch_size={config.patch_size}: this Moirai-2 module has the single patch size {backbone.patch_size}"
            )

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def claims(cls, source: str | Path) -> bool:
        """True for a Moirai-2 hub id (``owner/name`` with "moirai-2" or "moirai2" in the name, e.g.
        ``"Salesforce/moirai-2.0-R-small"``) or a directory whose ``config.json`` has `Moirai2Module`'s
        keys (as ``save_pretrained`` writes it). No network."""
        path = Path(source).expanduser()
        if path.is_dir():
            config = path / "config.json"
            if not config.is_file():
                return False
            try:
                keys = set(json.loads(config.read_text()))
            except (OSError, ValueError):
                return False
            return {"patch_size", "num_predict_token", "quantile_levels"} <= keys and "patch_sizes" not in keys
        lowered = str(source).lower()
        return not path.exists() and str(source).count("/") == 1 and any(n in lowered for n in ("moirai-2", "moirai2"))

    @classmethod
    def load(cls, source: str | Path | None = None, *, horizon: int | None = None, **options: Any) -> nn.Module:
        """A `Moirai2Module` in eval mode: pretrained from a hub id or a ``save_pretrained`` directory
        (options ``revision``, ``cache_dir``, ``timeout``), or with random weights when ``source`` is
        None (options ``config``: a dict, a config.json, its directory or a shipped geometry name,
        default ``"moirai-2.0-R-small"``; ``seed``). Any ``horizon`` works (see the module docstring)."""
        if source is None:
            unknown = sorted(set(options) - {"config", "seed"})
            if unknown:
                raise ValueError(f"options {unknown}: random Moirai-2 weights take 'config' and 'seed'")
            return moirai2_from_config(options.get("config", DEFAULT_GEOMETRY), seed=options.get("seed"))
        unknown = sorted(set(options) - {"revision", "cache_dir", "timeout"})
        if unknown:
            raise ValueError(f"options {unknown}: a pretrained Moirai-2 takes 'revision', 'cache_dir' and 'timeout'")
        return load_moirai2(source, **options)

    # -- geometry -------------------------------------------------------------------------------
    def d_model(self) -> int:
        return self.backbone.d_model

    def patch_size(self) -> int:
        return self.backbone.patch_size

    def layers(self) -> list[nn.Module]:
        return list(self.backbone.encoder.layers)

    def lora_targets(self) -> tuple[str, ...]:
        return (r"encoder\.layers\.\d+\.self_attn\.(q|k|v)_proj",)

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        m, p = self.backbone, self.backbone.patch_size
        device = context.device
        n_ctx = math.ceil(context.shape[1] / p)
        n_hor = _horizon_inputs(horizon, p, m.num_predict_token)  # missing patches that carry the horizon
        observed = observed & ~torch.isnan(context)
        values = torch.where(observed, context, torch.zeros_like(context))
        pad = (-context.shape[1] % p, n_hor * p)
        target = rearrange(F.pad(values, pad), "n (t p) -> n t p", p=p)  # (series, tokens, patch)
        seen = rearrange(F.pad(observed, pad), "n (t p) -> n t p", p=p)
        # time ids as Moirai2Forecast._generate_time_id: leading unobserved patches share id 0
        context_seen = seen[:, :n_ctx].any(-1).long()
        past_time = (context_seen.cummax(dim=-1).values.cumsum(dim=-1) - 1).clamp(min=0)
        future_time = torch.arange(n_hor, device=device) + past_time[:, -1:] + 1
        time_id = torch.cat([past_time, future_time], dim=1)  # (series, tokens)
        sample_id = torch.ones_like(time_id)
        variate_id = torch.zeros_like(time_id)
        loc, scale = m.scaler(target, seen, sample_id, variate_id)  # the context's; (series, tokens, 1 or patch)
        # Moirai2Module.forward, up to the decoder:
        hidden = m.in_proj(torch.cat([(target - loc) / scale, seen.to(target.dtype)], dim=-1))
        step = self.config.scales[scale_idx] * p  # steps per token at this scale
        end = (torch.arange(n_ctx + n_hor, device=device) - n_ctx + 1) * step
        aux = Moirai2Aux(_causal_mask(time_id), time_id, variate_id, end, loc[:, :1, :1], scale[:, :1, :1])
        return ScaleTokens(hidden, num_prefix=0, num_context=n_ctx, num_horizon=n_hor, aux=aux)

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: Moirai2Aux) -> Tensor:
        return layer(hidden, aux.attn_mask, var_id=aux.variate_id, time_id=aux.time_id)

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> Moirai2Aux:
        """Scales concatenated as variates (variate id = scale index, time ids restarting per scale).
        Within a scale uni2ts' causal mask; across scales (no intra-scale attention) a key is seen
        only when it ends at or before the query, so no scale passes the future to another."""
        time_id = torch.cat([t.aux.time_id for t in tokens], dim=1)  # (series, all tokens)
        variate_id = torch.cat([t.aux.variate_id + idx for idx, t in enumerate(tokens)], dim=1)
        layout = BlockLayout.of(tokens)
        same = layout.mask(time_id.device)  # (tokens, tokens)
        within = _causal_mask(time_id)  # (series, tokens, tokens)
        if block_diagonal:
            mask = within & same
        else:
            end = torch.cat([t.aux.end for t in tokens])  # (tokens,)
            mask = torch.where(same, within, end[None, :] <= end[:, None])
        return Moirai2Aux(mask, time_id, variate_id)

    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> Moirai2Output:
        m, p, npt = self.backbone, self.backbone.patch_size, self.backbone.num_predict_token
        groups = math.ceil(math.ceil(horizon / p) / npt)
        last = tokens.num_prefix + tokens.num_context - 1  # the last context token
        reads = hidden[:, last::npt][:, :groups]  # (series, groups, d_model): each predicts npt patches
        proj = heads[scale_idx] if heads is not None else m.out_proj  # msft's per-scale copies (quantile heads)
        preds = proj(m.encoder.norm(reads))  # (series, groups, npt * levels * patch)
        scaled = rearrange(preds, "n g (t q p) -> n q (g t p)", t=npt, p=p)[..., :horizon]
        levels = tuple(float(q) for q in m.quantile_levels)
        return Moirai2Output(scaled, tokens.aux.loc, tokens.aux.scale, levels)

    # -- for tests and smoke runs ---------------------------------------------------------------
    @classmethod
    def tiny(cls) -> TinyBackbone:
        """A 2-layer, 128-wide `Moirai2Module` (2 heads), patch 8, 2 tokens predicted at once; its
        forecast is the median of uni2ts' `Moirai2Forecast` on the same context."""
        with torch.random.fork_rng():
            backbone = moirai2_from_config(TINY_GEOMETRY, seed=0)
        horizon = 12
        median = list(backbone.quantile_levels).index(0.5)

        def forecast(past: Tensor) -> Tensor:  # (batch, time, variate) -> (batch, horizon, variate)
            return uni2ts_quantiles(backbone, past, horizon)[:, median]

        return TinyBackbone(backbone, context_length=128, horizon=horizon, forecast=forecast)


#: the tiny geometry behind `Moirai2Spec.tiny` and configs/backbone/moirai2_tiny.yaml.
TINY_GEOMETRY = {
    "d_model": 128, "d_ff": 128, "num_layers": 2, "patch_size": 8, "max_seq_len": 512,
    "attn_dropout_p": 0.0, "dropout_p": 0.0, "num_predict_token": 2,
}  # fmt: skip


def _horizon_inputs(horizon: int, patch_size: int, num_predict_token: int) -> int:
    """Missing patches after the context that carry a forecast longer than one token predicts."""
    groups = math.ceil(math.ceil(horizon / patch_size) / num_predict_token)
    return (groups - 1) * num_predict_token


def _causal_mask(time_id: Tensor) -> Tensor:
    """uni2ts' packed_causal_attention_mask for one sample per row: ``(series, q, k)`` True where the
    key's time id is at or before the query's."""
    return time_id.unsqueeze(-2) <= time_id.unsqueeze(-1)


def fused_quantiles(model, past_target: Tensor, horizon: int, past_observed: Tensor | None = None) -> Tensor:
    """``(batch, levels, horizon, variate)``: every level of the head (`Moirai2Output.levels`) of a
    wrapped Moirai-2, fused by quantile averaging ``sum_s w_s upsample(q_s)`` (`MSFTModel.predict_quantiles`)."""
    levels = tuple(float(q) for q in model.backbone.quantile_levels)
    return model.predict_quantiles(past_target, horizon, levels, past_observed)


def uni2ts_quantiles(module: nn.Module, past: Tensor, horizon: int) -> Tensor:
    """uni2ts' own forecast ``(batch, levels, horizon, variate)`` of ``past`` ``(batch, time, variate)``:
    `Moirai2Forecast.forward` per variate, missing values as 0 with observed 0 (as its ``predict``
    passes them), for reference and tests."""
    from uni2ts.model.moirai2 import Moirai2Forecast

    training = module.training
    forecaster = Moirai2Forecast(
        prediction_length=horizon,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
        context_length=past.shape[1],
        module=module,
    )  # puts the module in eval mode
    flat = rearrange(past, "b t v -> (b v) t")
    observed = ~torch.isnan(flat)
    values = torch.where(observed, flat, torch.zeros_like(flat))
    out = forecaster(values[..., None], observed[..., None], torch.zeros_like(observed))  # (series, Q, H)
    module.train(training)
    return rearrange(out, "(b v) q t -> b q t v", v=past.shape[2])


def moirai2_from_config(config: dict[str, Any] | str | Path = DEFAULT_GEOMETRY, seed: int | None = None):
    """A `Moirai2Module` with the geometry of ``config`` (a dict, a ``config.json`` or its directory,
    or a geometry shipped in ``backbones/moirai/geometry``, e.g. ``"moirai-2.0-R-small"``) and random
    weights, in eval mode."""
    from uni2ts.model.moirai2 import Moirai2Module

    from msft_backbones.moirai.load import _read_config

    values = dict(_read_config(config))
    missing = [key for key in CONFIG_KEYS if key not in values]
    if missing:
        raise ValueError(
            f"Moirai-2 config is missing {missing}: expected the keys of Moirai2Module.__init__ {list(CONFIG_KEYS)}"
        )
    if "quantile_levels" in values:
        values["quantile_levels"] = tuple(values["quantile_levels"])
    if seed is not None:
        torch.manual_seed(seed)
    return Moirai2Module(**values).eval()


def load_moirai2(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = 3.0,
):
    """A pretrained `Moirai2Module` from a hub id (``"Salesforce/moirai-2.0-R-small"``) or a directory
    written by ``Moirai2Module.save_pretrained`` (``config.json`` and ``model.safetensors``). Offline and
    not cached, a hub id fails within seconds with `HubUnreachableError`."""
    from uni2ts.model.moirai2 import Moirai2Module

    from msft.provenance import record_source
    from msft_backbones.moirai.load import _download, _local_directory

    local = _local_directory(source)
    if local is None:
        directory = _download(
            str(source),
            revision,
            cache_dir,
            timeout,
            None,
            what="Moirai-2 checkpoint",
            hint="pass that directory instead (it must hold config.json and model.safetensors). For random weights "
            f"use source=None with config='{DEFAULT_GEOMETRY}'.",
        )
    else:
        directory = local
    module = Moirai2Module.from_pretrained(str(directory)).eval()
    return record_source(module, str(source), revision if local else (revision or directory.name))
