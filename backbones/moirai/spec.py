"""The msft spec of uni2ts `MoiraiModule` (MOIRAI 1.0 / 1.1, small / base / large).

Each scale is packed exactly as `MoiraiForecast` packs a univariate series (see `packing.py`) and
goes through the module's own pieces: the packed std scaler (per-scale instance scaling of the
context), the frozen ``in_proj`` (followed by msft's per-scale adapter), the mask token on the
prediction patches, the encoder layers (with their sample mask, variate bias and rotary time ids),
then the encoder's final norm and the pretrained mixture head ``param_proj`` on the prediction
tokens. With ``scales=[1]`` at initialisation this is `MoiraiModule.forward` on the same batch.

Blocked intra-scale attention (the default) concatenates the scales and runs uni2ts' layer from its
own pieces with the token-wise parts over all tokens and attention per scale block
(`_layer_in_blocks`, via the core's `join_blocks` hook), so every weight is read once per layer.

When scales are concatenated for the reference paths (``attention_impl="dense"`` or no intra-scale
attention), each scale
is its own variate (the paper's "scales as variates"): variate id = scale index, time ids restart
at 0 per scale, and the block-diagonal mask is composed with MOIRAI's sample mask.

Soft prompts (``prompt_tokens``, `add_prefix`): each scale's prompt joins its sample and variate,
at rotary time ids 0..P-1 with the series shifted by P, on every path (per block, blocked, dense).

Options (``backbone_options``):
    freq: pandas frequency alias ("H", "15T", "D", ...) choosing the default patch size when
        ``patch_size`` is not given (`default_patch_size`).
    train_head: train a copy of the pretrained mixture head (msft's, shared by all scales), leaving the
        backbone's own ``param_proj`` untouched. Default False (the head stays frozen).
    point_samples: sample paths whose median is a scale's point forecast (`predict_scales`), default 100.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import torch
from einops import einsum, rearrange, repeat
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.utils._pytree import tree_map

from msft.ops import BlockLayout
from msft.registry import BackboneSpec, Forecast, ScaleTokens, TinyBackbone, VariateGroup, register_backbone

from .packing import PackedBatch, pack_series, pack_variates, patchify_target
from .sampling import sample_mixture

#: patch size per frequency: the lower end of uni2ts' DefaultPatchSizeConstraints range, so that
#: coarse scales (s times fewer steps) still get enough context tokens.
FREQ_PATCH_SIZES = {"S": 64, "T": 32, "H": 32, "D": 16, "B": 16, "W": 16, "M": 8, "Q": 8, "Y": 8}
_FREQ_UNITS = {
    "MIN": "T",
    "SEC": "S",
    "BH": "H",
    "ME": "M",
    "MS": "M",
    "QE": "Q",
    "QS": "Q",
    "YE": "Y",
    "YS": "Y",
    "A": "Y",
    "AS": "Y",
}
DEFAULT_PATCH_SIZE = 32
#: the MSFT authors' ``finetune_pattern: freeze_ffn`` (zqiao11/uni2ts, branch ``finetune``): in_proj,
#: q/k/v and the FFN stay frozen; the attention output projection, q/k norms, variate bias, the
#: RMSNorms, the mask token and the mixture head train (regexes, full match on parameter names).
FREEZE_FFN = (
    r"encoder\.layers\.\d+\.self_attn\.(out_proj|q_norm|k_norm|var_attn_bias)\..+",
    r"encoder\.layers\.\d+\.norm[12]\..+",
    r"encoder\.norm\..+",
    r"mask_encoding\..+",
    r"param_proj\..+",
)
OPTIONS = ("freq", "train_head", "point_samples")


def default_patch_size(freq: str | None, supported: tuple[int, ...] = (8, 16, 32, 64, 128)) -> int:
    """Patch size for a pandas frequency alias (``None``: 32), snapped to the nearest supported size."""
    wanted = DEFAULT_PATCH_SIZE
    if freq is not None:
        match = re.fullmatch(r"\d*([A-Za-z]+)(-\w+)?", str(freq))
        unit = match.group(1).upper() if match else ""
        unit = _FREQ_UNITS.get(unit, unit)
        if unit not in FREQ_PATCH_SIZES:
            raise ValueError(f"freq={freq!r}: expected a pandas frequency alias such as 'h', '15min', 'D', 'W', 'M'")
        wanted = FREQ_PATCH_SIZES[unit]
    return min(supported, key=lambda p: (abs(p - wanted), p))


@dataclass
class MoiraiAux:
    """What a layer needs (mask, ids) and, for one scale's block, what its head needs."""

    attn_mask: Tensor  # (series, tokens, tokens) bool
    time_id: Tensor  # (series, tokens) long
    variate_id: Tensor  # (series, tokens) long
    sample_id: Tensor | None = None  # (series, tokens) long
    loc: Tensor | None = None  # (series, tokens, 1)
    scale: Tensor | None = None  # (series, tokens, 1)
    patch_size: Tensor | None = None  # (series, tokens) long
    blocks: list[slice] | None = None  # scales concatenated: attention stays inside each slice
    uniform_blocks: bool = False  # every block holds a single variate id
    single_series: bool = False  # one sample and one variate id per row (as `pack_series` packs it)


