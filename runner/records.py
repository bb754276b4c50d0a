"""A run's record: the one type that names what ``metrics.json`` holds, read and written in one place.

`msft_runner.train.run` builds it (identity, training, the zero-shot guard, then the test), the CLI
writes a failed run's, `msft_runner.results` tabulates them and `load_run` / ``msft-evaluate`` read
them back. Per-scale validation scores are the one family of keys named by pattern
(``val_mse_scale<s>``, `PER_SCALE`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypedDict

#: the file a run directory keeps its record in
METRICS = "metrics.json"
#: per-scale validation MSEs of the fused objective: ``val_mse_scale1``, ``val_mse_scale2``, ...
PER_SCALE = re.compile(r"val_mse_scale\d+")


class RunRecord(TypedDict, total=False):
    """What ``metrics.json`` holds. Every key is optional: a failed run has identity and ``error``, a
    deferred one no test fields."""

    # identity
    status: str  # "ok" or "failed"
    error: str  # a failed run: the exception, one line
    experiment: str
    backbone: str  # the backbone config name (or class name)
    dataset: str
    horizon: int
    context_length: int  # scale 1's context (data.context_length)
    mode: str  # "S" or "M"
    past_covariates: list[str]  # data.past_covariates (runs with covariates only)
    known_covariates: list[str]  # data.known_covariates (runs with covariates only)
    protocol: str  # "lsf" or "pf"
    method: str
    seed: int
    run_dir: str  # added by `msft_runner.results.collect`, never written
    # training
    lr: float
    lr_scale: float
    trainable_params: int
    total_params: int
    base_fingerprint: str  # the pretrained weights the run started from (`msft.provenance.fingerprint`)
    zero_shot_val_score: float | None
    val_score: float | None  # the selection score (fused validation MSE, or CRPS under PF)
    val_loss: float
    best_epoch: int
    checkpoint: str  # "best.ckpt" or "last.ckpt": the weights the test scored
    epochs: int
    steps: int
    resumed: bool
    fit_seconds: float
    guard: str  # "off", "finetuned" or "zero_shot_kept"
    finetuned_val_score: float  # when the guard kept the zero-shot weights
    fusion_weights: dict[str, float]
    calibration: dict[str, Any]  # calibrate=conformal: what was fitted on validation
    # test ("deferred" until msft-evaluate tests it)
    test: str
    mse: float
    mae: float
    windows: int
    scoring: str
    test_stride: int
    windows_per_process: list[int]
    eval_seconds: float
    tests: dict[str, dict[str, Any]]  # an LSF run's test fields per test stride
    crps: float
    msis: float
    smape: float
    mase: float
    nd: float
    nrmse: float


FIELDS = frozenset(RunRecord.__annotations__)


def unknown_fields(record: dict[str, Any]) -> list[str]:
    """Keys of ``record`` that `RunRecord` does not declare (per-scale scores are declared by pattern)."""
    return sorted(k for k in record if k not in FIELDS and not PER_SCALE.fullmatch(k))


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """The record of ``run_dir``; FileNotFoundError naming the directory when it has none."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {METRICS}; expected the directory of an msft-train run")
    return json.loads(path.read_text())


def write_record(run_dir: str | os.PathLike, record: RunRecord) -> None:
    """Write ``record`` to ``run_dir``'s metrics.json atomically; a key it does not declare is a bug."""
    unknown = unknown_fields(record)
    if unknown:
        raise ValueError(f"run record fields {unknown} are not declared in msft_runner.records.RunRecord")
    write_json_atomic(Path(run_dir) / METRICS, record)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON so that a crash never leaves a half-written file."""
    write_text_atomic(path, json.dumps(payload, indent=2))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
