"""The Lightning module that trains any `msft.MSFTModel` with its own loss, and two small callbacks."""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import torch
from einops import rearrange
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from torch import Tensor

import msft
from msft.sampling import downsample

SELECTION = "val_score"  # what early stopping, checkpoint choice and sweeps select on (lower is better)
#: validation MSE with each window's errors divided by its context's standard deviation (observed steps):
#: the units of `msft.finetune`'s leaderboard, whatever the magnitude of a user's series
SCALED = "val_scaled_mse"
#: windows per forward pass in validation: a CPU forward over thousands of windows at once (a user CSV's
#: eval_batch_size) runs at a fraction of the speed of these blocks (3,305 windows: 37 s in one pass)
VALIDATION_BLOCK = 256


class ForecastModule(L.LightningModule):
    """Train ``model.loss`` with AdamW over ``model.parameter_groups(**lr)``; with ``lr_decay`` every
    learning rate is multiplied by it after each epoch (Time-LLM's default schedule halves it).

    Validation logs the training objective (``val_loss``) and what users get: ``val_score``, the
    score of the fused forecast at the original resolution (LSF: MSE of `predict`'s point forecast;
    PF: CRPS of ``num_samples`` fused sample paths), and each scale's own MSE against its pooled
    future (``val_mse_scale<s>``). Selection reads ``val_score`` for every method alike: the
    objective ``sum_s w_s * loss_s`` rewards fusion weight on the smoothest (coarsest) scale
    whatever its forecast is worth after up-sampling.

    Checkpoints hold only the trainable parameters (the frozen backbone is rebuilt from its config),
    plus Lightning's optimiser and loop state, so ``resume`` continues exactly where a run stopped.
    ``tuner`` is peft's AdaLoRA tuner when the method is AdaLoRA: its rank allocation steps after
    every optimiser step. ``progress_score`` names the validation score `StepProgress` shows: the
    default `SCALED` (also logged) is `msft.finetune`'s leaderboard units, for windows in a user's own
    units; ``msft-train`` shows `SELECTION`, which is its results table's (z-scored MSE, or CRPS).
    """

    def __init__(
        self,
        model: msft.MSFTModel,
        lr: dict[str, float | None],
        weight_decay: float = 0.0,
        tuner: Any = None,
        protocol: str = "lsf",
        num_samples: int = 100,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lr_decay: float | None = None,
        progress_score: str = SCALED,
    ):
        super().__init__()
        if progress_score not in (SELECTION, SCALED):
            raise ValueError(f"progress_score={progress_score!r}: expected {SELECTION!r} or {SCALED!r}")
        if protocol not in ("lsf", "pf"):
            raise ValueError(f"protocol={protocol!r}: expected 'lsf' or 'pf'")
        if lr_decay is not None and (isinstance(lr_decay, bool) or not 0.0 < float(lr_decay) <= 1.0):
            raise ValueError(f"lr_decay={lr_decay!r}: expected null or a factor in (0, 1]")
        self.model = model
        self.lr = dict(lr)
        self.weight_decay = weight_decay
        self.lr_decay = lr_decay
        self.protocol, self.num_samples = protocol, num_samples
        self.betas, self.eps = tuple(betas), eps
        self.progress_score = progress_score
        self._sums: dict[str, list[float]] = {}  # validation metric -> [numerator, denominator]
        self._tuner = [tuner] if tuner is not None else []  # a list: not registered as a submodule
        self.strict_loading = False  # checkpoints lack the frozen parameters on purpose

    def _loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The model's loss on the batch's usable windows. A window whose context has no observed
        point in some variate (msft rejects it) or whose future has none (no signal) is dropped:
        series that start late or have long gaps (PF sets, user CSVs) produce such windows. A model
        built with covariates gets the batch's (`covariates_of`)."""
        keep = batch["past_observed"].any(1).all(-1) & batch["future_observed"].any(1).any(-1)  # (batch,)
        if not bool(keep.any()):  # nothing to learn from: a zero loss that still has a graph
            return sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
        if not bool(keep.all()):
            batch = {key: value[keep] for key, value in batch.items()}
        return self.model.loss(
            batch["past_target"],
            batch["future_target"],
            batch["past_observed"],
            batch["future_observed"],
            **covariates_of(batch, self.model),
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log(
            "train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["past_target"].shape[0]
        )
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        size = batch["past_target"].shape[0]
        blocks = [{k: v[i : i + VALIDATION_BLOCK] for k, v in batch.items()} for i in range(0, size, VALIDATION_BLOCK)]
        # the batch's loss as the mean of its blocks' losses weighted by their windows (what Lightning's
        # epoch mean does over batches; equal to one pass when every window has as many observed points)
        loss = sum(self._loss(block) * block["past_target"].shape[0] for block in blocks) / size
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=size)
        keep = batch["past_observed"].any(1).all(-1)  # (batch,) windows msft accepts
        if bool(keep.any()):
            for name, (num, den) in validation_sums(
                self.model,
                {k: v[keep] for k, v in batch.items()},
                self.protocol,
                self.num_samples,
                scaled=self.progress_score == SCALED,
            ).items():
                total = self._sums.setdefault(name, [0.0, 0.0])
                total[0], total[1] = total[0] + num, total[1] + den

    def on_validation_epoch_start(self) -> None:
        self._sums = {}

    def on_validation_epoch_end(self) -> None:
        for name, (num, den) in self._sums.items():
            if den > 0:
                self.log(name, num / den, prog_bar=name == SELECTION, sync_dist=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._tuner:  # gradients are still there: Lightning zeroes them before the next step
            self._tuner[0].update_and_allocate(self.global_step)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.model.parameter_groups(**self.lr), weight_decay=self.weight_decay, betas=self.betas, eps=self.eps
        )
        if self.lr_decay is None:
            return optimizer
        decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(self.lr_decay))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "epoch"}}

    def trainable_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def load_trainable(self, path: str) -> None:
        """Load a checkpoint written by this module; every trainable parameter must be in it."""
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        missing = sorted(self.trainable_names() - set(state))
        if missing:
            raise ValueError(f"checkpoint {path} lacks trainable parameters {missing[:5]}")
        self.load_state_dict(state, strict=False)