@dataclass
class MoiraiOutput(Forecast):
    """One scale's predictive distribution over its prediction patches."""

    distr: Distribution  # batch shape (series, n_horizon, max_patch)
    params: Any  # the mixture parameters (pytree of (series, n_horizon, max_patch) tensors)
    patch_size: int
    horizon: int  # steps at this scale's resolution
    max_patch: int = 128  # the module's largest patch size (the width of its packed target)
    point_samples: int = 100  # sample paths whose median is the point forecast
    distr_output: Any = None  # uni2ts' DistributionOutput that built ``distr`` from ``params`` (sampling)

    def point(self) -> Tensor:
        """``(series, horizon)``: the median of ``point_samples`` sample paths (the mixture has no
        closed-form median)."""
        return self.sample(self.point_samples).median(dim=1).values

    def loss(self, target: Tensor, observed: Tensor) -> Tensor:
        """Mean negative log-likelihood over the observed points of ``target`` ``(series, horizon)``."""
        values, seen = patchify_target(target, observed, self.patch_size, self.max_patch)
        log_prob = self.distr.log_prob(values)  # (series, n_horizon, max_patch)
        nll = torch.where(seen, -log_prob, torch.zeros_like(log_prob))
        return nll.sum() / seen.sum().clamp(min=1)

    def mean(self) -> Tensor:
        """``(series, horizon)`` mean of the distribution."""
        mean = self.distr.mean[..., : self.patch_size]  # (series, n_horizon, patch)
        return rearrange(mean, "n t p -> n (t p)")[..., : self.horizon]

    def sample(self, num_samples: int) -> Tensor:
        """``(series, num_samples, horizon)`` sample paths.

        With uni2ts' mixture head (``distr_output`` given) only the ``patch_size`` positions a path
        reads are drawn, and each from its chosen component alone (`sample_mixture`); otherwise
        the distribution's own ``sample`` over the whole packed width."""
        if isinstance(self.distr_output, _mixture_output()):
            draws = sample_mixture(self.distr_output, self.params, self.distr, num_samples, self.patch_size)
        else:
            draws = self.distr.sample(torch.Size((num_samples,)))  # (samples, series, n_horizon, max_patch)
        draws = rearrange(draws[..., : self.patch_size], "s n t p -> n s (t p)")
        return draws[..., : self.horizon]


def _mixture_output() -> type:
    from uni2ts.distribution.mixture import MixtureOutput

    return MixtureOutput


class MoiraiHead(nn.Module):
    """A trainable copy of the pretrained mixture head, shared by all scales (``train_head=True``)."""

    def __init__(self, param_proj: nn.Module):
        super().__init__()
        self.param_proj = copy.deepcopy(param_proj).requires_grad_(True)

    def forward(self, reprs: Tensor, patch_size: int) -> Any:
        return project_params(self.param_proj, reprs, patch_size)


