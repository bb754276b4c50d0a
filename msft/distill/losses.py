"""TimeDistill losses (Ni et al., arXiv 2502.15016; docs/design.md §5).

Both distillation terms compare a student sequence with a teacher sequence along the **last axis**
(time for predictions ``(series, horizon)``, the feature axis for features ``(series, width)``):

- ``period_loss``: KL(teacher ‖ student) between temperature-τ softmaxes of the rFFT amplitude
  spectra with the DC bin dropped, i.e. the teacher's distribution over periods is the target;
  by default averaged over frequency bins (the summed KL / the number of bins), as the authors'
  code does (``F.kl_div(..., reduction="mean")``). Summed over bins, the KL's gradient dwarfs the
  MSE's (the MSE is a mean over the horizon): on ETTh1 the distilled student then fell behind the
  undistilled one (results/distill/bench_distill.md);
- ``scale_loss``: mean over pooling factors of the MSE between the average-pooled sequences; by
  default pooled as TimeDistill's code does (``AvgPool1d(2)`` three times, each dropping an odd last
  step: factors 1, 2, 4, 8 with the remainder dropped), optionally keeping a partial last window.

``distillation_loss`` = MSE(student, truth) + α·(period + scale)(predictions) + β·(period + scale)(features).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from msft.losses import masked_mse
from msft.sampling import downsample

PERIOD_REDUCTIONS = ("mean", "sum")
SCALE_POOLINGS = ("drop", "partial")
REGRESSORS = ("mlp", "linear")


@dataclass(frozen=True)
class DistillConfig:
    """Weights and switches of the distillation loss; a bad value raises ``ValueError``.

    alpha: weight of the prediction-level terms; beta: weight of the feature-level terms.
    tau: softmax temperature of ``period_loss``. period / scale: switch each term off (both levels).
    period_reduction: ``"mean"`` (default) averages the KL over frequency bins, ``"sum"`` sums it
    (the textbook KL between the two distributions).
    scale_factors: average-pooling factors of ``scale_loss`` (1 = the sequence itself).
    scale_pooling: ``"drop"`` (default, TimeDistill's): a window of ``factor`` steps that does not fit
    at the end is dropped; ``"partial"``: it is averaged over the steps it has.
    regressor: the map from teacher features to student features trained with the student:
    ``"mlp"`` (default, TimeDistill's ``Linear -> ReLU -> Linear``) or ``"linear"``.
    """

    alpha: float = 1.0
    beta: float = 1.0
    tau: float = 0.5
    period: bool = True
    scale: bool = True
    scale_factors: tuple[int, ...] = (1, 2, 4, 8)
    period_reduction: str = "mean"
    scale_pooling: str = "drop"
    regressor: str = "mlp"

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}={value!r}: expected a number >= 0")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or self.tau <= 0:
            raise ValueError(f"tau={self.tau!r}: expected a number > 0")
        for name in ("period", "scale"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        factors = tuple(self.scale_factors) if isinstance(self.scale_factors, (list, tuple)) else None
        if not factors or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in factors):
            raise ValueError(f"scale_factors={self.scale_factors!r}: expected a non-empty sequence of ints >= 1")
        object.__setattr__(self, "scale_factors", factors)
        if self.period_reduction not in PERIOD_REDUCTIONS:
            raise ValueError(f"period_reduction={self.period_reduction!r}: expected one of {PERIOD_REDUCTIONS}")
        if self.scale_pooling not in SCALE_POOLINGS:
            raise ValueError(f"scale_pooling={self.scale_pooling!r}: expected one of {SCALE_POOLINGS}")
        if self.regressor not in REGRESSORS:
            raise ValueError(f"regressor={self.regressor!r}: expected one of {REGRESSORS}")

    @property
    def uses_teacher(self) -> bool:
        return (self.alpha > 0 or self.beta > 0) and (self.period or self.scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def period_loss(student: Tensor, teacher: Tensor, tau: float = 0.5, reduction: str = "mean") -> Tensor:
    """``KL(softmax(|rFFT(teacher)|[1:]/τ) ‖ softmax(|rFFT(student)|[1:]/τ))`` over the last axis.

    ``reduction="sum"``: the KL (summed over frequency bins); ``"mean"``: that sum divided by the
    number of bins. Either is then averaged over every leading axis. The DC bin (the mean level) is
    dropped so that only the periodic structure is matched; ``mse`` handles the level.
    """
    if reduction not in PERIOD_REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: expected one of {PERIOD_REDUCTIONS}")
    _check_pair(student, teacher, "period_loss")
    if student.shape[-1] < 3:
        raise ValueError(f"period_loss needs sequences of length >= 3 (one non-DC bin), got {student.shape[-1]}")
    amp_student = torch.fft.rfft(student, dim=-1).abs()[..., 1:]  # (..., length // 2)
    amp_teacher = torch.fft.rfft(teacher, dim=-1).abs()[..., 1:]
    log_p_student = torch.log_softmax(amp_student / tau, dim=-1)
    log_p_teacher = torch.log_softmax(amp_teacher / tau, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)  # (...,)
    return kl.mean() if reduction == "sum" else kl.mean() / amp_student.shape[-1]


def scale_loss(
    student: Tensor, teacher: Tensor, factors: tuple[int, ...] = (1, 2, 4, 8), pooling: str = "drop"
) -> Tensor:
    """Mean over ``factors`` of the MSE between the sequences average-pooled by that factor.

    Pooling is non-overlapping (kernel = stride = factor) along the last axis. ``pooling="drop"``
    leaves out the last ``length % factor`` steps (TimeDistill's ``AvgPool1d``, applied three times
    by 2, gives exactly the pooling by 2, 4 and 8 with the remainder dropped); ``"partial"`` averages
    a partial last window over its own points, as msft pools a horizon (``msft.sampling.downsample``).
    """
    _check_pair(student, teacher, "scale_loss")
    if pooling not in SCALE_POOLINGS:
        raise ValueError(f"pooling={pooling!r}: expected one of {SCALE_POOLINGS}")
    length = student.shape[-1]
    if pooling == "drop" and max(factors) > length:
        raise ValueError(f"scale_loss: sequences of length {length} are shorter than the pooling factor {max(factors)}")
    everywhere = torch.ones_like(student, dtype=torch.bool)
    total = student.new_zeros(())
    for factor in factors:
        if pooling == "drop":
            kept = length - length % factor
            pooled_student = student[..., :kept].unflatten(-1, (-1, factor)).mean(-1)
            pooled_teacher = teacher[..., :kept].unflatten(-1, (-1, factor)).mean(-1)
        else:
            pooled_student, _ = downsample(student, everywhere, factor, side="right")
            pooled_teacher, _ = downsample(teacher, everywhere, factor, side="right")
        total = total + (pooled_student - pooled_teacher).square().mean()
    return total / len(factors)


def match_loss(student: Tensor, teacher: Tensor, config: DistillConfig) -> Tensor:
    """``period_loss + scale_loss`` (each only when switched on)."""
    total = student.new_zeros(())
    if config.period:
        total = total + period_loss(student, teacher, config.tau, config.period_reduction)
    if config.scale:
        total = total + scale_loss(student, teacher, config.scale_factors, config.scale_pooling)
    return total


def distillation_loss(
    prediction: Tensor,
    target: Tensor,
    config: DistillConfig,
    teacher_prediction: Tensor | None = None,
    features: Tensor | None = None,
    teacher_features: Tensor | None = None,
    observed: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts (floats, for logging).

    prediction / target / teacher_prediction: ``(series, horizon)``; features: the student's hidden
    features ``(series, width)``; teacher_features: the teacher's features already mapped to
    ``width`` by the regressor. A term whose weight is 0 is not computed, so α = β = 0 is exactly MSE.
    """
    observed = torch.ones_like(target, dtype=torch.bool) if observed is None else observed
    mse = masked_mse(prediction, target, observed)
    total, parts = mse, {"mse": mse.item()}
    if config.alpha > 0 and (config.period or config.scale):
        if teacher_prediction is None:
            raise ValueError("alpha > 0 needs teacher_prediction (or set alpha=0)")
        term = match_loss(prediction, teacher_prediction, config)
        total, parts["prediction"] = total + config.alpha * term, term.item()
    if config.beta > 0 and (config.period or config.scale):
        if features is None or teacher_features is None:
            raise ValueError("beta > 0 needs the student's and the teacher's features (or set beta=0)")
        term = match_loss(features, teacher_features, config)
        total, parts["feature"] = total + config.beta * term, term.item()
    parts["total"] = total.item()
    return total, parts


def _check_pair(student: Tensor, teacher: Tensor, where: str) -> None:
    if not isinstance(student, Tensor) or not isinstance(teacher, Tensor):
        raise ValueError(f"{where}: expected two tensors, got {type(student).__name__}, {type(teacher).__name__}")
    if student.shape != teacher.shape:
        raise ValueError(
            f"{where}: student has shape {tuple(student.shape)}, teacher {tuple(teacher.shape)}; expected equal shapes"
        )
