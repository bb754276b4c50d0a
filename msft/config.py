"""The one validated configuration of a multi-scale finetuned model.

Every ablation of the MSFT paper is one boolean here, so a sweep over ablations is a sweep over
fields. The dataclass is plain (no torch import) so configs can be built and checked cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from msft.checks import check_levels

ATTENTION_IMPLS = ("blocked", "dense")
POINT_FORECASTS = ("median", "mean")
FUSION_OBJECTIVES = ("per_scale", "fused", "fused_crps")
SAMPLE_FUSIONS = ("linear", "mixture", "quantile", "location")
COARSE_PATHS = ("repeat", "residual")
MODES = ("S", "M")


@dataclass(frozen=True)
class MSFTConfig:
    """Options of `msft.wrap`; a bad value raises ``ValueError`` naming the field.

    scales: down-sampling factors, strictly increasing, starting at 1, each dividing the next.
    lora_rank / lora_alpha / lora_dropout: the per-scale LoRA pairs (scaling = alpha / rank).
    lora_targets: module names (exact, dotted suffix, or a regex matching the full name) that get
        per-scale LoRA; ``None`` uses the backbone's attention q/k/v projections.
    adapters, lora, c2f, f2c: switch each injected component on or off (ablations).
    intra_scale_attention: tokens attend only within their own scale (off: across all scales).
    attention_impl: how intra-scale attention is computed: "blocked" runs each scale's block on
        its own (cost sum n_s^2); "dense" uses one block-diagonal masked matrix (cost (sum n_s)^2),
        kept as a reference for tests and benchmarks.
    learned_fusion: learn the softmax fusion logits (off: fixed weights, uniform unless fusion_prior).
    fusion_prior: initial logit of scale 1 (the others start at 0); > 0 favours the original scale.
        With ``learned_fusion=False`` the weights stay at ``softmax(fusion_prior, 0, ..., 0)``.
    fusion_objective: what trains the fusion logits. "fused" (default): each scale's loss is
        weighted by the detached ``w_s`` (the scales train as in the paper) and the logits alone are
        fitted by the squared error of the fused point forecast at the original resolution.
        "per_scale" (the published method): the loss is ``sum_s w_s * loss_s``, so the gradient
        moves weight towards the scale whose own loss is lowest (a pooled, smoother target usually
        has the lowest) whatever its forecast is worth after up-sampling. "fused" is the default
        because it was best on validation, 3 seeds on ETTh1 / ETTh2 / ETTm1 (results/recipe/fusion.md).
        "fused_crps" (probabilistic backbones): as "fused", but the logits are fitted by the CRPS of
        the fused distribution (``sample_fusion``'s, any of the four) at the original resolution,
        from ``FUSION_CRPS_PATHS`` detached sample paths per scale (`msft.losses.fused_crps`): the
        score the PF protocol reads, where the squared error of the mean rewards averaging scales
        even when that narrows the fused distribution (results/recipe/pf_fusion_diagnostic.md).
    point_forecast: for probabilistic backbones, what `predict` returns: "median" of the fused
        sample paths (default), or "mean": the fusion of each scale's closed-form mean, which is
        exactly the mean of the fused paths (fusion is linear) and needs no sampling.
    sample_fusion: how sample paths of several scales become one (probabilistic backbones;
        `msft.fusion.fuse_paths`). "linear" (default, the published fusion): path j is
        ``sum_s w_s * path_j(s)``, an average of independent draws, so its spread is narrower than
        any scale's (about ``sqrt(sum w_s^2)`` of it). "mixture": path j is scale s's path j with
        probability ``w_s``: the fused distribution is the mixture ``sum_s w_s p_s``, with the same
        mean (so MSE of the mean is unchanged) and each scale's spread kept. "quantile"
        (Vincentization): per step the w-weighted average of each scale's sorted paths, the fused
        q-quantile ``sum_s w_s Q_s(q)`` (spread ``sum_s w_s sigma_s``), in the order of scale 1's paths.
        "location": scale 1's paths shifted by the fused mean minus scale 1's mean (the coarse scales
        move the centre, scale 1 keeps the spread). All four have the fused mean ``sum_s w_s mean_s``.
        Inference only: a trained model switches with ``model.set_sample_fusion``.
    coarse_paths: how a coarse scale's sample paths (draws of s-step means) reach the original
        resolution before they are fused (`msft.sampling.upsample_paths`). "repeat" (the
        published up-sampling): each block's draw repeated over its s steps, so inside a block the
        path is flat and the per-step spread is that of an s-step mean (too narrow for a single
        step). "residual" (default): the block's draw plus scale 1's path j's deviation from its own
        block mean: the block means are still the coarse draws, the within-block variation is scale
        1's. Chosen on validation: lower CRPS than "repeat" on every seed under the PF setup and
        80% intervals near nominal (results/recipe/pf_fusion.md), and a lower or equal LSF validation
        MSE (results/recipe/coarse_paths.md). Adapters saved before this option load with "repeat".
        Switch a trained model with ``model.set_coarse_paths``.
    context_lengths: how much of the past each scale sees (coarse scales can see further back at
        the token count of scale 1). ``None`` (default): every scale sees the whole past given.
        "equal_tokens": scale ``s`` sees the last ``ceil(P * s / max(scales))`` of the ``P`` steps
        given, so every scale has about the tokens of scale 1 and the coarsest sees the whole past
        (for [1, 2, 4] and a past of 2048 steps: 512, 1024 and 2048). A list of step counts, one
        per scale: scale ``s`` sees its last ``context_lengths[i]`` steps (the past must hold the
        longest). Cross-scale aggregation pairs only the tokens where two scales overlap in time.
    horizon: forecast length for backbones whose heads depend on it (MOMENT, Time-DPD).
    patch_size: patch size for backbones that support several (MOIRAI); ``None`` = backbone default.
    prompt_tokens: learnable soft-prompt vectors (Lester et al., 2021) prepended to each scale's
        tokens at the input of the encoder, one prompt per scale; 0 (default) = none. Only backbones
        whose spec implements `add_prefix` (``supports_prefix``) take it.
    gradient_checkpointing: recompute every backbone layer in the backward pass instead of keeping
        its activations (less memory, about one more forward of compute), on every backbone; the
        active scale is replayed on recomputation, so gradients are those of the plain forward.
    backbone_options: extra options read by the backbone's spec (documented there).
    mode: "S" (default): channel independence, every variate its own series. "M" (backbones whose
        spec implements ``embed_variates``: MOIRAI): all variates of one series, at every scale, form
        one token sequence and attend to each other (MOIRAI's variate ids and any-variate attention
        bias), within the scale; cross-scale aggregation stays per variate, and the fusion weights
        are shared by all variates. Names as uni2ts' ``data.mode``.
    past_covariates / known_covariates: the covariates the model takes, as names (data-frame
        columns) or a count: past-only covariates ``(batch, context, k1)`` and known-future ones
        ``(batch, context + horizon, k2)``, extra variates at every scale (MOIRAI's
        ``past_feat_dynamic_real`` / ``feat_dynamic_real``) that the loss never covers. With
        ``mode="S"`` each target variate attends to the covariates but not to the other targets.
    quantile_levels: point backbones only (opt-in): levels in (0, 1), e.g. (0.1, ..., 0.9), each
        getting its own copy of every scale's head, trained with the pinball loss (added to the
        point loss) and fused per level; `MSFTModel.predict_quantiles` sorts them so they never
        cross. Probabilistic backbones (MOIRAI) give quantiles from their sample paths instead.
    """

    scales: tuple[int, ...] = (1, 2, 4)
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = None
    adapters: bool = True
    lora: bool = True
    intra_scale_attention: bool = True
    attention_impl: str = "blocked"
    c2f: bool = True
    f2c: bool = True
    aggregation_rank: int | None = None
    learned_fusion: bool = True
    fusion_prior: float = 0.0
    fusion_objective: str = "fused"
    point_forecast: str = "median"
    sample_fusion: str = "linear"
    coarse_paths: str = "residual"
    context_lengths: str | tuple[int, ...] | None = None
    horizon: int | None = None
    patch_size: int | None = None
    prompt_tokens: int = 0
    gradient_checkpointing: bool = False
    backbone_options: dict[str, Any] = field(default_factory=dict)
    quantile_levels: tuple[float, ...] | None = None
    mode: str = "S"
    past_covariates: tuple[str, ...] = ()
    known_covariates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {MODES}")
        for name in ("past_covariates", "known_covariates"):
            object.__setattr__(self, name, _check_covariates(name, getattr(self, name)))
        shared = sorted(set(self.past_covariates) & set(self.known_covariates))
        if shared:
            raise ValueError(
                f"covariates {shared} are both past_covariates and known_covariates: expected each in one of them"
            )
        object.__setattr__(self, "scales", _check_scales(self.scales))
        if self.lora_targets is not None:
            if isinstance(self.lora_targets, str):
                object.__setattr__(self, "lora_targets", (self.lora_targets,))
            else:
                object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
            if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
                raise ValueError(f"lora_targets={self.lora_targets!r}: expected non-empty module names")
        _check_int("lora_rank", self.lora_rank, minimum=1)
        if not (isinstance(self.lora_alpha, (int, float)) and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha={self.lora_alpha!r}: expected a positive number")
        if not (isinstance(self.lora_dropout, (int, float)) and 0.0 <= self.lora_dropout < 1.0):
            raise ValueError(f"lora_dropout={self.lora_dropout!r}: expected a number in [0, 1)")
        for name in (
            "adapters",
            "lora",
            "intra_scale_attention",
            "c2f",
            "f2c",
            "learned_fusion",
            "gradient_checkpointing",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl={self.attention_impl!r}: expected one of {ATTENTION_IMPLS}")
        if self.fusion_objective not in FUSION_OBJECTIVES:
            raise ValueError(f"fusion_objective={self.fusion_objective!r}: expected one of {FUSION_OBJECTIVES}")
        if self.point_forecast not in POINT_FORECASTS:
            raise ValueError(f"point_forecast={self.point_forecast!r}: expected one of {POINT_FORECASTS}")
        if self.sample_fusion not in SAMPLE_FUSIONS:
            raise ValueError(f"sample_fusion={self.sample_fusion!r}: expected one of {SAMPLE_FUSIONS}")
        if self.coarse_paths not in COARSE_PATHS:
            raise ValueError(f"coarse_paths={self.coarse_paths!r}: expected one of {COARSE_PATHS}")
        if not isinstance(self.fusion_prior, (int, float)):
            raise ValueError(f"fusion_prior={self.fusion_prior!r}: expected a number")
        if self.context_lengths is not None:
            object.__setattr__(self, "context_lengths", _check_context_lengths(self.context_lengths, self.scales))
        if self.horizon is not None:
            _check_int("horizon", self.horizon, minimum=1)
        if self.aggregation_rank is not None:
            _check_int("aggregation_rank", self.aggregation_rank, minimum=1)
        if self.patch_size is not None:
            _check_int("patch_size", self.patch_size, minimum=1)
        _check_int("prompt_tokens", self.prompt_tokens, minimum=0)
        if self.quantile_levels is not None:
            object.__setattr__(self, "quantile_levels", check_levels(self.quantile_levels, increasing=True))
        if not isinstance(self.backbone_options, dict):
            raise ValueError(f"backbone_options={self.backbone_options!r}: expected a dict")

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def joint_variates(self) -> bool:
        """Whether variates attend to each other (``mode="M"`` or any covariate)."""
        return self.mode == "M" or bool(self.past_covariates or self.known_covariates)

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["scales"] = list(self.scales)
        if self.lora_targets is not None:
            out["lora_targets"] = list(self.lora_targets)
        if self.quantile_levels is not None:
            out["quantile_levels"] = list(self.quantile_levels)
        if isinstance(self.context_lengths, tuple):
            out["context_lengths"] = list(self.context_lengths)
        out["past_covariates"] = list(self.past_covariates)
        out["known_covariates"] = list(self.known_covariates)
        return out

    def scale_context_steps(self, past_steps: int) -> list[int]:
        """Steps of a ``past_steps``-long past that each scale sees (`context_lengths`)."""
        if self.context_lengths is None:
            return [past_steps] * self.num_scales
        if self.context_lengths == "equal_tokens":
            top = self.scales[-1]
            return [-(-past_steps * s // top) for s in self.scales]
        return list(self.context_lengths)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MSFTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MSFT option(s) {unknown}: expected some of {sorted(known)}")
        return cls(**values)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")


def _check_covariates(name: str, value: Any) -> tuple[str, ...]:
    """Covariate names: a count ``k`` names them ``{name}_0`` .. ``{name}_{k-1}``; names are distinct
    non-empty strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name}={value!r}: expected a count >= 0 or a list of names")
        return tuple(f"{name}_{i}" for i in range(value))
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise ValueError(f"{name}={value!r}: expected a list of names or a count") from None
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{name}={list(names)}: expected non-empty strings")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{name}={list(names)}: {duplicated} appear more than once")
    return names