def project_params(param_proj: nn.Module, reprs: Tensor, patch_size: int) -> Any:
    """uni2ts' ``DistrParamProj.forward(reprs, patch_size)`` when every token has the same patch size.

    Each parameter's `MultiOutSizeLinear` loops over all patch sizes and multiplies the outputs of
    the other sizes by 0; computing only this size's term gives the same values at 1/5 of the cost.
    """
    from uni2ts.distribution._base import convert_to_container, tree_map_multi

    def project(proj: nn.Module) -> Tensor:  # (..., d_model) -> (..., max_patch, dim)
        idx = [size // proj.dim for size in proj.out_features_ls].index(patch_size)
        out = einsum(proj.weight[idx] * proj.mask[idx], reprs, "out inp, ... inp -> ... out")
        if proj.bias is not None:
            out = out + proj.bias[idx]
        return rearrange(out, "... (dim out_size) -> ... out_size dim", out_size=param_proj.out_size)

    unbounded = tree_map(project, convert_to_container(param_proj.proj))
    return tree_map_multi(lambda domain_map, x: domain_map(x), param_proj.domain_map, unbounded)


@register_backbone
class MoiraiSpec(BackboneSpec):
    name = "moirai"
    module_types = ("uni2ts.model.moirai.module.MoiraiModule",)
    input_projection = "in_proj"
    output_head = "param_proj"  # the pretrained mixture head (what linear probing trains)
    forecast_type = MoiraiOutput

    @classmethod
    def claims(cls, source: str) -> bool:
        from msft_backbones.moirai.load import is_moirai_source

        return is_moirai_source(source)

    @classmethod
    def load(cls, source: str | None = None, *, horizon: int | None = None, **options: Any) -> nn.Module:
        """``"tiny_moirai"`` (embedded), a hub id or directory, or ``config=`` (random weights of a
        geometry, ``seed=``); MOIRAI forecasts any ``horizon``."""
        from msft_backbones.moirai.load import load_source

        return load_source(source, **options)

    @classmethod
    def source_wrap_options(cls, source: str, *, freq: str | None = None) -> dict[str, Any]:
        """The patch size MOIRAI's own forecaster would pick for the data's frequency."""
        return {"backbone_options": {"freq": freq}} if freq is not None else {}

    @classmethod
    def tiny(cls) -> TinyBackbone:
        """A 2-layer, 64-wide `MoiraiModule` with the published mixture head, patch size 8."""
        from msft_backbones.moirai.load import moirai_from_config

        mixture = [
            {"_target_": "uni2ts.distribution.student_t.StudentTOutput"},
            {"_target_": "uni2ts.distribution.normal.NormalFixedScaleOutput", "scale": 0.001},
            {"_target_": "uni2ts.distribution.negative_binomial.NegativeBinomialOutput"},
            {"_target_": "uni2ts.distribution.log_normal.LogNormalOutput"},
        ]
        config = {
            "distr_output": {"_target_": "uni2ts.distribution.mixture.MixtureOutput", "components": mixture},
            "d_model": 64, "num_layers": 2, "patch_sizes": [8, 16], "max_seq_len": 512,
            "attn_dropout_p": 0.0, "dropout_p": 0.0, "scaling": True,
        }  # fmt: skip
        with torch.random.fork_rng():
            backbone = moirai_from_config(config, seed=0)
        patch, horizon = 8, 12

        def forecast(past: Tensor) -> Tensor:  # (batch, time, variate) -> (batch, horizon, variate): the mean
            flat = rearrange(past, "b t v -> (b v) t")
            packed = pack_series(flat, ~torch.isnan(flat), horizon, patch, max(config["patch_sizes"]))
            mean = backbone(*packed.module_inputs()).mean[:, packed.num_context :, :patch]  # (series, n_hor, patch)
            out = rearrange(mean, "n t p -> n (t p)")[:, :horizon]
            return rearrange(out, "(b v) t -> b t v", v=past.shape[2])

        return TinyBackbone(
            backbone, context_length=100, horizon=horizon, forecast=forecast, options={"patch_size": patch}
        )

    def __init__(self, backbone: nn.Module, config):
        super().__init__(backbone, config)
        options = config.backbone_options
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"backbone_options {unknown}: the moirai backbone expects some of {list(OPTIONS)}")
        supported = tuple(backbone.patch_sizes)
        if config.patch_size is not None:
            if config.patch_size not in supported:
                raise ValueError(f"patch_size={config.patch_size}: this MOIRAI module supports {list(supported)}")
            self._patch_size = config.patch_size
        else:
            self._patch_size = default_patch_size(options.get("freq"), supported)
        self._max_patch = max(supported)
        self.train_head = options.get("train_head", False)
        if not isinstance(self.train_head, bool):
            raise ValueError(f"backbone_options['train_head']={self.train_head!r}: expected True or False")
        self.point_samples = options.get("point_samples", 100)
        if isinstance(self.point_samples, bool) or not isinstance(self.point_samples, int) or self.point_samples < 1:
            raise ValueError(f"backbone_options['point_samples']={self.point_samples!r}: expected a positive integer")

    # -- geometry -------------------------------------------------------------------------------
    def d_model(self) -> int:
        return self.backbone.d_model

    def patch_size(self) -> int:
        return self._patch_size

    def layers(self) -> list[nn.Module]:
        return list(self.backbone.encoder.layers)

    def lora_targets(self) -> tuple[str, ...]:
        return (r"encoder\.layers\.\d+\.self_attn\.(q|k|v)_proj",)

    def build_heads(self, num_scales: int) -> nn.Module | None:
        return MoiraiHead(self.backbone.param_proj) if self.train_head else None

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        batch = pack_series(context, observed, horizon, self._patch_size, self._max_patch)
        return self._tokens(batch, single_series=True)

    def embed_variates(self, group: VariateGroup, horizon: int, scale_idx: int) -> ScaleTokens:
        """All variates of a group in one sequence, packed as `MoiraiForecast` packs a multivariate
        target with ``feat_dynamic_real`` and ``past_feat_dynamic_real`` (`pack_variates`): the
        any-variate attention (variate ids, binary variate bias) lets them attend to each other."""
        batch = pack_variates(
            group.context,
            group.observed,
            horizon,
            self._patch_size,
            self._max_patch,
            group.future,
            group.future_observed,
            group.targets,
            group.known,
        )
        variates = group.context.shape[1]
        tokens = self._tokens(batch, single_series=variates == 1)
        tokens.variates, tokens.targets = variates, group.targets
        return tokens

    def _tokens(self, batch: PackedBatch, single_series: bool) -> ScaleTokens:
        m = self.backbone
        # MoiraiModule.forward, up to the encoder:
        loc, scale = m.scaler(
            batch.target,
            batch.observed_mask * ~batch.prediction_mask.unsqueeze(-1),
            batch.sample_id,
            batch.variate_id,
        )  # (series, tokens, 1) each: statistics of this scale's context
        reprs = m.in_proj((batch.target - loc) / scale, batch.patch_size)  # (series, tokens, d_model)
        mask = batch.prediction_mask.unsqueeze(-1)
        hidden = reprs * ~mask + m.mask_encoding.weight * mask  # uni2ts' mask_fill
        aux = MoiraiAux(
            attn_mask=_sample_mask(batch.sample_id),
            time_id=batch.time_id,
            variate_id=batch.variate_id,
            sample_id=batch.sample_id,
            loc=loc,
            scale=scale,
            patch_size=batch.patch_size,
            single_series=single_series,
        )
        return ScaleTokens(hidden, num_prefix=0, num_context=batch.num_context, num_horizon=batch.num_horizon, aux=aux)

    def add_prefix(self, tokens: ScaleTokens, prefix: Tensor) -> ScaleTokens:
        """Soft prompt ``(series, P, d_model)`` in front of the scale's tokens, in the same sample and
        variate as the series so every token attends to it. Rotary time ids: the prompt takes
        0..P-1 and the series' ids shift by P. RoPE sees only differences of time ids, so the series
        tokens keep their relative positions and the prompt reads as the P patches before them.
        ``loc``/``scale``/``patch_size`` are copied from the first token (the head reads only the
        prediction tokens)."""
        aux, p = tokens.aux, prefix.shape[1]

        def front(ids: Tensor) -> Tensor:  # (series, tokens, ...) -> (series, P + tokens, ...)
            return torch.cat([ids[:, :1].expand(-1, p, *ids.shape[2:]), ids], dim=1)

        steps = torch.arange(p, device=aux.time_id.device, dtype=aux.time_id.dtype)
        time_id = torch.cat([steps.expand(aux.time_id.shape[0], -1), aux.time_id + p], dim=1)
        sample_id = front(aux.sample_id)
        new_aux = MoiraiAux(
            attn_mask=_sample_mask(sample_id),
            time_id=time_id,
            variate_id=front(aux.variate_id),
            sample_id=sample_id,
            loc=front(aux.loc),
            scale=front(aux.scale),
            patch_size=front(aux.patch_size),
            single_series=aux.single_series,  # the prompt joins the row's sample and variate
        )
        return ScaleTokens(
            torch.cat([prefix, tokens.hidden], dim=1),  # (series, P + tokens, d_model)
            num_prefix=tokens.num_prefix + p,
            num_context=tokens.num_context,
            num_horizon=tokens.num_horizon,
            aux=new_aux,
        )

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: MoiraiAux) -> Tensor:
        if aux.blocks is not None:
            return _layer_in_blocks(layer, hidden, aux)
        return layer(hidden, aux.attn_mask, var_id=aux.variate_id, time_id=aux.time_id)

    def join_blocks(self, tokens: list[ScaleTokens]) -> MoiraiAux:
        """Scales concatenated, attention kept inside each scale's block by `_layer_in_blocks`: the
        projections and the MLP read their weights once for all scales."""
        sample_id = torch.cat([t.aux.sample_id for t in tokens], dim=1)  # (series, all tokens)
        if all(t.aux.single_series for t in tokens):  # known from the packing: no host sync
            packed = uniform = True
        else:
            packed = bool((sample_id == sample_id[:, :1]).all())  # one sample per row: nothing to mask
            uniform = all(bool((t.aux.variate_id == t.aux.variate_id[:, :1]).all()) for t in tokens)
        return MoiraiAux(
            attn_mask=None if packed else _sample_mask(sample_id),
            time_id=torch.cat([t.aux.time_id for t in tokens], dim=1),
            variate_id=_scale_variate_ids(tokens),
            sample_id=sample_id,
            blocks=BlockLayout.of(tokens).slices(),
            uniform_blocks=uniform,
        )

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> MoiraiAux:
        sample_id = torch.cat([t.aux.sample_id for t in tokens], dim=1)  # (series, all tokens)
        mask = _sample_mask(sample_id)
        if block_diagonal:
            mask = mask & BlockLayout.of(tokens).mask(sample_id.device)  # (series, tokens, tokens)
        return MoiraiAux(
            attn_mask=mask,
            time_id=torch.cat([t.aux.time_id for t in tokens], dim=1),
            variate_id=_scale_variate_ids(tokens),
            sample_id=sample_id,
        )

    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> MoiraiOutput:
        m, aux, n, patch = self.backbone, tokens.aux, tokens.num_horizon, self._patch_size
        loc, scale = aux.loc, aux.scale
        if tokens.variates > 1:  # joint variates: the target variates' blocks, one per row

            def targets(x: Tensor) -> Tensor:  # (groups, variates * tokens, ...) -> (groups * targets, tokens, ...)
                per_variate = rearrange(x, "g (v t) ... -> g v t ...", v=tokens.variates)
                return per_variate[:, : tokens.targets].flatten(0, 1)

            hidden, loc, scale = targets(hidden), targets(loc), targets(scale)
        reprs = m.encoder.norm(hidden[:, -n:])  # (series, n_horizon, d_model)
        params = heads(reprs, patch) if heads is not None else project_params(m.param_proj, reprs, patch)
        distr = m.distr_output.distribution(params, loc=loc[:, -n:], scale=scale[:, -n:])
        return MoiraiOutput(
            distr,
            params,
            patch,
            horizon,
            max_patch=self._max_patch,
            point_samples=self.point_samples,
            distr_output=m.distr_output,
        )

    def trainable_parameters(self, pattern: str) -> list[str]:
        """ "freeze_ffn" (the authors' recipe, `FREEZE_FFN`), or the generic "none" / "all"."""
        if pattern != "freeze_ffn":
            return super().trainable_parameters(pattern)
        return [n for n in self.own_parameters() if any(re.fullmatch(p, n) for p in FREEZE_FFN)]


