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

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

import msft
from msft.data.frames import read_series
from msft_runner.backbones import resolve_backbone
from msft_runner.data_frames import FrameDataModule
from msft_runner.forecaster import Forecaster, ForecasterSettings, from_pretrained
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
    from msft.config import MSFTConfig
    from msft_runner.train import fit

    if method not in KINDS:
        raise ValueError(f"method={method!r}: expected one of {KINDS}")
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
    if validation is not None and validation.freq != series.freq:
        raise ValueError(
            f"validation_data has frequency {validation.freq.freqstr}, train_data {series.freq.freqstr}: "
            "expected the same"
        )
    resolve_args = {"horizon": prediction_length, "context_length": train["context_length"] or 512}
    module, base_options, source = resolve_backbone(backbone, freq=series.freq, **resolve_args)
    L.seed_everything(seed, workers=True, verbose=False)
    if method == "msft":
        options_msft = wrap_options
    else:  # the baselines take their fixed options; what the user gave (e.g. patch_size) applies to all
        options_msft = {"prompt_tokens": wrap_options.pop("prompt_tokens", 8)} if method == "prompt_tuning" else {}
        base_options.update(wrap_options)
    data = FrameDataModule(
        series,
        prediction_length,
        train["context_length"],
        train["batch_size"],
        seed,
        validation=validation,
        validation_windows=train["validation_windows"],
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
    lightning_module = ForecastModule(built.model, lr, train["weight_decay"], built.tuner)
    record: dict[str, Any] = {}
    run_dir = train["run_dir"]
    with tempfile.TemporaryDirectory(prefix="msft-finetune-") as tmp:
        if built.trains:
            cfg = _fit_config(train, seed, max_steps, time_limit, steps_per_epoch)
            record = fit(cfg, lightning_module, data, Path(run_dir) if run_dir else Path(tmp))
    built.model.eval()
    if train["calibrate"] is not None:  # split conformal on the validation windows (msft.calibration)
        _calibrate(built.model, data, train["calibrate"], train["num_samples"])
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
    )
    return Forecaster(built.model, settings, tuner=built.tuner)


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
    )


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