@torch.no_grad()
def validation_sums(
    model: msft.MSFTModel, batch: dict[str, Tensor], protocol: str, num_samples: int = 100, scaled: bool = False
) -> dict[str, tuple[float, float]]:
    """``{metric: (numerator, denominator)}`` of one batch, summed so that a split's score is
    sum(numerators) / sum(denominators): ``val_score`` (LSF: squared error of the fused point
    forecast per observed point; PF: CRPS, quantile loss over sum |y|) and ``val_mse_scale<s>``;
    with ``scaled``, also `SCALED`: the squared error of the fused mean over each window's context
    standard deviation, as `msft.finetune`'s leaderboard scores it. LSF batches are forecast in blocks
    of `VALIDATION_BLOCK` windows (the same sums; PF keeps one pass, so its sample paths stay as drawn).
    A model built with covariates forecasts with the batch's (`covariates_of`); only targets are scored."""
    if protocol == "lsf" and batch["past_target"].shape[0] > VALIDATION_BLOCK:
        sums: dict[str, tuple[float, float]] = {}
        for i in range(0, batch["past_target"].shape[0], VALIDATION_BLOCK):
            block = {k: v[i : i + VALIDATION_BLOCK] for k, v in batch.items()}
            for name, (num, den) in validation_sums(model, block, protocol, num_samples, scaled).items():
                total = sums.get(name, (0.0, 0.0))
                sums[name] = (total[0] + num, total[1] + den)
        return sums
    past, future = batch["past_target"], batch["future_target"]  # (batch, L, V), (batch, H, V)
    observed = batch["future_observed"].bool() & ~torch.isnan(future)
    target = torch.where(observed, future, torch.zeros_like(future))
    horizon = future.shape[1]
    covariates = covariates_of(batch, model)
    out = model.predict_all(past, horizon, batch["past_observed"], **covariates)
    sums: dict[str, tuple[float, float]] = {}
    count = float(observed.sum())
    if protocol == "pf":
        grid = tuple(q / 10 for q in range(1, 10))
        levels = torch.tensor(grid, dtype=target.dtype, device=target.device)
        if model.spec.probabilistic:
            paths = model.predict_samples(
                past, horizon, batch["past_observed"], num_samples=num_samples, **covariates
            )  # (b, S, H, V)
            idx = torch.round((paths.shape[1] - 1) * levels).long()  # GluonTS: order statistics
            quantiles = paths.sort(dim=1).values[:, idx]  # (b, levels, H, V)
        elif model.config.quantile_levels:  # a point backbone with msft quantile heads
            quantiles = model.predict_quantiles(
                past, horizon, grid, batch["past_observed"], **covariates
            )  # (b, levels, H, V)
        else:  # a point forecast is one path: every quantile is the point (e.g. the zero-shot reference)
            quantiles = out["point"].unsqueeze(1).expand(-1, len(grid), -1, -1)  # (b, levels, H, V)
        y = target.unsqueeze(1)
        loss = 2 * ((y - quantiles) * ((quantiles >= y).to(y.dtype) - levels.view(1, -1, 1, 1))).abs()
        loss = loss * observed.unsqueeze(1)
        sums["val_score"] = (float(loss.sum()) / len(levels), float(target.abs().sum()))
    else:
        sums["val_score"] = (float(((out["point"] - target) * observed).square().sum()), count)
    if scaled:
        sums[SCALED] = (
            float((((out["mean"] - target) / context_scale(past, batch["past_observed"])) * observed).square().sum()),
            count,
        )
    series = rearrange(target, "b t v -> (b v) t")
    seen = rearrange(observed, "b t v -> (b v) t")
    for scale, pred in zip(model.scales, out["scales"]):
        pooled, pooled_seen = downsample(series, seen, scale, side="right")  # (series, ceil(H/s))
        error = (rearrange(pred, "b t v -> (b v) t") - torch.nan_to_num(pooled)) * pooled_seen
        sums[f"val_mse_scale{scale}"] = (float(error.square().sum()), float(pooled_seen.sum()))
    return sums


