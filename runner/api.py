"""One-call finetuning on data frames: ``msft.finetune(...) -> msft.Forecaster``.

    forecaster = msft.finetune("tiny_moirai", df, prediction_length=24)   # long, wide or a CSV path
    forecaster.predict_df(df)                 # item_id, timestamp, mean, "0.1", ..., "0.9"
    forecaster.save_pretrained("my-adapter")  # later: msft.from_pretrained("my-adapter")

It lives in the runner (exported lazily as ``msft.finetune``) because it trains with the runner's
Lightning loop: `msft_runner.methods.build_model` builds the method, `msft_runner.module.ForecastModule`
trains it and `msft_runner.train.fit` runs the Trainer with checkpointing and early stopping on
validation, exactly as ``msft-train`` does. The result is a `msft_runner.forecaster.Forecaster`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

import msft
from msft.data.frames import read_series
from msft_runner.backbones import resolve_backbone
from msft_runner.data_frames import (
    CovariateForecastModule,
    FrameDataModule,
    check_known_complete,
    covariates_of,
    read_covariates,
)
from msft_runner.forecaster import (
    Forecaster,
    ForecasterSettings,
    fill_missing,
    from_pretrained,
    naive_forecaster,
    season_of,
)
from msft_runner.methods import KINDS, build_model
from msft_runner.module import ForecastModule

__all__ = ["Forecaster", "finetune", "from_pretrained"]

logger = logging.getLogger(__name__)

#: training options of `finetune` (anything else goes to `msft.wrap` as an `msft.MSFTConfig` field).
TRAINING_OPTIONS = {
    "context_length": None,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "max_epochs": 10,
    "patience": 3,
    "validation_windows": 1,
    "accelerator": "auto",
    "progress": True,
    "run_dir": None,
    "peft": None,
    "gradient_clip_val": 1.0,
    "num_samples": 100,
    "calibrate": None,
}
GUARDS = (None, "naive")
#: Lightning's loggers whose notices (GPU/TPU availability, tips, seeding) `finetune` keeps quiet
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning")


def finetune(
    backbone: str | os.PathLike | nn.Module,
    train_data: Any,
    prediction_length: int,
    *,
    method: str = "msft",
    validation_data: Any = None,
    target: str = "target",
    id_column: str = "item_id",
    timestamp_column: str = "timestamp",
    max_steps: int | None = None,
    time_limit: float | None = None,
    seed: int = 0,
    guard: str | None = None,
    verbose: bool = False,
    past_covariates: list[str] | None = None,
    known_covariates: list[str] | None = None,
    threads: int | None = None,
    **options: Any,
) -> Forecaster:
    """Finetune ``backbone`` on ``train_data`` for ``prediction_length`` steps ahead; return a `Forecaster`.

    backbone: a module, a backbone config name (``"tiny_moirai"``, the embedded model; ``"toy"``,
        ``"moirai_1.1_small"``, ...), a MOIRAI/MOMENT hub id or a local checkpoint directory.
    train_data: a long frame (``id_column``, ``timestamp_column``, ``target``), a wide frame with a
        DatetimeIndex (one column per series) or a CSV path. Gaps become missing values.
    method: one of `msft_runner.methods.KINDS` (``"msft"``, ``"lora"``, ``"full"``, ...).
    validation_data: early-stopping data (same formats); by default the last ``validation_windows ×
        prediction_length`` steps of every series are held out of training for it.
    max_steps / time_limit (seconds): stop training earlier than ``max_epochs``.
    guard: None (default) or ``"naive"``: when the finetuned model scores worse on validation than
        the best naive baseline (last value, seasonal naive), forecast with that baseline instead.
        Either way the scores are in `Forecaster.leaderboard()`, and a finetuned model worse than a
        naive baseline logs a warning with the numbers.
    verbose: show Lightning's notices (GPU/TPU availability, tips) and warnings; quiet by default.
    threads: torch's intra-op threads while finetuning and scoring (restored afterwards); None keeps
        torch's setting. On a busy machine 1 is often much faster than spinning several.
    past_covariates / known_covariates: columns of the (long) ``train_data`` that the model reads as
        covariates (MOIRAI; Chronos-2's conventions): past-only ones, known up to each series' end,
        and known-future ones, which `Forecaster.predict_df` then needs over the horizon
        (``future_df=``). They are extra variates of every series at every scale; the loss covers the
        target only. Their names are saved with the model and checked when it is loaded.
    options: training options (`TRAINING_OPTIONS`: ``context_length`` (default 512; shorter series are
        left-padded with missing values),
        ``batch_size``, ``lr`` (a number or the runner's dict of ``lr``/``xscale_lr``/``head_lr``/
        ``scale_weight_lr``), ``max_epochs``, ``patience``, ``progress``, ``run_dir`` (checkpoints and
        learning curves; a temporary directory by default), ``peft`` (LoRA settings), ``calibrate``
        (``"conformal"``: after training, `msft.MSFTModel.calibrate` on every validation window, so
        ``predict_df`` and the saved forecaster give calibrated quantiles; the validation must hold at
        least the windows `msft.calibration.minimum_windows` names, e.g. 19 series x windows for the
        default levels: raise ``validation_windows``)) and any
        `msft.MSFTConfig` field (``scales``, ``lora_rank``, ...).
    """
    _check_threads(threads)
    with _torch_threads(threads):
        from msft.config import MSFTConfig
        from msft_runner.train import fit

        if method not in KINDS:
            raise ValueError(f"method={method!r}: expected one of {KINDS}")
        if guard not in GUARDS:
            raise ValueError(f"guard={guard!r}: expected one of {GUARDS}")
        if isinstance(prediction_length, bool) or not isinstance(prediction_length, int) or prediction_length < 1:
            raise ValueError(f"prediction_length={prediction_length!r}: expected a positive integer")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps={max_steps!r}: expected a positive integer or None")
        train = dict(TRAINING_OPTIONS)
        wrap_options = {}
        fields = set(MSFTConfig.__dataclass_fields__)
        for key, value in options.items():
            if key in train:
                train[key] = value
            elif key in fields:
                wrap_options[key] = value
            else:
                raise ValueError(
                    f"unknown option {key!r}: expected a training option {sorted(TRAINING_OPTIONS)} or an "
                    f"msft.MSFTConfig field {sorted(fields)}"
                )
        names = dict(target=target, id_column=id_column, timestamp_column=timestamp_column)
        series = read_series(train_data, **names)
        validation = read_series(validation_data, **names) if validation_data is not None else None
        past_names, known_names = tuple(past_covariates or ()), tuple(known_covariates or ())
        covariates = validation_covariates = None
        if past_names or known_names:
            wrap_options.update(past_covariates=list(past_names), known_covariates=list(known_names))
            MSFTConfig(past_covariates=past_names, known_covariates=known_names)  # the names' own checks, first
            covariates = read_covariates(train_data, series, past_names, known_names, names, "train_data")
            check_known_complete(series, covariates, known_names, "train_data")
            if validation is not None:
                validation_covariates = read_covariates(
                    validation_data, validation, past_names, known_names, names, "validation_data"
                )
                check_known_complete(validation, validation_covariates, known_names, "validation_data")
        for what, given in (("train_data", series), ("validation_data", validation)):
            empty = [item for item, v in zip(given.ids, given.values) if not np.isfinite(v).any()] if given else []
            if empty:
                shown = ", ".join(repr(i) for i in empty[:10]) + (
                    f" and {len(empty) - 10} more" if len(empty) > 10 else ""
                )
                raise ValueError(f"{what}: item(s) {shown} have no observed values (all NaN): drop them")
        if validation is not None and validation.freq != series.freq:
            raise ValueError(
                f"validation_data has frequency {validation.freq.freqstr}, train_data {series.freq.freqstr}: "
                "expected the same"
            )
        resolve_args = {"horizon": prediction_length, "context_length": train["context_length"] or 512}
        if isinstance(backbone, nn.Module):  # the caller's module is left as it came: train a copy
            backbone = copy.deepcopy(backbone)
        module, base_options, source = resolve_backbone(backbone, freq=series.freq, **resolve_args)
        reference = copy.deepcopy(module) if method != "zero_shot" else None  # the zero-shot backbone, scored after
        L.seed_everything(seed, workers=True, verbose=False)
        if method == "msft":
            options_msft = wrap_options
        else:  # the baselines take their fixed options; what the user gave (e.g. patch_size) applies to all
            options_msft = {"prompt_tokens": wrap_options.pop("prompt_tokens", 8)} if method == "prompt_tuning" else {}
            base_options.update(wrap_options)
        holdout = 0 if validation is not None else train["validation_windows"] * prediction_length
        auto = _auto_scales(options_msft, series, module, base_options, resolve_args["context_length"], holdout)
        data = FrameDataModule(
            series,
            prediction_length,
            train["context_length"],
            train["batch_size"],
            seed,
            validation=validation,
            validation_windows=train["validation_windows"],
            covariates=covariates,
            validation_covariates=validation_covariates,
            num_past=len(past_names),
        )
        data.setup("fit")
        steps_per_epoch = len(data.train_dataloader())
        total = max(min(max_steps or 10**9, steps_per_epoch * train["max_epochs"]), 2)
        built = build_model(module, method, prediction_length, options_msft, train["peft"], total, base_options)
        try:
            data.check_context(built.model)
        except ValueError:
            msft.unwrap(built.model)  # a module the caller passed is handed back as it came
            raise
        lr = train["lr"] if isinstance(train["lr"], dict) else {"lr": train["lr"], "scale_weight_lr": 1e-2}
        module_type = CovariateForecastModule if covariates is not None else ForecastModule
        lightning_module = module_type(built.model, lr, train["weight_decay"], built.tuner)
        record: dict[str, Any] = {}
        run_dir = train["run_dir"]
        with tempfile.TemporaryDirectory(prefix="msft-finetune-") as tmp, _quiet(verbose):
            if built.trains:
                cfg = _fit_config(train, seed, max_steps, time_limit, steps_per_epoch)
                record = fit(cfg, lightning_module, data, Path(run_dir) if run_dir else Path(tmp))
        built.model.eval()
        if auto is not None:
            record["scales_auto"] = {"scales": list(auto.scales), "period": auto.period, "reason": auto.reason}
        if train["calibrate"] is not None:  # split conformal on the validation windows (msft.calibration)
            _calibrate(built.model, data, train["calibrate"], train["num_samples"])
        board, fallback = _leaderboard(built.model, reference, method, base_options, data, series.freq, guard)
        settings = ForecasterSettings(
            prediction_length=prediction_length,
            context_length=data.context_length,
            freq=series.freq.freqstr,
            method=method,
            source=source,
            wrap_options=base_options,
            msft_options=options_msft,
            peft=train["peft"],
            names=names,
            training=record,
            num_samples=train["num_samples"],
            total_steps=total,
            resolve_args=resolve_args,
            leaderboard=board,
            fallback=fallback,
        )
        return Forecaster(built.model, settings, tuner=built.tuner)


def _check_threads(threads: int | None) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r}: expected a positive integer or None")


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Lightning's notices and warnings off while training (``verbose=True`` keeps them); the loggers'
    levels are restored afterwards."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
            warnings.filterwarnings("ignore", module=r"pytorch_lightning(\.|$)")
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|Tip:|LitLogger).*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@torch.no_grad()
def _leaderboard(
    model: msft.MSFTModel,
    reference: nn.Module | None,
    method: str,
    base_options: dict[str, Any],
    data: FrameDataModule,
    freq: Any,
    guard: str | None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Score the finetuned model, the zero-shot backbone, the last value and the seasonal naive on the
    validation windows; return the rows and the naive baseline ``guard`` falls back to (or None).

    Errors are in units of each window's context standard deviation (observed steps), so series of
    any magnitude weigh alike: ``mse`` is the mean squared scaled error, ``mae`` the mean absolute one.
    """
    period = season_of(freq)
    candidates: dict[str, Any] = {method: model}
    if reference is not None:
        zero_shot = build_model(reference, "zero_shot", data.horizon, {}, None, 2, base_options).model.eval()
        candidates["zero_shot"] = zero_shot
    naive = {"last_value": {"name": "last_value"}}
    if 1 < period <= data.context_length:
        naive[f"seasonal_naive({period})"] = {"name": "seasonal_naive", "period": period}
    sums = {name: [0.0, 0.0, 0] for name in [*candidates, *naive]}
    windows = 0
    for batch in data.val_dataloader():
        past, future = batch["past_target"], batch["future_target"]  # (batch, L, 1), (batch, H, 1)
        observed = batch["future_observed"].bool() & torch.isfinite(future)
        seen = batch["past_observed"].bool() & torch.isfinite(past)
        mean = torch.where(seen, past, 0.0).sum(1, keepdim=True) / seen.sum(1, keepdim=True).clamp(min=1)
        var = torch.where(seen, (past - mean) ** 2, 0.0).sum(1, keepdim=True) / seen.sum(1, keepdim=True).clamp(min=1)
        scale = var.sqrt().clamp(min=1e-8 * (1 + mean.abs()))  # (batch, 1, V)
        usable = seen.any(1, keepdim=True)  # (batch, 1, V): a window with no observed context is skipped
        observed = observed & usable
        windows += int(usable.sum())
        forecasts = {
            name: m.predict_all(past, data.horizon, batch["past_observed"], **covariates_of(batch, m))["mean"]
            for name, m in candidates.items()
        }
        filled = fill_missing(torch.where(seen, past, torch.nan))
        forecasts.update({name: naive_forecaster(spec).predict(filled, data.horizon) for name, spec in naive.items()})
        for name, forecast in forecasts.items():
            error = torch.where(observed, (forecast - torch.nan_to_num(future)) / scale, 0.0)
            sums[name][0] += float(error.square().sum())
            sums[name][1] += float(error.abs().sum())
            sums[name][2] += int(observed.sum())
    if reference is not None:
        msft.unwrap(candidates["zero_shot"])
    rows = [
        {"model": name, "mse": s[0] / s[2], "mae": s[1] / s[2], "windows": windows, "used": name == method}
        for name, s in sums.items()
        if s[2]
    ]
    scores = {row["model"]: row for row in rows}
    best_naive = min((scores[n] for n in naive if n in scores), key=lambda r: r["mse"], default=None)
    fallback = None
    if method in scores and best_naive is not None and scores[method]["mse"] > best_naive["mse"]:
        ours = scores[method]
        logger.warning(
            "finetune: the %s model is worse on validation than the %s baseline: MSE %.4f vs %.4f, MAE %.4f vs "
            "%.4f (scaled units, %d windows)%s",
            method,
            best_naive["model"],
            ours["mse"],
            best_naive["mse"],
            ours["mae"],
            best_naive["mae"],
            windows,
            f"; guard='naive': forecasting with {best_naive['model']}" if guard == "naive" else "",
        )
        if guard == "naive":
            fallback = naive[best_naive["model"]]
            for row in rows:
                row["used"] = row["model"] == best_naive["model"]
    return rows, fallback


def _calibrate(model: msft.MSFTModel, data: FrameDataModule, method: str, num_samples: int) -> None:
    """`msft.MSFTModel.calibrate` on every validation window of ``data`` (each series' held-out blocks)."""
    windows = data.val_set[torch.arange(len(data.val_set))]
    model.calibrate(
        windows["past_target"],
        windows["future_target"],
        windows["past_observed"],
        windows["future_observed"],
        method=method,
        num_samples=num_samples,
        **covariates_of(windows, model),  # the windows' covariates, for a model built with them
    )


def _auto_scales(
    options: dict[str, Any], series: Any, module: nn.Module, base_options: dict[str, Any], context: int, holdout: int
):
    """``scales="auto"``: resolve it in ``options`` from the training part of the series alone
    (``holdout`` final steps are the validation windows; `msft.scales`)."""
    if options.get("scales") != "auto":
        return None
    from msft.config import MSFTConfig
    from msft.registry import build_spec
    from msft.scales import choose_scales

    fields = set(MSFTConfig.__dataclass_fields__) - {"scales"}
    patch = build_spec(module, MSFTConfig(**{k: v for k, v in base_options.items() if k in fields})).patch_size()
    choice = choose_scales([v[: len(v) - holdout] for v in series.values], context, patch)
    options["scales"] = list(choice.scales)
    return choice


def _fit_config(
    train: dict[str, Any], seed: int, max_steps: int | None, time_limit: float | None, steps_per_epoch: int
):
    from omegaconf import OmegaConf

    accelerator = train["accelerator"]
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    trainer = {
        "accelerator": accelerator,
        "devices": 1,
        "max_epochs": train["max_epochs"],
        "max_steps": max_steps or -1,
        "gradient_clip_val": train["gradient_clip_val"],
        "enable_progress_bar": bool(train["progress"]),
        "log_every_n_steps": 10,
        "patience": train["patience"],
        # validate (and early-stop) at least once even when max_steps ends training mid-epoch
        "val_check_interval": min(steps_per_epoch, max_steps or steps_per_epoch),
    }
    if time_limit is not None:
        if not isinstance(time_limit, (int, float)) or time_limit <= 0:
            raise ValueError(f"time_limit={time_limit!r}: expected a positive number of seconds")
        trainer["max_time"] = {"seconds": float(time_limit)}
    return OmegaConf.create({"trainer": trainer, "seed": seed, "resume": False, "interrupt_at_step": None})
