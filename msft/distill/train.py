"""Fit an MLP student on windows, with or without a (cached) teacher.

One loop serves both: with ``DistillConfig(alpha=0, beta=0)`` (or no teacher) it is plain MSE
training, step for step. TimeDistill's own recipe (LingFengGold/TimeDistill, ``run_scripts/
train_student.sh`` and ``utils/tools.py``): Adam, lr 0.01 halved after every epoch
(``lr_schedule="type1"``), up to 100 epochs, early stopping on the validation MSE with patience 5,
the best validation epoch's weights kept. The feature regressor (teacher width -> student hidden width; by default
TimeDistill's ``Linear -> ReLU -> Linear``, see `build_regressor`) is built here, trained with the
student, and not part of the saved student.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from msft.distill.losses import DistillConfig, distillation_loss
from msft.distill.student import MLPStudent
from msft.distill.teacher import TeacherCache

logger = logging.getLogger(__name__)


def build_regressor(kind: str, teacher_width: int, student_width: int) -> nn.Module:
    """``"mlp"``: ``Linear(teacher, student) -> ReLU -> Linear(student, student)`` (TimeDistill's
    two-layer ``Regressor``); ``"linear"``: one ``Linear(teacher, student)``."""
    if kind == "linear":
        return nn.Linear(teacher_width, student_width)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(teacher_width, student_width), nn.ReLU(), nn.Linear(student_width, student_width)
        )
    raise ValueError(f"regressor={kind!r}: expected 'mlp' or 'linear'")


LR_SCHEDULES = ("constant", "type1")


def epoch_lr(lr: float, epoch: int, schedule: str) -> float:
    """Learning rate of ``epoch`` (0-based): ``"constant"``, or TimeDistill's ``"type1"``
    (``adjust_learning_rate``: ``lr * 0.5 ** epoch``, halved after every epoch)."""
    if schedule == "constant":
        return lr
    if schedule == "type1":
        return lr * 0.5**epoch
    raise ValueError(f"lr_schedule={schedule!r}: expected one of {LR_SCHEDULES}")


@dataclass
class FitResult:
    """Per epoch: the loss parts (averaged), the validation MSE and the learning rate; the epoch kept
    (lowest validation MSE) and how many epochs ran (fewer than asked when early stopping stopped)."""

    history: list[dict[str, float]] = field(default_factory=list)
    val_mse: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    regressor: nn.Module | None = None
    lrs: list[float] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False


def fit_student(
    student: MLPStudent,
    windows: Any,
    config: DistillConfig | None = None,
    cache: TeacherCache | None = None,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    val_windows: Any = None,
    lr_schedule: str = "constant",
    patience: int | None = None,
) -> FitResult:
    """Train ``student`` in place on ``windows`` (a `msft.data.Windows` or anything indexable the same way).

    Each epoch visits the windows in the order ``torch.randperm(len(windows), generator=g)`` with
    ``g = torch.Generator().manual_seed(seed)`` drawn once per epoch, in batches of ``batch_size``
    windows, each gathered when it is used. ``cache[i]`` must hold the teacher's outputs for window
    ``i`` (see `cache_teacher`). The learning rate of each epoch follows ``lr_schedule`` (`epoch_lr`).
    With ``val_windows``, the student's weights after the epoch with the lowest validation MSE are
    kept, and with ``patience`` training stops once that many epochs in a row have not lowered it
    (TimeDistill's ``EarlyStopping``); ``epochs`` is then the most it may run.
    """
    config = config or DistillConfig(alpha=0.0, beta=0.0)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience={patience!r}: expected a positive integer or None")
    if patience is not None and val_windows is None:
        raise ValueError("patience needs val_windows (early stopping watches the validation MSE)")
    epoch_lr(lr, 0, lr_schedule)  # validates the schedule's name
    horizon = student.config.horizon
    uses_prediction = config.alpha > 0 and (config.period or config.scale)
    uses_features = config.beta > 0 and (config.period or config.scale)
    if (uses_prediction or uses_features) and cache is None:
        raise ValueError("alpha or beta > 0 needs a teacher cache (cache_teacher); or set alpha=beta=0")
    if cache is not None and len(cache) != len(windows):
        raise ValueError(f"the teacher cache holds {len(cache)} windows; expected {len(windows)} like windows")
    if uses_features and cache.features is None:
        raise ValueError("beta > 0 but the teacher gave no features: set beta=0 or give the teacher features")
    if uses_prediction and cache.forecast.shape[1] < horizon:
        raise ValueError(f"the teacher cache has horizon {cache.forecast.shape[1]}; expected >= {horizon}")

    regressor = (
        build_regressor(config.regressor, cache.features.shape[-1], student.config.hidden) if uses_features else None
    )
    params = list(student.parameters()) + (list(regressor.parameters()) if regressor is not None else [])
    optimizer = torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    result = FitResult(regressor=regressor)
    best_state, best_val, since_best = None, float("inf"), 0
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(lr, epoch, lr_schedule)
        result.lrs.append(optimizer.param_groups[0]["lr"])
        student.train()
        order = torch.randperm(len(windows), generator=generator)
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, len(windows), batch_size):
            index = order[start : start + batch_size]
            batch = windows[index]
            past = rearrange(batch["past_target"], "b t v -> (b v) t")
            past_observed = rearrange(batch["past_observed"], "b t v -> (b v) t")
            target = rearrange(batch["future_target"][:, :horizon], "b t v -> (b v) t")
            observed = rearrange(batch["future_observed"][:, :horizon], "b t v -> (b v) t")
            prediction, features = student(past, past_observed)
            teacher_prediction = teacher_features = None
            if uses_prediction:
                teacher_prediction = rearrange(cache.forecast[index, :horizon], "b t v -> (b v) t")
            if uses_features:
                teacher_features = regressor(rearrange(cache.features[index], "b v d -> (b v) d"))
            loss, parts = distillation_loss(
                prediction, target, config, teacher_prediction, features, teacher_features, observed
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
        result.history.append({key: value / steps for key, value in sums.items()})
        result.epochs_run = epoch + 1
        if val_windows is not None:
            val = evaluate_mse(student, val_windows)
            result.val_mse.append(val)
            if val < best_val:
                best_val, best_state, result.best_epoch, since_best = val, copy.deepcopy(student.state_dict()), epoch, 0
            else:
                since_best += 1
        logger.info(
            "epoch %d (lr %.3g): %s val_mse=%s", epoch, result.lrs[-1], result.history[-1], result.val_mse[-1:] or None
        )
        if patience is not None and since_best >= patience:
            result.stopped_early = epoch + 1 < epochs
            break
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    return result


@torch.no_grad()
def evaluate_mse(student: MLPStudent, windows: Any, batch_size: int = 4096) -> float:
    """Mean squared error of the student over every window (observed future points)."""
    was_training = student.training
    student.eval()
    squared, count = 0.0, 0
    horizon = student.config.horizon
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        prediction = student.predict(batch["past_target"], horizon, batch["past_observed"])
        future: Tensor = batch["future_target"][:, :horizon]
        observed = batch["future_observed"][:, :horizon]
        squared += float(torch.where(observed, prediction - future, 0.0).double().square().sum())
        count += int(observed.sum())
    student.train(was_training)
    return squared / max(count, 1)
