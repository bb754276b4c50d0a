"""`wrap` a pretrained backbone into an `MSFTModel`, train it, `unwrap` it back.

The model runs the backbone's layers itself, scale by scale: each scale's series is pooled,
tokenised by the backbone's own (frozen) input path plus a per-scale adapter, and then every layer
runs on each scale's block separately (intra-scale attention at cost sum n_s^2) with that scale's
LoRA pair active, followed by cross-scale aggregation. Per-scale forecasts are fused with softmax
weights (docs/design.md §2).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from msft.calibration import CALIBRATION_FILE, DEFAULT_LEVELS, ConformalCalibration
from msft.calibration import METHODS as CALIBRATION_METHODS
from msft.checks import check_future, check_levels, check_series
from msft.config import MSFTConfig
from msft.features import Features, ScaleFeatures
from msft.fusion import fuse_paths
from msft.layers import (
    CrossScaleAggregation,
    ScaleAdapter,
    ScaleFusion,
    ScaleLoRA,
    ScaleState,
    injected_parameter_names,
)
from msft.losses import fused_crps, pinball_loss, scale_free_mse
from msft.provenance import check_same_base, identity
from msft.registry import BackboneSpec, Forecast, ScaleTokens, spec_for
from msft.sampling import downsample, sample_quantiles, scaled_length, upsample_paths
from msft.variates import Covariates, build_groups, check_covariates, joint, per_variate, pool_groups

#: Series whose largest observed magnitude exceeds this are divided by a power of two before the
#: backbone sees them (and its forecasts multiplied back): instance statistics in float32 overflow
#: near 1e19 (the variance squares the values). Below it nothing changes, bit for bit.
_MAX_MAGNITUDE = 2.0**40


def _magnitude_factor(series: Tensor, observed: Tensor) -> Tensor | None:
    """``(series, 1)`` powers of two that bring every series under `_MAX_MAGNITUDE`, or None if all are.
    Under ``torch.compile`` it is None: the check is a host sync, which a compiled graph cannot hold
    (series beyond 2**40 are then the caller's to scale)."""
    if torch.compiler.is_compiling():
        return None
    largest = torch.where(observed, series.abs(), torch.zeros_like(series)).amax(-1, keepdim=True)
    if not bool((largest > _MAX_MAGNITUDE).any()):
        return None
    exponent = torch.ceil(torch.log2(largest.double() / _MAX_MAGNITUDE)).clamp(min=0)
    return torch.exp2(exponent).to(series.dtype)  # exact: dividing by a power of two loses no digits


class _Rescaled(Forecast):
    """A forecast of series divided by ``factor`` ``(series, 1)``, read in the series' own units.
    The loss compares with the target divided the same way (the scale-free problem the model saw)."""

    def __init__(self, inner: Forecast, factor: Tensor):
        self.inner, self.factor = inner, factor

    def point(self) -> Tensor:
        return self.inner.point() * self.factor  # (series, H)

    def mean(self) -> Tensor:
        return self.inner.mean() * self.factor

    def sample(self, num_samples: int) -> Tensor:
        return self.inner.sample(num_samples) * self.factor[:, :, None]  # (series, S, H)

    def loss(self, target: Tensor, observed: Tensor) -> Tensor:
        return self.inner.loss(target / self.factor, observed)

    def quantiles(self, levels: tuple[float, ...]) -> Tensor:
        return self.inner.quantiles(levels) * self.factor[:, :, None]  # (series, Q, H)


class _Pass(NamedTuple):
    outputs: list[Any]  # per scale, the spec's head output
    hidden: list[Tensor]  # per scale, (series, tokens, d_model) after the last layer
    tokens: list[ScaleTokens]
    observed: list[Tensor]  # per scale, (series, ceil(L / s)) observed mask of the pooled context
    factor: Tensor | None = None  # (series, 1): the series were divided by it (huge magnitudes only)


ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "msft_config.json"
FUSION_CRPS_PATHS = 16  # sample paths per scale behind fusion_objective="fused_crps"
_WRAPPED_FLAG = "_msft_wrapped"


class MSFTModel(nn.Module):
    """A backbone with msft's per-scale components injected. Build it with `msft.wrap`."""

    #: conformal corrections of the quantiles and sample paths, fitted by `calibrate` (None: none);
    #: saved with the adapter (`msft.calibration`)
    calibration: ConformalCalibration | None = None

    def __init__(self, backbone: nn.Module, config: MSFTConfig):
        super().__init__()
        if isinstance(backbone, MSFTModel) or getattr(backbone, _WRAPPED_FLAG, False):
            raise ValueError("the backbone is already wrapped by msft: call msft.unwrap(model) first")
        spec_cls = spec_for(backbone)
        self.config = config
        self.spec: BackboneSpec = spec_cls(backbone, config)
        if config.joint_variates and not self.spec.supports_variates:
            raise ValueError(
                f"{_variates_options(config)}: the {self.spec.name} backbone is channel-independent and takes no "
                "covariates (its spec has no embed_variates); expected mode='S' without covariates"
            )
        if config.joint_variates and config.prompt_tokens:
            raise ValueError(
                f"prompt_tokens={config.prompt_tokens} with {_variates_options(config)}: soft prompts are "
                "per series; expected prompt_tokens=0 with joint variates or covariates"
            )
        if config.prompt_tokens and not self.spec.supports_prefix:
            raise ValueError(
                f"prompt_tokens={config.prompt_tokens}: the {self.spec.name} backbone does not support "
                "prompt_tokens (its spec has no add_prefix); expected prompt_tokens=0"
            )
        if config.fusion_objective == "fused_crps" and not self.spec.probabilistic:
            raise ValueError(
                f"fusion_objective='fused_crps': the {self.spec.name} backbone gives point forecasts, which have "
                "no CRPS; expected fusion_objective='fused' or 'per_scale'"
            )
        if config.quantile_levels is not None and self.spec.probabilistic:
            raise ValueError(
                f"quantile_levels={list(config.quantile_levels)}: the {self.spec.name} backbone is probabilistic and "
                "gives quantiles from its sample paths (predict_quantiles); expected quantile_levels=None"
            )
        self.backbone = backbone
        #: the base model's identity (source, revision, weight fingerprint), saved with the adapter
        self.base_identity = identity(backbone, self.spec.name)
        self._state = ScaleState()
        self._requires_grad = {name: p.requires_grad for name, p in backbone.named_parameters()}
        self._wrapped: list[str] = []
        self._own_checkpointing: list[nn.Module] = []
        lora_names = self.spec.lora_modules(config.lora_targets) if config.lora else []
        try:
            self._inject(lora_names)
        except Exception:  # leave the backbone exactly as it was given
            self._restore()
            raise

    def _inject(self, lora_names: list[str]) -> None:
        config, backbone = self.config, self.backbone
        backbone.requires_grad_(False)
        d_model, k = self.spec.d_model(), config.num_scales
        if config.adapters:
            self._replace(self.spec.input_projection, lambda m: ScaleAdapter(m, k, d_model, self._state))
        for name in lora_names:
            self._replace(
                name,
                lambda m: ScaleLoRA(m, k, config.lora_rank, config.lora_alpha, config.lora_dropout, self._state),
            )
        num_layers = len(self.spec.layers())
        self.msft_aggregation = (
            nn.ModuleList(
                CrossScaleAggregation(
                    config.scales, d_model, config.c2f, config.f2c, config.aggregation_rank, causal=self.spec.causal
                )
                for _ in range(num_layers)
            )
            if k > 1 and (config.c2f or config.f2c)
            else None
        )
        self.msft_heads = self.spec.build_heads(k)
        self.msft_quantile_heads = (
            nn.ModuleList(self._build_quantile_heads(k) for _ in config.quantile_levels)
            if config.quantile_levels
            else None
        )
        # Soft prompts are not identity at init (nothing prepended would be); small values as in
        # prompt tuning, so the frozen backbone starts close to its own behaviour.
        self.msft_prompt = (
            nn.Parameter(torch.randn(k, config.prompt_tokens, d_model) * 0.02) if config.prompt_tokens else None
        )
        # one scale has nothing to fuse: its logit stays fixed (a trainable parameter outside the loss would
        # stop DDP, and the weight is 1 whatever it is)
        self.msft_fusion = ScaleFusion(k, config.learned_fusion and k > 1, config.fusion_prior)
        # A layer's own checkpointing (transformers' `gradient_checkpointing` flag) would recompute it
        # outside the active scale: msft checkpoints those layers itself while wrapped.
        for layer in self.spec.layers():
            if getattr(layer, "gradient_checkpointing", False) is True:
                layer.gradient_checkpointing = False
                self._own_checkpointing.append(layer)
        setattr(backbone, _WRAPPED_FLAG, True)

    # -- public API -------------------------------------------------------------------------------
    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    def set_sample_fusion(self, sample_fusion: str) -> MSFTModel:
        """Switch how sample paths of the scales are fused (`MSFTConfig.sample_fusion`: "linear",
        "mixture", "quantile" or "location"); inference only, so a trained model can switch. Returns
        the model."""
        self.config = dataclasses.replace(self.config, sample_fusion=sample_fusion)  # validated there
        return self

    def set_coarse_paths(self, coarse_paths: str) -> MSFTModel:
        """Switch how coarse scales' sample paths are up-sampled before fusion
        (`MSFTConfig.coarse_paths`: "repeat" or "residual"); inference only. Returns the model."""
        self.config = dataclasses.replace(self.config, coarse_paths=coarse_paths)  # validated there
        return self

    def _upsampled(self, per_scale: list[Tensor], horizon: int) -> list[Tensor]:
        """Each scale's ``(..., steps)`` forecast (paths, means, points or quantiles) at the original
        resolution ``(..., horizon)``, coarse ones up-sampled by ``coarse_paths``
        (`msft.sampling.upsample_paths`; "residual" adds scale 1's within-block deviations, and is
        linear in them, so the fused paths' mean stays the fusion of the means)."""
        fine = per_scale[0] if self.config.coarse_paths == "residual" else None  # all its steps: see upsample_paths
        return [upsample_paths(pred, s, horizon, fine) for pred, s in zip(per_scale, self.scales)]

    def _scale_paths(self, outputs: list[Forecast], horizon: int, num_samples: int) -> Tensor:
        """``(scales, series, S, horizon)``: every scale's sample paths at the original resolution."""
        return torch.stack(self._upsampled([out.sample(num_samples) for out in outputs], horizon))

    @property
    def fusion_weights(self) -> Tensor:
        """Softmax fusion weights, one per scale."""
        return self.msft_fusion.weights()

    def loss(
        self,
        past_target: Tensor,
        future_target: Tensor,
        past_observed: Tensor | None = None,
        future_observed: Tensor | None = None,
        *,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> Tensor:
        """Fusion-weighted sum of the per-scale losses against the pooled future (scalar).

        With ``fusion_objective="fused"`` the weights are detached there, and the squared error of
        the fused point forecast (each scale's point forecast detached; in units of the batch's
        context variance, `msft.losses.scale_free_mse`) is added to fit the logits;
        ``"fused_crps"`` adds the CRPS of the fused distribution instead (`msft.losses.fused_crps`,
        from ``FUSION_CRPS_PATHS`` sample paths per scale drawn without gradient).

        Covariates (models built with ``past_covariates`` / ``known_covariates``): ``past_covariates``
        ``(batch, context, k1)``, ``known_covariates`` ``(batch, context + horizon, k2)``; the loss
        covers the target variates only.
        """
        past_target, past_observed = self._check_past(past_target, past_observed)
        future_target, future_observed = check_future(future_target, future_observed, past_target)
        horizon = future_target.shape[1]
        covariates = check_covariates(self.config, past_target, horizon, past_covariates, known_covariates)
        run = self._run(past_target, past_observed, horizon, covariates)
        outputs = run.outputs
        future = rearrange(future_target, "b t v -> (b v) t")
        future_obs = rearrange(future_observed, "b t v -> (b v) t")
        quantile_outputs = self._quantile_outputs(run, horizon) if self.msft_quantile_heads is not None else None
        weights = self.fusion_weights
        fused_objective = self.config.fusion_objective in ("fused", "fused_crps")
        total = past_target.new_zeros(())
        for idx, (scale, output) in enumerate(zip(self.scales, outputs)):
            target, observed = downsample(future, future_obs, scale, side="right")
            weight = weights[idx].detach() if fused_objective else weights[idx]
            total = total + weight * output.loss(target, observed)
            if quantile_outputs is not None:  # each level's head against the same pooled future
                total = total + weight * pinball_loss(
                    quantile_outputs[idx], target, observed, self.config.quantile_levels
                )
        if fused_objective and len(self.scales) > 1 and self.msft_fusion.msft_fusion_logits.requires_grad:
            past = rearrange(past_target, "b t v -> (b v) t")
            past_obs = rearrange(past_observed, "b t v -> (b v) t")
            if self.config.fusion_objective == "fused_crps":
                with torch.no_grad():
                    paths = self._scale_paths(outputs, horizon, FUSION_CRPS_PATHS)  # (scales, series, paths, H)
                    means = torch.stack(self._upsampled([o.mean() for o in outputs], horizon))
                fusion = self.config.sample_fusion  # the CRPS of the distribution predict_samples draws from
                total = total + fused_crps(paths, weights, future, future_obs, past, past_obs, fusion, means=means)
            else:
                probabilistic = self.spec.probabilistic
                per_scale = [(out.mean() if probabilistic else out.point()).detach() for out in outputs]
                total = total + scale_free_mse(self._fuse(per_scale, horizon), future, future_obs, past, past_obs)
        return total

    def predict(
        self,
        past_target: Tensor,
        horizon: int,
        past_observed: Tensor | None = None,
        *,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> Tensor:
        """Fused point forecast ``(batch, horizon, variate)`` at the original resolution.

        For probabilistic backbones this is the median of the fused sample paths (see
        `predict_samples`), the point forecast that minimises absolute error, or with
        ``point_forecast="mean"`` the fusion of each scale's mean: exactly the mean of the fused
        paths (fusion is linear), the forecast that minimises squared error, with no sampling.
        Covariates as in `loss`.
        """
        past_target, past_observed = self._check_past(past_target, past_observed)
        outputs = self._forward(past_target, past_observed, horizon, past_covariates, known_covariates)
        return self._point_forecast(outputs, horizon, past_target.shape[2])

    def forward_features(self, past_target: Tensor, horizon: int, past_observed: Tensor | None = None) -> Features:
        """`predict`'s forecast and, per scale, the last layer's hidden states with their token layout
        and validity, from one forward pass (what distillation needs; no hooks, any backbone).
        ``Features.scales[0].pooled()`` is the finest scale's mean over its real data tokens."""
        if self.config.joint_variates:
            raise ValueError(
                f"forward_features: not available with {_variates_options(self.config)} (its features are "
                "per series); expected mode='S' without covariates"
            )
        past_target, past_observed = self._check_past(past_target, past_observed)
        run = self._run(past_target, past_observed, horizon)
        forecast = self._point_forecast(run.outputs, horizon, past_target.shape[2])
        scales = [
            ScaleFeatures(h, t.layout, self.spec.token_valid(t, observed))
            for h, t, observed in zip(run.hidden, run.tokens, run.observed)
        ]
        return Features(forecast, scales)

    def predict_scales(
        self,
        past_target: Tensor,
        horizon: int,
        past_observed: Tensor | None = None,
        *,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> list[Tensor]:
        """Each scale's own point forecast, ``(batch, ceil(horizon / s), variate)``, before fusion."""
        past_target, past_observed = self._check_past(past_target, past_observed)
        outputs = self._forward(past_target, past_observed, horizon, past_covariates, known_covariates)
        v = past_target.shape[2]
        return [rearrange(out.point(), "(b v) t -> b t v", v=v) for out in outputs]

    def predict_samples(
        self,
        past_target: Tensor,
        horizon: int,
        past_observed: Tensor | None = None,
        num_samples: int = 100,
        seed: int | None = None,
        *,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> Tensor:
        """``(batch, num_samples, horizon, variate)``: sample path j of every scale, up-sampled and
        fused with the softmax weights (probabilistic backbones only); with a `calibration`, each
        step's path of rank k moved by the conformal correction of level ``k / (S - 1)``.

        ``seed``: the same paths for the same seed and inputs, drawn under a forked RNG so the
        caller's global random state is left as it was; None draws from the global RNG."""
        if not self.spec.probabilistic:
            raise ValueError(f"predict_samples: the {self.spec.name} backbone gives point forecasts only; use predict")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples={num_samples!r}: expected a positive integer")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed={seed!r}: expected an integer or None")
        past_target, past_observed = self._check_past(past_target, past_observed)
        outputs = self._forward(past_target, past_observed, horizon, past_covariates, known_covariates)
        device = past_target.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seed is not None):
            if seed is not None:
                torch.random.default_generator.manual_seed(seed)
                if device.type == "cuda":
                    with torch.cuda.device(device):
                        torch.cuda.manual_seed(seed)
            paths = self._fused_samples(outputs, horizon, past_target.shape[2], num_samples)
        if self.calibration is not None:
            paths = self.calibration.adjust_paths(paths, past_target, past_observed)
        return paths

    def predict_quantiles(
        self,
        past_target: Tensor,
        horizon: int,
        quantile_levels=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        past_observed: Tensor | None = None,
        num_samples: int = 100,
        seed: int | None = None,
        *,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> Tensor:
        """``(batch, len(quantile_levels), horizon, variate)`` quantile forecasts, non-decreasing in the level.

        A backbone whose head predicts quantiles (`Forecast.quantiles`: Chronos-2, Moirai-2): every
        scale's quantiles at the levels, fused by quantile averaging (exact, deterministic; ordered
        as the heads give them, like the backbones' own pipelines).
        Other probabilistic backbones: GluonTS's sample quantile (the ``round((S-1) q)``-th order statistic)
        of ``num_samples`` fused sample paths (``seed``: as in `predict_samples`). Point backbones: the
        fused quantile heads (``quantile_levels`` in `msft.MSFTConfig`, deterministic), which must
        include every requested level. A `calibration` applies to both (through the sample paths, or
        to the heads' quantiles).
        """
        levels = check_levels(quantile_levels)
        if self.spec.forecast_type.gives_quantiles():  # a quantile head: exact, no sampling
            past_target, past_observed = self._check_past(past_target, past_observed)
            outputs = self._forward(past_target, past_observed, horizon, past_covariates, known_covariates)
            fused = self._fuse([out.quantiles(levels) for out in outputs], horizon)  # (series, Q, H)
            # not re-sorted: a quantile head's values as its own pipeline returns them (Chronos-2 and
            # uni2ts do not sort theirs either), so the single-scale wrap equals the pipeline
            quantiles = rearrange(fused, "(b v) q t -> b q t v", v=past_target.shape[2])
            if self.calibration is not None:
                quantiles = self.calibration.adjust_quantiles(quantiles, levels, past_target, past_observed)
            return quantiles
        if self.spec.probabilistic:
            samples = self.predict_samples(
                past_target,
                horizon,
                past_observed,
                num_samples,
                seed,
                past_covariates=past_covariates,
                known_covariates=known_covariates,
            )  # (b, S, H, v)
            return sample_quantiles(samples, levels)
        trained = tuple(getattr(self.config, "quantile_levels", None) or ())
        if not trained:
            raise ValueError(
                f"predict_quantiles: the {self.spec.name} backbone gives point forecasts; wrap it with "
                "quantile_levels=(0.1, ..., 0.9) to train quantile heads"
            )
        past_target, past_observed = self._check_past(past_target, past_observed)
        check_covariates(self.config, past_target, horizon, past_covariates, known_covariates)  # none here
        quantiles = self._predict_head_quantiles(past_target, horizon, levels, trained, past_observed)
        if self.calibration is not None:
            quantiles = self.calibration.adjust_quantiles(quantiles, levels, past_target, past_observed)
        return quantiles

    @torch.no_grad()
    def calibrate(
        self,
        past_target: Tensor,
        future_target: Tensor,
        past_observed: Tensor | None = None,
        future_observed: Tensor | None = None,
        *,
        method: str = "conformal",
        quantile_levels: Any = None,
        per_step: bool | None = None,
        scale: str = "context",
        num_samples: int = 100,
        batch_size: int = 256,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> ConformalCalibration:
        """Fit split-conformal corrections on validation windows ``past_target (batch, time, variate)`` /
        ``future_target (batch, horizon, variate)`` and keep them (`calibration`); returns them.

        Each series of each window is one calibration window; the model's uncalibrated quantiles at
        ``quantile_levels`` (default `msft.calibration.DEFAULT_LEVELS`, or the trained levels of quantile
        heads) are compared with the truth, in units of each context's standard deviation
        (``scale="context"``) or of the data (``"none"``). ``per_step``: one correction per horizon step
        (None: when there are at least `msft.calibration.PER_STEP_WINDOWS` windows). Too few windows
        raise ``ValueError`` naming the minimum. Give the contexts the length the model will forecast
        from (the scale is read from them). A model built with covariates reads the windows'
        ``past_covariates`` / ``known_covariates`` (as `predict_quantiles`). ``calibration = None``
        removes it.
        """
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"method={method!r}: expected one of {CALIBRATION_METHODS}")
        past_target, past_observed = self._check_past(past_target, past_observed)
        future_target, future_observed = check_future(future_target, future_observed, past_target)
        if quantile_levels is None:
            trained = getattr(self.config, "quantile_levels", None)
            quantile_levels = DEFAULT_LEVELS if self.spec.probabilistic or not trained else trained
        levels = check_levels(quantile_levels)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
        horizon, previous, was_training = future_target.shape[1], self.calibration, self.training
        self.calibration = None  # fitted on the uncalibrated forecasts
        self.eval()
        try:
            quantiles = torch.cat(
                [
                    self.predict_quantiles(
                        past_target[i : i + batch_size],
                        horizon,
                        levels,
                        past_observed[i : i + batch_size],
                        num_samples,
                        past_covariates=None if past_covariates is None else past_covariates[i : i + batch_size],
                        known_covariates=None if known_covariates is None else known_covariates[i : i + batch_size],
                    )
                    for i in range(0, past_target.shape[0], batch_size)
                ]
            )  # (batch, Q, H, v)
            self.calibration = ConformalCalibration.fit(
                quantiles, levels, future_target, future_observed, past_target, past_observed, per_step, scale
            )
        except Exception:
            self.calibration = previous
            raise
        finally:
            self.train(was_training)
        return self.calibration

    def predict_all(
        self,
        past_target: Tensor,
        horizon: int,
        past_observed: Tensor | None = None,
        num_samples: int = 0,
        *,
        past_covariates: Tensor | None = None,
        known_covariates: Tensor | None = None,
    ) -> dict[str, Any]:
        """Every point forecast from one forward pass (what selection and LSF scoring read).

        ``"point"``: exactly `predict`'s forecast; ``"mean"``: the fused mean (probabilistic
        backbones: the fusion of each scale's closed-form mean; point backbones: the point forecast);
        ``"median"``: the median of ``num_samples`` fused sample paths (probabilistic backbones with
        ``num_samples > 0``, else the point forecast); ``"scales"``: each scale's mean (or point)
        forecast before fusion, ``(batch, ceil(horizon / s), variate)``. Fused ones are
        ``(batch, horizon, variate)``.
        """
        past_target, past_observed = self._check_past(past_target, past_observed)
        outputs = self._forward(past_target, past_observed, horizon, past_covariates, known_covariates)
        v = past_target.shape[2]
        probabilistic = self.spec.probabilistic
        per_scale = [out.mean() if probabilistic else out.point() for out in outputs]
        mean = rearrange(self._fuse(per_scale, horizon), "(b v) t -> b t v", v=v)
        median = mean
        if probabilistic and self.config.point_forecast == "median" and num_samples < 1:
            num_samples = 100  # `predict`'s forecast is the median of 100 fused paths
        if probabilistic and num_samples > 0:
            median = self._fused_samples(outputs, horizon, v, num_samples).median(dim=1).values  # (b, H, v)
        point = median if probabilistic and self.config.point_forecast == "median" else mean
        scales = [rearrange(p, "(b v) t -> b t v", v=v) for p in per_scale]
        return {"point": point, "mean": mean, "median": median, "scales": scales}

    def forward(
        self, past_target: Tensor, horizon: int, past_observed: Tensor | None = None, **covariates: Tensor
    ) -> Tensor:
        return self.predict(past_target, horizon, past_observed, **covariates)

    def msft_parameters(self) -> dict[str, nn.Parameter]:
        """msft's own parameters by name (what `save_adapter` writes)."""
        names = self.msft_state_names()
        return {n: p for n, p in self.named_parameters() if n in names}

    def msft_state_names(self) -> set[str]:
        """State-dict names of msft's parts, by module type: everything held beside the backbone
        (aggregation, heads, fusion, prompt) and the injected `ScaleLayer`s' own parameters."""
        beside = {n for n in self.state_dict() if not n.startswith("backbone.")}
        return beside | injected_parameter_names(self.backbone, "backbone")

    def parameter_groups(
        self,
        lr: float,
        xscale_lr: float | None = None,
        head_lr: float | None = None,
        scale_weight_lr: float | None = None,
    ) -> list[dict[str, Any]]:
        """Optimizer groups: adapters + LoRA (``lr``), aggregation (``xscale_lr``), msft heads and any
        trainable backbone parameter (``head_lr``), fusion logits (``scale_weight_lr``)."""
        groups: dict[str, list[nn.Parameter]] = {"lr": [], "xscale": [], "head": [], "fusion": []}
        own = self.msft_state_names()
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("msft_aggregation."):
                groups["xscale"].append(p)
            elif name.startswith("msft_fusion."):
                groups["fusion"].append(p)
            elif name.startswith(("msft_heads.", "msft_quantile_heads.")) or name not in own:
                groups["head"].append(p)
            else:
                groups["lr"].append(p)
        rates = {"lr": lr, "xscale": xscale_lr, "head": head_lr, "fusion": scale_weight_lr}
        return [
            {"params": params, "lr": rates[key] if rates[key] is not None else lr, "name": key}
            for key, params in groups.items()
            if params
        ]

    def save_adapter(self, path: str | Path) -> Path:
        """Write msft's parameters (safetensors) and options (JSON) into directory ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        from msft.hub import FILES_KEY, file_records

        own = self.msft_state_names()
        tensors = {n: t.detach().cpu().contiguous() for n, t in self.state_dict().items() if n in own}
        save_file(tensors, str(path / ADAPTER_WEIGHTS), metadata={"format": "pt", "backbone": self.spec.name})
        if self.calibration is not None:
            self.calibration.save(path)
        else:  # a calibration left from an earlier save into the same directory is not this model's
            (path / CALIBRATION_FILE).unlink(missing_ok=True)
        meta = {"backbone": self.spec.name, "config": self.config.to_dict(), "base": self.base_identity}
        # written last: it records the size and SHA-256 of the files above, which load_adapter checks
        meta[FILES_KEY] = file_records(path, [ADAPTER_WEIGHTS, CALIBRATION_FILE])
        (path / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2))
        return path

    def save_pretrained(self, path: str | Path, **card: Any) -> Path:
        """`save_adapter` plus a generated model card (``README.md``); ``card``: optional entries of
        the card (``data``, ``metrics``, ``command``, ``method``). Load with `msft.from_pretrained`."""
        from msft.hub import save_pretrained

        return save_pretrained(self, path, **card)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None, **card: Any) -> str:
        """`save_pretrained` into a temporary directory and upload it to the Hugging Face hub repository
        ``repo_id`` (created if needed); returns the commit URL. Fails fast without network or token."""
        from msft.hub import push_to_hub

        return push_to_hub(self, repo_id, token=token, private=private, **card)

    def create_predictor(
        self,
        prediction_length: int,
        batch_size: int = 32,
        num_samples: int = 100,
        context_length: int = 512,
        **options: Any,
    ):
        """A `gluonts.model.Predictor` over this model (see `msft.predictor.MSFTPredictor`): SampleForecasts
        for probabilistic backbones, QuantileForecasts for point backbones with quantile heads."""
        from msft.predictor import MSFTPredictor

        return MSFTPredictor(
            self,
            prediction_length,
            batch_size=batch_size,
            num_samples=num_samples,
            context_length=context_length,
            **options,
        )

    # -- internals --------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Undo `_inject`: original modules back in place, original requires_grad flags."""
        backbone = self.backbone
        for name in reversed(self._wrapped):
            parent, _, child = name.rpartition(".")
            owner = backbone.get_submodule(parent) if parent else backbone
            setattr(owner, child, getattr(owner, child).base_layer)
        self._wrapped = []
        for layer in self._own_checkpointing:
            layer.gradient_checkpointing = True
        self._own_checkpointing = []
        for name, p in backbone.named_parameters():
            p.requires_grad_(self._requires_grad.get(name, True))
        if hasattr(backbone, _WRAPPED_FLAG):
            delattr(backbone, _WRAPPED_FLAG)

    def _replace(self, name: str, make) -> None:
        parent, _, child = name.rpartition(".")
        owner = self.backbone.get_submodule(parent) if parent else self.backbone
        setattr(owner, child, make(getattr(owner, child)))
        self._wrapped.append(name)

    def _check_past(self, past_target: Any, past_observed: Any) -> tuple[Tensor, Tensor]:
        past_target, past_observed = check_series("past_target", past_target, past_observed, "past_observed")
        length = past_target.shape[1]
        needed = max(self.scales) * self.spec.patch_size()
        if length < needed:
            raise ValueError(
                f"past_target has {length} time steps: expected at least max(scales) * patch_size = "
                f"{max(self.scales)} * {self.spec.patch_size()} = {needed}"
            )
        if self.config.context_lengths is None:
            self.spec.check_context(length)
        else:
            self._check_scale_contexts(length)
        seen = (past_observed & ~torch.isnan(past_target)).any(dim=1)  # (batch, variate)
        if not bool(seen.all()):
            b, v = (~seen).nonzero()[0].tolist()
            raise ValueError(
                f"past_target[{b}, :, {v}] has no observed value (all NaN or masked): expected at least one"
            )
        return past_target, past_observed

    def _check_scale_contexts(self, length: int) -> None:
        """Each scale's window (`MSFTConfig.context_lengths`) fits in the past, holds at least one
        patch at its resolution, and fits the backbone once pooled (MOMENT: at most 512 steps)."""
        steps = self.config.scale_context_steps(length)
        if length < max(steps):
            raise ValueError(
                f"past_target has {length} time steps: context_lengths={list(steps)} needs {max(steps)} "
                "(the longest scale's window)"
            )
        patch = self.spec.patch_size()
        for scale, n in zip(self.scales, steps):
            if n < scale * patch:
                raise ValueError(
                    f"context_lengths gives scale {scale} {n} time steps: expected at least scale * patch_size "
                    f"= {scale} * {patch} = {scale * patch}"
                )
            self.spec.check_context(scaled_length(n, scale))

    def _point_forecast(self, outputs: list[Forecast], horizon: int, variates: int) -> Tensor:
        """Fused point forecast ``(batch, horizon, variate)`` of the per-scale head outputs."""
        probabilistic = self.spec.probabilistic
        if probabilistic and self.config.point_forecast == "median":
            return self._fused_samples(outputs, horizon, variates, 100).median(dim=1).values
        per_scale = [out.mean() if probabilistic else out.point() for out in outputs]
        fused = self._fuse(per_scale, horizon)
        return rearrange(fused, "(b v) t -> b t v", v=variates)

    def _fused_samples(self, outputs: list[Forecast], horizon: int, variates: int, num_samples: int) -> Tensor:
        """``(batch, S, horizon, variate)``: the scales' sample paths fused by ``sample_fusion``
        (`msft.fusion.fuse_paths`; "location" reads each scale's closed-form mean)."""
        fusion = self.config.sample_fusion
        paths = self._scale_paths(outputs, horizon, num_samples)  # (scales, series, S, H)
        means = None
        if fusion == "location" and len(outputs) > 1:
            means = torch.stack(self._upsampled([out.mean() for out in outputs], horizon))
        fused = fuse_paths(paths, self.fusion_weights, fusion, means)  # (series, S, H)
        return rearrange(fused, "(b v) n t -> b n t v", v=variates)

    def _forward(
        self,
        past_target: Tensor,
        past_observed: Tensor,
        horizon: Any,
        past_covariates: Any = None,
        known_covariates: Any = None,
    ) -> list[Forecast]:
        _check_horizon(horizon)
        covariates = check_covariates(self.config, past_target, horizon, past_covariates, known_covariates)
        return self._run(past_target, past_observed, horizon, covariates).outputs

    def _run(
        self, past_target: Tensor, past_observed: Tensor, horizon: Any, covariates: Covariates | None = None
    ) -> _Pass:
        _check_horizon(horizon)
        if self.config.horizon is not None and horizon > self.config.horizon:
            raise ValueError(
                f"horizon={horizon}: this model's heads were built for at most horizon={self.config.horizon}"
            )
        if self.config.joint_variates and (self.config.past_covariates or self.config.known_covariates):
            if covariates is None:  # an internal caller that passed none (calibration, features)
                raise ValueError(f"this model takes covariates ({_variates_options(self.config)}): give them")
        series = rearrange(past_target, "b t v -> (b v) t")
        observed = rearrange(past_observed, "b t v -> (b v) t")
        factor = _magnitude_factor(series, observed)
        if factor is not None:
            series = series / factor
        groups = None
        if self.config.joint_variates:
            groups = build_groups(
                self.config.mode, series, observed, past_target.shape[2], _rescaled_covariates(covariates), horizon
            )
        tokens: list[ScaleTokens] = []
        pooled_observed: list[Tensor] = []
        steps = self.config.scale_context_steps(series.shape[1])  # what each scale sees (context_lengths)
        for idx, (scale, n) in enumerate(zip(self.scales, steps)):
            if groups is not None:  # joint variates: the spec packs each group into one sequence
                group = pool_groups(groups, n, scale, horizon)
                pooled_observed.append(rearrange(group.observed[:, : group.targets], "g v t -> (g v) t"))
                with self._state.use(idx):
                    tokens.append(self.spec.embed_variates(group, scaled_length(horizon, scale), idx))
                continue
            context, context_observed = downsample(series[:, -n:], observed[:, -n:], scale, side="left")
            pooled_observed.append(context_observed)
            with self._state.use(idx):
                scale_tokens = self.spec.embed(context, context_observed, scaled_length(horizon, scale), idx)
            if self.msft_prompt is not None:
                prompt = self.msft_prompt[idx].to(scale_tokens.hidden.dtype)  # (P, d_model)
                prefix = prompt.expand(scale_tokens.hidden.shape[0], -1, -1)  # (series, P, d_model)
                scale_tokens = self.spec.add_prefix(scale_tokens, prefix)
            tokens.append(scale_tokens)
        hidden = [t.hidden for t in tokens]
        layouts = [t.layout for t in tokens]
        run = self._layer_runner(tokens)
        for layer_idx, layer in enumerate(self.spec.layers()):
            hidden = run(layer, hidden)
            if self.msft_aggregation is not None and groups is not None:  # per variate
                variates = [t.variates for t in tokens]
                split = [per_variate(h, v) for h, v in zip(hidden, variates)]
                hidden = [joint(h, v) for h, v in zip(self.msft_aggregation[layer_idx](split, layouts), variates)]
            elif self.msft_aggregation is not None:
                hidden = self.msft_aggregation[layer_idx](hidden, layouts)
        outputs = []
        for idx, (scale, h, t) in enumerate(zip(self.scales, hidden, tokens)):
            with self._state.use(idx):
                outputs.append(self.spec.head(h, t, scaled_length(horizon, scale), idx, self.msft_heads))
        if factor is not None:
            outputs = [_Rescaled(out, factor) for out in outputs]
        return _Pass(outputs, hidden, tokens, pooled_observed, factor)

    # -- quantile heads (point backbones, ``quantile_levels``) -------------------------------------------
    def _build_quantile_heads(self, num_scales: int) -> nn.Module:
        """One level's per-scale heads: a fresh set from the spec's `build_heads`, or, for a backbone
        whose own output head serves every scale, a trainable copy of it per scale."""
        heads = self.spec.build_heads(num_scales)
        if heads is None and self.spec.output_head is not None:
            own = self.backbone.get_submodule(self.spec.output_head)
            heads = nn.ModuleList(copy.deepcopy(own) for _ in range(num_scales))
        if heads is None:
            raise ValueError(f"quantile_levels: the {self.spec.name} backbone has no head msft can copy per level")
        return heads.requires_grad_(True)

    def _quantile_outputs(self, run: _Pass, horizon: int) -> list[Tensor]:
        """Per scale ``(series, levels, ceil(horizon / s))``: every level's heads on the last hidden states,
        in the series' own units."""
        hidden, tokens = run.hidden, run.tokens
        per_scale = []
        for idx, (scale, h, t) in enumerate(zip(self.scales, hidden, tokens)):
            with self._state.use(idx):
                levels = [
                    self.spec.head(h, t, scaled_length(horizon, scale), idx, heads).point()
                    for heads in self.msft_quantile_heads
                ]
            stacked = torch.stack(levels, dim=1)  # (series, levels, ceil(horizon / s))
            per_scale.append(stacked if run.factor is None else stacked * run.factor[:, :, None])
        return per_scale

    def _predict_head_quantiles(
        self,
        past_target: Tensor,
        horizon: int,
        levels: tuple[float, ...],
        trained: tuple[float, ...],
        past_observed: Tensor | None,
    ) -> Tensor:
        missing = sorted(set(levels) - set(trained))
        if missing:
            raise ValueError(f"quantile_levels {missing}: this model's quantile heads were trained for {list(trained)}")
        past_target, past_observed = self._check_past(past_target, past_observed)
        run = self._run(past_target, past_observed, horizon)
        fused = self._fuse(self._quantile_outputs(run, horizon), horizon).sort(dim=1).values  # (series, Q, H)
        fused = fused[:, [trained.index(q) for q in levels]]
        return rearrange(fused, "(b v) q t -> b q t v", v=past_target.shape[2])

    def _layer_runner(self, tokens: list[ScaleTokens]):
        """How one layer runs over all scales: per block, or concatenated with a joint aux (a masked one,
        or the spec's `join_blocks` whose `run_layer` attends within each block itself)."""
        if self.config.intra_scale_attention and self.config.attention_impl == "blocked":
            joint_aux = self.spec.join_blocks(tokens) if len(tokens) > 1 else None
            if joint_aux is None:

                def per_block(layer: nn.Module, hidden: list[Tensor]) -> list[Tensor]:
                    return [self._run_layer(layer, h, t.aux, idx) for idx, (h, t) in enumerate(zip(hidden, tokens))]

                return per_block
        else:
            joint_aux = self.spec.join(tokens, block_diagonal=self.config.intra_scale_attention)
        lengths = [t.hidden.shape[1] for t in tokens]
        segments = list(enumerate(lengths))

        def joint(layer: nn.Module, hidden: list[Tensor]) -> list[Tensor]:
            out = self._run_layer(layer, torch.cat(hidden, dim=1), joint_aux, segments)
            return list(out.split(lengths, dim=1))

        return joint

    def _run_layer(self, layer: nn.Module, hidden: Tensor, aux: Any, active: Any) -> Tensor:
        """One layer on ``hidden`` ``(series, tokens, d_model)`` with the scale(s) ``active``;
        checkpointed when asked, with the same scale context replayed on recomputation."""

        def run(h: Tensor) -> Tensor:
            with self._state.use(active):
                return self.spec.run_layer(layer, h, aux)

        if self._checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(run, hidden, use_reentrant=False)
        return run(hidden)

    @property
    def _checkpointing(self) -> bool:
        return self.config.gradient_checkpointing or bool(self._own_checkpointing)

    def _fuse(self, per_scale: list[Tensor], horizon: int) -> Tensor:
        fused = 0
        for w, pred in zip(self.fusion_weights, self._upsampled(per_scale, horizon)):
            fused = fused + w * pred
        return fused


def _check_horizon(horizon: Any) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
        raise ValueError(f"horizon={horizon!r}: expected a positive integer")


def _variates_options(config: MSFTConfig) -> str:
    """The options that ask for joint variates, as the user gave them (for error messages)."""
    parts = [f"mode={config.mode!r}"]
    parts += [f"{name}={list(getattr(config, name))}" for name in ("past_covariates", "known_covariates")]
    return ", ".join(p for p in parts if not p.endswith("[]"))


def _rescaled_covariates(covariates: Covariates | None) -> Covariates | None:
    """Covariates with huge magnitudes divided by powers of two (as the targets, `_magnitude_factor`):
    each variate is scaled by its own statistics afterwards, so only float32 overflow changes."""
    if covariates is None:
        return None
    out = []
    for values, observed in (
        (covariates.past, covariates.past_observed),
        (covariates.known, covariates.known_observed),
    ):
        rows, rows_observed = rearrange(values, "b t k -> (b k) t"), rearrange(observed, "b t k -> (b k) t")
        factor = _magnitude_factor(rows, rows_observed) if rows.numel() else None
        if factor is not None:
            values = rearrange(rows / factor, "(b k) t -> b t k", k=values.shape[2])
        out += [values, observed]
    return Covariates(*out)


def wrap(backbone: nn.Module, scales=(1, 2, 4), **options: Any) -> MSFTModel:
    """Inject msft's per-scale components into ``backbone`` (in place) and return the model.

    The backbone's own parameters are frozen and never modified; `unwrap` gives it back.
    ``options`` are the fields of `msft.MSFTConfig`.
    """
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
    return MSFTModel(backbone, MSFTConfig.from_dict({"scales": scales, **options}))


def unwrap(model: MSFTModel) -> nn.Module:
    """Remove msft's components and return the original backbone (same module, same tensors)."""
    if not isinstance(model, MSFTModel):
        raise ValueError(f"unwrap expects an msft.MSFTModel, got {type(model).__name__}")
    model._restore()
    return model.backbone


def check_covariate_names(saved: dict[str, Any], where: str, past_covariates: Any, known_covariates: Any) -> None:
    """ValueError when the covariate names a caller gives (None: not checked) differ from those a saved
    config (`MSFTConfig.to_dict`) was trained with, in names or order."""
    for name, given in (("past_covariates", past_covariates), ("known_covariates", known_covariates)):
        if given is None:
            continue
        expected = list(saved.get(name) or [])
        given = [given] if isinstance(given, str) else list(given)
        if given != expected:
            raise ValueError(
                f"{name}={given}: {where} was trained with {name}={expected}; expected the same columns in "
                "the same order (finetune again for other covariates)"
            )


def load_adapter(
    backbone: nn.Module,
    path: str | Path,
    *,
    allow_base_mismatch: bool = False,
    past_covariates: Any = None,
    known_covariates: Any = None,
) -> MSFTModel:
    """Wrap ``backbone`` with the options saved in ``path`` and load the saved msft parameters.

    The adapter records its base model's weight fingerprint (`msft.provenance`): a backbone with
    other weights raises ``ValueError`` unless ``allow_base_mismatch=True``. Every file the config
    lists is checked against its recorded SHA-256 first (`msft.hub.verify_files`): a missing,
    truncated, corrupted or unparseable file raises `msft.hub.ArtifactError` naming it.
    ``past_covariates`` / ``known_covariates``: the covariate names the caller will give (None: not
    checked); ``ValueError`` when they differ from the saved ones."""
    from msft.hub import FILES_KEY, ArtifactError, MissingArtifactError, read_json, read_safetensors, verify_files

    path = Path(path)
    weights, meta_file = path / ADAPTER_WEIGHTS, path / ADAPTER_CONFIG
    for file in (weights, meta_file):
        if not file.is_file():
            raise MissingArtifactError(f"{file} is missing: expected a directory written by save_adapter")
    meta = read_json(meta_file)
    verify_files(path, meta.get(FILES_KEY), ADAPTER_CONFIG)
    check_covariate_names(meta["config"], f"adapter {path}", past_covariates, known_covariates)
    tensors = read_safetensors(weights)
    # adapters saved before `coarse_paths` existed up-sampled by repeating: they keep forecasting as saved
    model = MSFTModel(backbone, MSFTConfig.from_dict({"coarse_paths": "repeat", **meta["config"]}))
    if model.spec.name != meta["backbone"]:
        unwrap(model)
        raise ValueError(f"adapter {path} was saved for a {meta['backbone']} backbone, not {model.spec.name}")
    own = model.msft_state_names()
    expected = {n: t.shape for n, t in model.state_dict().items() if n in own}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    mismatched = sorted(
        f"{n}: saved {tuple(t.shape)}, expected {tuple(expected[n])}"
        for n, t in tensors.items()
        if n in expected and t.shape != expected[n]
    )
    if missing or unexpected or mismatched:
        unwrap(model)
        raise ValueError(
            f"adapter {path} does not fit this backbone: missing {missing}, unexpected {unexpected}, "
            f"shape mismatches {mismatched}"
        )
    if not allow_base_mismatch:
        try:
            check_same_base(meta.get("base"), model.base_identity, f"adapter {path}")
        except ValueError:
            unwrap(model)
            raise
    model.load_state_dict(tensors, strict=False)
    try:
        model.calibration = ConformalCalibration.load(path)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as err:
        unwrap(model)
        raise ArtifactError(
            f"{path / CALIBRATION_FILE} cannot be read ({err}): corrupted or not written by msft"
        ) from None
    return model