CONTEXT_LENGTHS = ("equal_tokens",)


def _check_context_lengths(value: Any, scales: tuple[int, ...]) -> str | tuple[int, ...]:
    if isinstance(value, str):
        if value not in CONTEXT_LENGTHS:
            raise ValueError(f"context_lengths={value!r}: expected None, {CONTEXT_LENGTHS} or one step count per scale")
        return value
    try:
        steps = tuple(value)
    except TypeError:
        raise ValueError(f"context_lengths={value!r}: expected None, 'equal_tokens' or a list of integers") from None
    if len(steps) != len(scales) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in steps):
        raise ValueError(f"context_lengths={list(steps)}: expected one positive integer per scale of {list(scales)}")
    return steps


def _check_scales(scales: Any) -> tuple[int, ...]:
    try:
        scales = tuple(scales)
    except TypeError:
        raise ValueError(f"scales={scales!r}: expected a sequence of integers such as [1, 2, 4]") from None
    if not scales:
        raise ValueError("scales=(): expected at least one scale, starting with 1")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in scales):
        raise ValueError(f"scales={list(scales)}: expected integers")
    if scales[0] != 1:
        raise ValueError(f"scales={list(scales)}: expected the first scale to be 1 (the original resolution)")
    for fine, coarse in zip(scales, scales[1:]):
        if coarse <= fine:
            raise ValueError(f"scales={list(scales)}: expected strictly increasing scales ({coarse} after {fine})")
        if coarse % fine:
            raise ValueError(
                f"scales={list(scales)}: expected each scale to divide the next ({fine} does not divide {coarse})"
            )
    return scales
