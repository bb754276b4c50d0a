"""The msft spec of uni2ts `MoiraiModule` (MOIRAI 1.0 / 1.1, small / base / large).

Each scale is packed exactly as `MoiraiForecast` packs a univariate series (see `packing.py`) and
goes through the module's own pieces: the packed std scaler (per-scale instance scaling of the
context), the frozen ``in_proj`` (followed by msft's per-scale adapter), the mask token on the
prediction patches, the encoder layers (with their sample mask, variate bias and rotary time ids),
then the encoder's final norm and the pretrained mixture head ``param_proj`` on the prediction
tokens. With ``scales=[1]`` at initialisation this is `MoiraiModule.forward` on the same batch.

When scales are concatenated (``attention_impl="dense"`` or no intra-scale attention), each scale
is its own variate (the paper's "scales as variates"): variate id = scale index, time ids restart
at 0 per scale, and the block-diagonal mask is composed with MOIRAI's sample mask.

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
from einops import rearrange
from torch import Tensor, nn
from torch.distributions import Distribution

from msft.layers import block_diagonal_mask
from msft.registry import BackboneSpec, ScaleTokens, register_backbone

from .packing import pack_series, patchify_target

#: patch size per frequency: the lower end of uni2ts' DefaultPatchSizeConstraints range, so that
#: coarse scales (s times fewer steps) still get enough context tokens.
FREQ_PATCH_SIZES = {"S": 64, "T": 32, "H": 32, "D": 16, "B": 16, "W": 16, "M": 8, "Q": 8, "Y": 8}
_FREQ_UNITS = {"MIN": "T", "SEC": "S", "BH": "H", "ME": "M", "MS": "M", "QE": "Q", "QS": "Q", "YE": "Y", "YS": "Y", "A": "Y", "AS": "Y"}
DEFAULT_PATCH_SIZE = 32
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


@dataclass
class MoiraiOutput:
    """One scale's predictive distribution over its prediction patches."""

    distr: Distribution  # batch shape (series, n_horizon, max_patch)
    params: Any  # the mixture parameters (pytree of (series, n_horizon, max_patch) tensors)
    patch_size: int
    horizon: int  # steps at this scale's resolution

    def sample(self, num_samples: int) -> Tensor:
        """``(series, num_samples, horizon)`` sample paths."""
        draws = self.distr.sample(torch.Size((num_samples,)))  # (samples, series, n_horizon, max_patch)
        draws = rearrange(draws[..., : self.patch_size], "s n t p -> n s (t p)")
        return draws[..., : self.horizon]


class MoiraiHead(nn.Module):
    """A trainable copy of the pretrained mixture head, shared by all scales (``train_head=True``)."""

    def __init__(self, param_proj: nn.Module):
        super().__init__()
        self.param_proj = copy.deepcopy(param_proj).requires_grad_(True)

    def forward(self, reprs: Tensor, patch_size: Tensor) -> Any:
        return self.param_proj(reprs, patch_size)


@register_backbone
class MoiraiSpec(BackboneSpec):
    name = "moirai"
    module_types = ("uni2ts.model.moirai.module.MoiraiModule",)
    input_projection = "in_proj"
    attention_projections = (r"encoder\.layers\.\d+\.self_attn\.(q|k|v)_proj",)
    probabilistic = True

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

    def build_heads(self, num_scales: int) -> nn.Module | None:
        return MoiraiHead(self.backbone.param_proj) if self.train_head else None

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        m = self.backbone
        batch = pack_series(context, observed, horizon, self._patch_size, self._max_patch)
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
        )
        return ScaleTokens(hidden, num_prefix=0, num_context=batch.num_context, num_horizon=batch.num_horizon, aux=aux)

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: MoiraiAux) -> Tensor:
        return layer(hidden, aux.attn_mask, var_id=aux.variate_id, time_id=aux.time_id)

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> MoiraiAux:
        sample_id = torch.cat([t.aux.sample_id for t in tokens], dim=1)  # (series, all tokens)
        mask = _sample_mask(sample_id)
        if block_diagonal:
            lengths = [t.hidden.shape[1] for t in tokens]
            mask = mask & block_diagonal_mask(lengths, sample_id.device)
        return MoiraiAux(
            attn_mask=mask,
            time_id=torch.cat([t.aux.time_id for t in tokens], dim=1),
            variate_id=torch.cat([t.aux.variate_id + idx for idx, t in enumerate(tokens)], dim=1),
            sample_id=sample_id,
        )

    def head(self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None) -> MoiraiOutput:
        m, aux, n = self.backbone, tokens.aux, tokens.num_horizon
        reprs = m.encoder.norm(hidden[:, -n:])  # (series, n_horizon, d_model)
        proj = heads if heads is not None else m.param_proj
        params = proj(reprs, aux.patch_size[:, -n:])
        distr = m.distr_output.distribution(params, loc=aux.loc[:, -n:], scale=aux.scale[:, -n:])
        return MoiraiOutput(distr=distr, params=params, patch_size=self._patch_size, horizon=horizon)

    def point(self, output: MoiraiOutput) -> Tensor:
        """The median of ``point_samples`` sample paths (the mixture has no closed-form median)."""
        return output.sample(self.point_samples).median(dim=1).values

    def sample(self, output: MoiraiOutput, num_samples: int) -> Tensor:
        return output.sample(num_samples)

    def loss(self, output: MoiraiOutput, target: Tensor, observed: Tensor) -> Tensor:
        """Mean negative log-likelihood over the observed target points of this scale."""
        values, seen = patchify_target(target, observed, self._patch_size, self._max_patch)
        log_prob = output.distr.log_prob(values)  # (series, n_horizon, max_patch)
        nll = torch.where(seen, -log_prob, torch.zeros_like(log_prob))
        return nll.sum() / seen.sum().clamp(min=1)


def _sample_mask(sample_id: Tensor) -> Tensor:
    """uni2ts' packed_attention_mask: ``(series, tokens, tokens)``, True within the same sample."""
    return sample_id.unsqueeze(-1) == sample_id.unsqueeze(-2)
