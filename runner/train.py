"""One run: build data, backbone and method from a composed config, train, evaluate, write the run dir.

`run` is what the Hydra app calls per job; it is plain Python on an OmegaConf config, so tests and
notebooks can call it too. The run directory gets ``config.yaml`` (resolved), ``metrics.json``
(written atomically), ``checkpoints/`` (trainable parameters only), ``metrics.csv`` (learning
curves), ``adapter/`` (msft runs) and ``plots/``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from msft_runner import distributed
from msft_runner.backbones import build_backbone
from msft_runner.methods import build_model
from msft_runner.module import EpochSeed, EpochShuffledBatches, ForecastModule, StopAt

logger = logging.getLogger(__name__)

METRICS = "metrics.json"
PROTOCOLS = ("lsf", "pf")
# Keys of the trainer group that are not `lightning.Trainer` arguments: early-stopping patience, and how
# msft starts the processes of a data-parallel run on one node (msft_runner.distributed).
TRAINER_EXTRAS = ("patience", "start_method")


def run(cfg: DictConfig, run_dir: str | os.PathLike, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Train and evaluate one (backbone, data, method) configuration; return and write its metrics.

    With a data-parallel trainer (``trainer=ddp_cpu``, ``ddp``, ...) every process runs this function
    as one rank; when no launcher started them, this call starts them and returns rank 0's record.
    """
    run_dir = Path(run_dir)
    nprocs = distributed.processes_to_start(cfg.trainer)
    if nprocs:  # resolved first: the processes have no Hydra context for ${hydra:...} interpolations
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        return distributed.start_processes(run, (resolved, run_dir, names), nprocs,
                                           cfg.trainer.get("start_method", "spawn"))
    run_dir.mkdir(parents=True, exist_ok=True)
    names = names or {}
    if distributed.is_rank_zero():
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    protocol = cfg.data.get("protocol", "lsf")
    if protocol not in PROTOCOLS:
        raise ValueError(f"data.protocol={protocol!r}; expected one of {PROTOCOLS}")
    data = build_datamodule(cfg.data, cfg.seed)
    data.setup("fit")
    backbone, wrap_options = build_backbone(cfg.backbone)
    if protocol == "pf":
        _check_probabilistic(backbone, names.get("backbone"))
    method = cfg.method
    total_steps = _planned_steps(cfg, len(data.train_dataloader()))
    built = build_model(backbone, method.kind, cfg.data.horizon, _plain(method.get("options")),
                        _plain(method.get("peft")), total_steps, wrap_options)
    model = built.model
    module = ForecastModule(model, _plain(cfg.data.lr), cfg.weight_decay, built.tuner, cfg.get("lr_decay"))
    record: dict[str, Any] = {
        "status": "ok", "experiment": cfg.experiment, "backbone": names.get("backbone", type(backbone).__name__),
        "dataset": cfg.data.name, "horizon": cfg.data.horizon, "context_length": cfg.data.context_length,
        "mode": cfg.data.mode, "protocol": protocol, "method": method.name, "seed": cfg.seed,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    start = time.perf_counter()
    if built.trains:
        record.update(_fit(cfg, module, data, run_dir))
    record["fit_seconds"] = round(time.perf_counter() - start, 2)
    record.update(_evaluate(cfg, model, data))  # every rank forecasts its share of the test windows
    if not distributed.is_rank_zero():
        return record  # rank 0 alone writes the run directory
    if "msft_fusion" in dict(model.named_children()) and model.config.num_scales > 1:
        record["fusion_weights"] = dict(zip(map(str, model.scales), model.fusion_weights.tolist()))
    if method.kind in ("msft", "prompt_tuning"):  # the adapter holds msft's parameters (and the prompt)
        model.save_adapter(run_dir / "adapter")
    if cfg.plots:
        from msft_runner.plots import plot_run

        plot_run(run_dir, model, data, record)
    write_json_atomic(run_dir / METRICS, record)
    scores = ("crps", "mase") if protocol == "pf" else ("mse", "mae")
    logger.info("%s %s H=%d %s: %s", record["backbone"], record["dataset"], record["horizon"], record["method"],
                " ".join(f"{k}={record[k]:.4f}" for k in scores))
    return record


def _check_probabilistic(backbone: torch.nn.Module, name: str | None) -> None:
    """PF metrics score sample paths: fail before training when the backbone gives point forecasts only."""
    from msft.registry import spec_for

    spec = spec_for(backbone)
    if not spec.probabilistic:
        raise ValueError(f"backbone {name or spec.name!r} ({spec.name}) gives point forecasts only; the PF protocol "
                         f"(data.protocol=pf) scores sample paths and needs a probabilistic backbone (MOIRAI)")


def build_datamodule(data: DictConfig, seed: int = 0):
    """The data module of a data config (LSF, or PF when ``data.protocol`` is "pf"), with training
    batches shuffled per (seed, epoch)."""
    from msft.data.datamodule import LSFDataModule
    from msft_runner.pf_data import PFDataModule

    class Seeded:
        # Under DDP each rank takes its share of every batch (data.batch_size stays the global batch).
        def train_dataloader(self) -> DataLoader:
            batches = distributed.shard(EpochShuffledBatches(len(self.splits["train"]), self.batch_size, seed))
            return DataLoader(self.splits["train"], sampler=batches, batch_size=None, num_workers=self.num_workers)

        def val_dataloader(self) -> DataLoader:
            windows = self.splits["val"]
            batches = BatchSampler(SequentialSampler(windows), self.eval_batch_size, drop_last=False)
            return DataLoader(windows, sampler=distributed.shard(batches), batch_size=None,
                              num_workers=self.num_workers)

    class SeededLSFDataModule(Seeded, LSFDataModule):
        pass

    class SeededPFDataModule(Seeded, PFDataModule):
        pass

    dataset = data.dataset
    if data.get("path"):
        path = Path(str(data.path)).expanduser()
        if not path.is_file():
            raise ValueError(f"data.path={str(data.path)!r}: no such file; expected a CSV with a date column")
        dataset = str(path)
    elif dataset is None:
        raise ValueError(f"data.path is required for data={data.name}: pass data.path=/path/to/file.csv")
    if data.get("protocol", "lsf") == "pf":
        return SeededPFDataModule(dataset, context_length=data.context_length, horizon=data.horizon,
                                  windows=data.windows, batch_size=data.batch_size,
                                  eval_batch_size=data.eval_batch_size, targets=_plain(data.get("target")),
                                  data_dir=data.get("data_dir"), download=data.get("download", False),
                                  train_stride=data.train_stride)
    return SeededLSFDataModule(dataset, context_length=data.context_length, horizon=data.horizon, mode=data.mode,
                         batch_size=data.batch_size, eval_batch_size=data.eval_batch_size,
                         targets=_plain(data.get("target")), data_dir=data.get("data_dir"),
                         download=data.get("download", False), train_stride=data.train_stride)


def _fit(cfg: DictConfig, module: ForecastModule, data, run_dir: Path) -> dict[str, Any]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks = [checkpoint, EarlyStopping("val_loss", patience=cfg.trainer.patience, mode="min"),
                 EpochSeed(cfg.seed)]
    if cfg.get("interrupt_at_step"):
        callbacks.append(StopAt(cfg.interrupt_at_step))
    trainer_args = _trainer_arguments(cfg)
    # The loaders shard batches themselves (no padding, global batch): Lightning's sampler must not.
    trainer = L.Trainer(default_root_dir=run_dir, callbacks=callbacks, enable_model_summary=False,
                        logger=CSVLogger(run_dir, name="", version=""), use_distributed_sampler=False,
                        **trainer_args)
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if cfg.resume and last.exists() else None
    if cfg.resume and resume is None:
        logger.info("resume=true but %s does not exist: starting from scratch", last)
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    if checkpoint.best_model_path:
        module.load_trainable(checkpoint.best_model_path)
    best = checkpoint.best_model_score
    return {"val_loss": None if best is None else float(best), "epochs": trainer.current_epoch,
            "steps": trainer.global_step, "resumed": resume is not None}


@torch.no_grad()
def _evaluate(cfg: DictConfig, model, data) -> dict[str, Any]:
    from msft.protocols import evaluate_lsf, evaluate_pf

    device = "cpu"
    if torch.cuda.is_available() and cfg.trainer.accelerator in ("gpu", "cuda", "auto"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # this rank's GPU
    _, world = distributed.rank_and_world()
    if world > 1 and not torch.distributed.is_initialized():  # no fit (zero-shot) has joined the processes yet
        distributed.join_processes(_trainer_arguments(cfg))
    model.to(device).eval()
    # The protocol code runs unchanged on every rank; the forecaster splits each batch across the ranks.
    forecaster = distributed.ShardedForecaster(model, seed=cfg.seed)
    start = time.perf_counter()
    if cfg.data.get("protocol", "lsf") == "pf":
        def sample(past, horizon, num_samples):  # evaluate_pf hands CPU tensors
            return forecaster.predict_samples(past.to(device), horizon, num_samples=num_samples).cpu()

        result = evaluate_pf(sample, data.data.frame, horizon=cfg.data.horizon, windows=cfg.data.windows,
                             context_length=cfg.data.context_length, num_samples=cfg.data.num_samples,
                             seasonality=cfg.data.seasonality, batch_size=cfg.data.eval_batch_size)
        result["windows"] = len(data.splits["test"])
    else:
        result = evaluate_lsf(forecaster, data.data, cfg.data.horizon, cfg.data.context_length, cfg.data.mode,
                              batch_size=cfg.data.eval_batch_size, device=device)
    result["windows_per_process"] = forecaster.rows_per_rank()  # sums to `windows`: each scored once
    return {**result, "eval_seconds": round(time.perf_counter() - start, 2)}


def _trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in _plain(cfg.trainer).items() if k not in TRAINER_EXTRAS}


def _planned_steps(cfg: DictConfig, batches_per_epoch: int) -> int:
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and limit > 0:
        batches_per_epoch = min(batches_per_epoch, limit)
    elif isinstance(limit, float):
        batches_per_epoch = max(int(batches_per_epoch * limit), 1)
    return batches_per_epoch * max(cfg.trainer.max_epochs, 1)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