def _layer_in_blocks(layer: nn.Module, x: Tensor, aux: MoiraiAux) -> Tensor:
    """uni2ts' pre-norm TransformerEncoderLayer.forward on concatenated scales, attention per block."""
    if not layer.pre_norm:
        raise ValueError("the moirai backbone expects pre-norm encoder layers (as in MOIRAI 1.0 / 1.1)")
    x = x + layer.dropout(_attention_in_blocks(layer.self_attn, layer.norm1(x), aux))
    return x + layer.ffn(layer.norm2(x), centroid=None)


def _attention_in_blocks(attn: nn.Module, x: Tensor, aux: MoiraiAux) -> Tensor:
    """uni2ts' GroupedQueryAttention.forward (self-attention) with the token-wise parts (projections,
    q/k norms, rotary) over all tokens and the score-wise parts (variate bias, mask, softmax) per
    block: cost sum n_s^2 instead of (sum n_s)^2. Built from the module's own pieces."""
    groups, hpg = attn.num_groups, attn.heads_per_group
    query = attn.q_norm(
        rearrange(attn.q_proj(x), "... q (group hpg dim) -> ... group hpg q dim", group=groups, hpg=hpg)
    )
    key = attn.k_norm(repeat(attn.k_proj(x), "... kv (group dim) -> ... group hpg kv dim", group=groups, hpg=hpg))
    value = repeat(attn.v_proj(x), "... kv (group dim) -> ... group hpg kv dim", group=groups, hpg=hpg)
    var_q, var_kv = attn._get_var_id(query, key, aux.variate_id, aux.variate_id)  # (series, 1, 1, tokens)
    time_q, time_kv = attn._get_time_id(query, key, aux.time_id, aux.time_id)
    if aux.uniform_blocks and aux.attn_mask is None and attn.time_attn_bias is None:
        # One variate id per block and no mask: the variate bias is one constant per head over the
        # whole block, which softmax ignores. Skipping it lets SDPA run without a float mask.
        biases = [None] * len(aux.blocks)
    else:
        biases = [
            _block_bias(attn, aux, query, key, b, var_q, var_kv, time_q, time_kv) for b in aux.blocks
        ]  # (series, group, hpg, n_s, n_s) each
    query, key = _qk_proj(attn, query, key, var_q, var_kv, time_q, time_kv, x.shape[-2])  # rotary: token-wise
    out = torch.cat(
        [
            nn.functional.scaled_dot_product_attention(
                query[..., b, :],
                key[..., b, :],
                value[..., b, :],
                attn_mask=bias,
                dropout_p=attn.attn_dropout_p,
                scale=attn.softmax_scale,
            )
            for b, bias in zip(aux.blocks, biases)
        ],
        dim=-2,
    )  # (series, group, hpg, tokens, head_dim)
    return attn.out_proj(rearrange(out, "... group hpg q dim -> ... q (group hpg dim)"))


