"""One distillation experiment on an LSF dataset: teacher vs distilled student vs undistilled student.

`run_distill` caches the teacher over the training windows, fits two students from the same
initialisation (with and without the teacher), evaluates all three with `msft.protocols.evaluate_lsf`
on the test split and measures inference throughput on one shared batch. `msft-distill`
is its command line.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msft.distill.losses import DistillConfig
from msft.distill.student import MLPStudent, StudentConfig
from msft.distill.teacher import cache_name, cache_teacher
from msft.distill.train import fit_student

logger = logging.getLogger(__name__)


def measure_throughput(forecaster: Any, past_target: torch.Tensor, horizon: int, min_seconds: float = 2.0) -> float:
    """Windows per second of ``forecaster.predict(past_target, horizon)`` (no grad, after one warm-up call)."""
    predict = forecaster.predict if hasattr(forecaster, "predict") else (lambda past, h: forecaster(past))
    with torch.no_grad():
        predict(past_target, horizon)
        calls, start = 0, time.perf_counter()
        while True:
            predict(past_target, horizon)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return calls * past_target.shape[0] / elapsed


def num_parameters(model: Any) -> int | None:
    return sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else None


def run_distill(
    teacher: Any,
    dataset: str = "ETTh1",
    horizon: int = 96,
    context_length: int = 336,
    mode: str = "S",
    data_dir: str | os.PathLike | None = None,
    train_stride: int = 1,
    student: dict[str, Any] | None = None,
    distill: DistillConfig | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    teacher_tag: str = "teacher",
    out_dir: str | os.PathLike | None = None,
    eval_batch_size: int = 256,
    throughput_batch: int = 256,
    throughput_threads: int | None = None,
    variants: dict[str, DistillConfig] | None = None,
    evaluate_teacher: bool = True,
    val_stride: int = 1,
    lr_schedule: str = "constant",
    patience: int | None = None,
) -> dict[str, Any]:
    """Teacher, distilled student and undistilled student on ``dataset``'s test split.

    Returns ``{"rows": [{"model", "mse", "mae", "params", "windows_per_s"}, ...], "setup": {...},
    "timings_s": {...}}``. Students train on the train windows taken every ``train_stride`` steps
    (the windows the teacher is cached over), keep their best validation epoch, and the distilled one
    is saved to ``out_dir/student`` when ``out_dir`` is given. Throughput is measured at
    ``throughput_threads`` torch threads (default: the current setting), restored afterwards. With a teacher that gives no features
    the feature term is switched off (``beta=0``), which the setup records. ``variants`` (row name ->
    config) adds more distilled students, from the same initialisation and cache, as extra rows (ablations).
    Validation (best-epoch selection) uses the val windows every ``val_stride`` steps; ``lr_schedule``
    and ``patience`` are `msft.distill.fit_student`'s (TimeDistill's recipe: ``"type1"``, 5).
    ``evaluate_teacher=False`` leaves the teacher's row out (e.g. a second student seed against a
    teacher already scored).
    """
    from msft.data import prepare_lsf
    from msft.protocols import evaluate_lsf

    distill = distill or DistillConfig()
    timings: dict[str, float] = {}
    data = prepare_lsf(dataset, context_length, data_dir=data_dir)
    train = data.windows("train", horizon, mode, stride=train_stride)
    val = data.windows("val", horizon, mode, stride=val_stride)

    start = time.perf_counter()
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / cache_name(data.name, context_length, horizon, mode, train_stride, teacher_tag)
    cache = cache_teacher(teacher, train, horizon, batch_size=eval_batch_size, features=distill.beta > 0, path=path)
    timings["teacher_cache"] = time.perf_counter() - start
    if distill.beta > 0 and cache.features is None:
        logger.warning("the teacher gives no features: the feature term is off (beta=0)")
        distill = DistillConfig(**{**distill.to_dict(), "beta": 0.0})

    config = StudentConfig(context_length=context_length, horizon=horizon, **(student or {}))
    torch.manual_seed(seed)
    distilled = MLPStudent(config)
    plain = MLPStudent(config)
    plain_init = copy.deepcopy(distilled.state_dict())
    plain.load_state_dict(plain_init)  # the same initialisation for every student
    fit = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        val_windows=val,
        lr_schedule=lr_schedule,
        patience=patience,
    )
    start = time.perf_counter()
    distilled_fit = fit_student(distilled, train, distill, cache, **fit)
    timings["fit_distilled"] = time.perf_counter() - start
    start = time.perf_counter()
    plain_fit = fit_student(plain, train, DistillConfig(alpha=0.0, beta=0.0), **fit)
    timings["fit_plain"] = time.perf_counter() - start
    students = {"student (distilled)": (distilled, distilled_fit), "student (no distillation)": (plain, plain_fit)}
    for name, variant in (variants or {}).items():
        model = MLPStudent(config)
        model.load_state_dict(plain_init)
        start = time.perf_counter()
        students[name] = (model, fit_student(model, train, variant, cache, **fit))
        timings[f"fit_{name}"] = time.perf_counter() - start
    if out_dir is not None:
        distilled.save(Path(out_dir) / "student")

    test_past = data.windows("test", horizon, mode)[:throughput_batch]["past_target"]
    rows = []
    scored = [("teacher", teacher)] if evaluate_teacher else []
    for name, model in scored + [(name, model) for name, (model, _) in students.items()]:
        start = time.perf_counter()
        metrics = evaluate_lsf(model, data, horizon, context_length, mode, batch_size=eval_batch_size)
        timings[f"test_{name}"] = time.perf_counter() - start
        rows.append(
            {
                "model": name,
                "mse": metrics["mse"],
                "mae": metrics["mae"],
                "windows": metrics["windows"],
                "params": num_parameters(model),
                "windows_per_s": _at_threads(throughput_threads, measure_throughput, model, test_past, horizon),
            }
        )
    setup = {
        "dataset": data.name,
        "horizon": horizon,
        "context_length": context_length,
        "mode": mode,
        "train_windows": len(train),
        "train_stride": train_stride,
        "val_windows": len(val),
        "val_stride": val_stride,
        "student": asdict(config),
        "distill": distill.to_dict(),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "lr_schedule": lr_schedule,
        "patience": patience,
        "seed": seed,
        "throughput_batch": int(test_past.shape[0]),
        "throughput_threads": throughput_threads or torch.get_num_threads(),
        "teacher_features": None if cache.features is None else int(cache.features.shape[-1]),
        "best_epoch": {name: fitted.best_epoch for name, (_, fitted) in students.items()},
        "epochs_run": {name: fitted.epochs_run for name, (_, fitted) in students.items()},
        "val_mse": {name: fitted.val_mse for name, (_, fitted) in students.items()},
        "variants": {name: variant.to_dict() for name, variant in (variants or {}).items()},
    }
    return {"rows": rows, "setup": setup, "timings_s": timings}


def _at_threads(threads: int | None, fn, *args: Any) -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(previous)


def markdown_table(result: dict[str, Any]) -> str:
    """The rows of `run_distill` as a markdown table, with the speed-up over the teacher."""
    teacher_speed = result["rows"][0]["windows_per_s"]
    lines = [
        "| model | MSE | MAE | parameters | windows/s | speed-up vs teacher |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        params = "n/a" if row["params"] is None else f"{row['params']:,}"
        lines.append(
            f"| {row['model']} | {row['mse']:.4f} | {row['mae']:.4f} | {params} | {row['windows_per_s']:,.0f} | "
            f"{row['windows_per_s'] / teacher_speed:.1f}× |"
        )
    return "\n".join(lines)