def covariates_of(batch: dict[str, Tensor], model: Any) -> dict[str, Tensor]:
    """The covariate arguments ``model`` was built to take (``config.past_covariates`` /
    ``known_covariates``), from ``batch``: none for a model without covariates, whatever the batch holds."""
    config = model.config
    return {key: batch[key] for key in ("past_covariates", "known_covariates") if getattr(config, key)}


def context_scale(past: Tensor, past_observed: Tensor) -> Tensor:
    """``(batch, 1, variate)`` standard deviation of each window's observed context steps (floored
    relative to the mean, so that a constant context divides by a tiny positive number, not 0)."""
    seen = past_observed.bool() & torch.isfinite(past)
    count = seen.sum(1, keepdim=True).clamp(min=1)
    mean = torch.where(seen, past, 0.0).sum(1, keepdim=True) / count
    var = torch.where(seen, (past - mean) ** 2, 0.0).sum(1, keepdim=True) / count
    return var.sqrt().clamp(min=1e-8 * (1 + mean.abs()))


class StepProgress(ProgressBar):
    """A progress bar in optimiser steps (to ``max_steps`` or the planned epochs' steps, whichever ends
    training first) showing the training loss and the latest validation ``score``, in place of
    Lightning's per-epoch bar (whose "Epoch 0/9" says nothing when ``max_steps`` stops training).
    A validation pass gets its own transient bar in windows."""

    def __init__(self, score: str = SELECTION):
        super().__init__()
        self.score, self._enabled = score, True
        self._train: Any = None
        self._val: Any = None
        self._shown: dict[str, str] = {}

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @staticmethod
    def _bar(**kwargs: Any) -> Any:
        from tqdm.auto import tqdm

        return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        total = trainer.estimated_stepping_batches
        total = int(total) if total != float("inf") else None
        self._train = self._bar(total=total, initial=trainer.global_step, desc="training", unit="step")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._train is None:
            return
        self._train.update(trainer.global_step - self._train.n)
        loss = trainer.callback_metrics.get("train_loss_step")
        if loss is not None:
            self._shown["loss"] = f"{float(loss):.4g}"
        self._train.set_postfix(self._shown, refresh=False)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        loaders = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        total = sum(n for n in loaders if n != float("inf")) or None
        label = "sanity check" if trainer.sanity_checking else "validating"
        self._val = self._bar(total=total, desc=label, unit="batch", leave=False, position=1)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._val is not None:
            self._val.update(1)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val is not None:
            self._val.close()
            self._val = None
        score = trainer.callback_metrics.get(self.score)
        if self._train is not None and score is not None and not trainer.sanity_checking:
            self._shown[self.score] = f"{float(score):.4f}"
            self._train.set_postfix(self._shown)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._train is not None:
            self._train.close()
            self._train = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for bar in (self._train, self._val):
            if bar is not None:
                bar.close()
        self._train = self._val = None


class EpochSeed(L.Callback):
    """Reseed torch before an epoch's first batch from (seed, epoch): dropout in an epoch is the same
    whether or not the run was resumed before it. (Not at epoch start: a fresh data-loader iterator
    draws from the global generator, and Lightning creates it before or after that hook depending on
    whether it is resuming.)"""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 0:
            torch.manual_seed(self.seed * 100_003 + trainer.current_epoch)


class BestMetrics(L.Callback):
    """Every ``val_*`` metric of the validation epoch with the lowest ``monitor`` (the epoch whose
    weights the checkpoint keeps): the selected run's per-scale scores. Saved with checkpoints."""

    def __init__(self, monitor: str):
        self.monitor, self.best = monitor, {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        current = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or current is None:
            return
        if self.monitor not in self.best or float(current) < self.best[self.monitor]:
            self.best = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
            self.best["best_epoch"] = trainer.current_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict["best"])


class Interrupted(RuntimeError):
    """Raised by `StopAt`."""


class StopAt(L.Callback):
    """Raise `Interrupted` after ``step`` optimiser steps: simulates a crash (tests, docs)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            raise Interrupted(f"interrupted at step {trainer.global_step} (trainer.interrupt_at_step)")


class EpochShuffledBatches(torch.utils.data.Sampler):
    """Shuffled index batches drawn from (seed, epoch) alone: Lightning calls `set_epoch` before each
    epoch, so an epoch sees the same batches whether or not the run was resumed before it."""

    def __init__(self, num_items: int, batch_size: int, seed: int):
        self.num_items, self.batch_size, self.seed, self.epoch = num_items, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=generator)
        yield from order.split(self.batch_size)

    def __len__(self) -> int:
        return -(-self.num_items // self.batch_size)