def _qk_proj(attn, query, key, var_q, var_kv, time_q, time_kv, tokens: int) -> tuple[Tensor, Tensor]:
    """uni2ts' ``GroupedQueryAttention._qk_proj``, with its rotary time projection sized from the token
    count (time ids are below it) instead of ``time_id.max()``: that is a host sync on every call and
    a data-dependent branch that stops torch.compile."""
    from uni2ts.module.position import RotaryProjection

    qk = attn.time_qk_proj
    rotary = qk is not None and all(isinstance(p, RotaryProjection) for p in (qk.query_proj, qk.key_proj))
    if not rotary:
        return attn._qk_proj(query, key, var_q, var_kv, time_q, time_kv)
    if attn.var_qk_proj is not None:
        query, key = attn.var_qk_proj(query, key, query_id=var_q, kv_id=var_kv)

    def rotate(proj: nn.Module, x: Tensor, ids: Tensor) -> Tensor:  # RotaryProjection.forward
        proj._init_freq(max_len=tokens)
        return proj.cos[ids] * x + proj.sin[ids] * proj._rotate(x)

    if qk.partial_factor is None:
        return rotate(qk.query_proj, query, time_q), rotate(qk.key_proj, key, time_kv)
    queries, keys = list(query.split(qk.split_sizes, dim=-1)), list(key.split(qk.split_sizes, dim=-1))
    queries[1], keys[1] = rotate(qk.query_proj, queries[1], time_q), rotate(qk.key_proj, keys[1], time_kv)
    return torch.cat(queries, dim=-1), torch.cat(keys, dim=-1)


def _block_bias(attn, aux, query, key, block, var_q, var_kv, time_q, time_kv) -> Tensor:
    """uni2ts' variate/time attention bias (and mask) of one block."""
    return attn._update_attn_mask(
        None if aux.attn_mask is None else aux.attn_mask[:, block, block],
        query[..., block, :],
        key[..., block, :],
        query_var_id=_ids(var_q, block),
        kv_var_id=_ids(var_kv, block),
        query_time_id=_ids(time_q, block),
        kv_time_id=_ids(time_kv, block),
    )


def _scale_variate_ids(tokens: list[ScaleTokens]) -> Tensor:
    """``(series, all tokens)``: variate ids of concatenated scales, distinct across scales (scale
    ``i``'s ids shifted by the variates of the scales before it: one variate per scale, the paper's
    "scales as variates")."""
    offsets = [sum(t.variates for t in tokens[:idx]) for idx in range(len(tokens))]
    return torch.cat([t.aux.variate_id + offset for offset, t in zip(offsets, tokens)], dim=1)


def _ids(ids: Tensor | None, block: slice) -> Tensor | None:
    return None if ids is None else ids[..., block]


def _sample_mask(sample_id: Tensor) -> Tensor:
    """uni2ts' packed_attention_mask: ``(series, tokens, tokens)``, True within the same sample."""
    return sample_id.unsqueeze(-1) == sample_id.unsqueeze(-2)
