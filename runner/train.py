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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

import msft
from msft.provenance import fingerprint
from msft_runner import distributed
from msft_runner.backbones import build_backbone
from msft_runner.methods import IDENTITY, build_model
from msft_runner.module import (
    SELECTION,
    BestMetrics,
    EpochSeed,
    EpochShuffledBatches,
    ForecastModule,
    StepProgress,
    StopAt,
    covariates_of,
    validation_sums,
)
from msft_runner.records import METRICS, read_record, write_record
from msft_runner.results import TEST_FIELDS, needs_test, off_protocol_windows

logger = logging.getLogger(__name__)

PROTOCOLS = ("lsf", "pf")
STEM_RESOLVER = "msft_file_stem"  # configs/data/csv.yaml: a CSV's runs and rows are named after its file


def file_stem(path: Any, default: str = "csv") -> str:
    """A data set's name from its file: the stem, with characters unfit for a folder name as ``_``
    (``/data/ETTh1.csv`` -> ``ETTh1``); ``default`` when no path is given."""
    if path is None or str(path) in ("", "???"):
        return default
    stem = Path(str(path)).stem
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in stem) or default


def register_resolvers() -> None:
    """The OmegaConf resolvers msft's configs use (idempotent)."""
    if not OmegaConf.has_resolver(STEM_RESOLVER):
        OmegaConf.register_new_resolver(STEM_RESOLVER, file_stem)


register_resolvers()


def check_run_dir(run_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse to run into ``run_dir`` when it holds a finished run (``metrics.json`` with status ok),
    naming it, unless ``overwrite``; a failed or interrupted run may be run again."""
    path = Path(run_dir) / METRICS
    if overwrite or not path.is_file():
        return
    try:
        record = read_record(run_dir)
    except (OSError, json.JSONDecodeError):
        return
    if record.get("status") == "ok":
        raise FileExistsError(
            f"{run_dir} holds a finished run ({record.get('dataset')} H={record.get('horizon')} "
            f"{record.get('method')} seed {record.get('seed')}, val_score {record.get('val_score')}): "
            "refusing to overwrite it; pass overwrite=true to replace it or skip_finished=true to keep it"
        )


# Keys of the trainer group that are not `lightning.Trainer` arguments: early-stopping patience, how
# msft starts the processes of a data-parallel run on one node (msft_runner.distributed), and the
# number of torch intra-op threads (`set_threads`).
TRAINER_EXTRAS = ("patience", "start_method", "threads")


def set_threads(trainer: DictConfig) -> None:
    """``trainer.threads``: torch's intra-op threads for the run (null: torch's default, one per core).
    On a machine whose cores other jobs keep busy, threads that wait for each other spin: 2 threads on
    2 loaded cores scored 13 windows/s where 1 thread scored 139-172 (tiny MOIRAI, msft [1,2,4],
    100 paths; results/inference/threads2/bench_inference.md)."""
    threads = trainer.get("threads")
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"trainer.threads={threads!r}: expected null (torch's default) or a positive integer")
    torch.set_num_threads(threads)


def run(cfg: DictConfig, run_dir: str | os.PathLike, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Train and evaluate one (backbone, data, method) configuration; return and write its metrics.

    With a data-parallel trainer (``trainer=ddp_cpu``, ``ddp``, ...) every process runs this function
    as one rank; when no launcher started them, this call starts them and returns rank 0's record.
    """
    run_dir = Path(run_dir)
    nprocs = distributed.processes_to_start(cfg.trainer)
    if nprocs:  # resolved first: the processes have no Hydra context for ${hydra:...} interpolations
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        return distributed.start_processes(
            run, (resolved, run_dir, names), nprocs, cfg.trainer.get("start_method", "spawn")
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.trainer)
    names = names or {}
    if distributed.is_rank_zero():
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    protocol = cfg.data.get("protocol", "lsf")
    if protocol not in PROTOCOLS:
        raise ValueError(f"data.protocol={protocol!r}; expected one of {PROTOCOLS}")
    setup = _build(cfg, names, protocol, score_zero_shot=True)
    data, built, module, model = setup.data, setup.built, setup.module, setup.built.model
    method, wrap_options, zero_shot_score = cfg.method, setup.wrap_options, setup.zero_shot_score
    initial = _initial_backbone_values(model) if cfg.get("guard") and built.trains else None
    record: dict[str, Any] = {
        "status": "ok",
        "experiment": cfg.experiment,
        "backbone": names.get("backbone", setup.backbone_type),
        "dataset": cfg.data.name,
        "horizon": cfg.data.horizon,
        "context_length": cfg.data.context_length,
        "mode": cfg.data.mode,
        **setup.covariates,
        "protocol": protocol,
        "method": method.name,
        "seed": cfg.seed,
        "lr": _learning_rates(cfg)["lr"],
        "lr_scale": cfg.get("lr_scale", 1.0),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "base_fingerprint": setup.base_fingerprint,
    }
    start = time.perf_counter()
    record["zero_shot_val_score"] = zero_shot_score
    if built.trains:
        record.update(fit(cfg, module, data, run_dir))
    else:
        record[SELECTION] = zero_shot_score
    record["fit_seconds"] = round(time.perf_counter() - start, 2)
    record["guard"] = "off" if initial is None else "finetuned"
    if initial is not None and record.get(SELECTION) is not None and record[SELECTION] > zero_shot_score:
        logger.warning(
            "guard: finetuned validation score %.4f is worse than zero-shot %.4f: keeping the zero-shot weights",
            record[SELECTION],
            zero_shot_score,
        )
        model = _zero_shot_fallback(model, initial, cfg.data.horizon, wrap_options)
        record.update({"guard": "zero_shot_kept", "finetuned_val_score": record[SELECTION], SELECTION: zero_shot_score})
    if setup.zero_shot_board is not None and distributed.is_rank_zero():
        tested = "zero_shot" if not built.trains or record["guard"] == "zero_shot_kept" else method.name
        write_leaderboard(cfg, model, data, setup.zero_shot_board, run_dir, tested)
    calibration = calibrate_on_validation(cfg, model, data)
    if calibration is not None:
        record["calibration"] = calibration
    if "msft_fusion" in dict(model.named_children()) and model.config.num_scales > 1:
        record["fusion_weights"] = dict(zip(map(str, model.scales), model.fusion_weights.tolist()))
    if cfg.get("defer_test"):  # a sweep candidate: msft-evaluate tests it if validation selects it
        record["test"] = "deferred"
        if distributed.is_rank_zero():
            write_record(run_dir, record)
            logger.info("%s: val_score=%.4f, test deferred", run_dir, record[SELECTION])
        return record
    return _test_and_write(cfg, model, data, record, run_dir)


def _test_and_write(cfg: DictConfig, model, data, record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Score ``model`` on the test split, save its adapter and plots, write ``metrics.json``.
    An LSF test also goes into ``record["tests"]`` under its stride, next to any earlier test of the
    run on other windows (`evaluate_run` with ``test_stride``), which it never overwrites."""
    earlier = dict(record.get("tests", {}))
    if record.get("test") == "done" and record.get("protocol") == "lsf":
        earlier.setdefault(str(record["test_stride"]), {k: record[k] for k in TEST_FIELDS if k in record})
    result = evaluate(cfg, model, data)  # every rank forecasts its share of the test windows
    record.update(result)
    record["test"] = "done"
    if record["protocol"] == "lsf":
        record["tests"] = {**earlier, str(result["test_stride"]): {k: result[k] for k in TEST_FIELDS if k in result}}
    if not distributed.is_rank_zero():
        return record  # rank 0 alone writes the run directory
    if cfg.method.kind in ("msft", "prompt_tuning") and record["guard"] != "zero_shot_kept":  # msft's parameters
        model.save_adapter(run_dir / "adapter")
    if cfg.plots:
        from msft_runner.plots import plot_run

        plot_run(run_dir, model, data, record)
    write_record(run_dir, record)
    scores = ("crps", "mase") if record["protocol"] == "pf" else ("mse", "mae")
    logger.info(
        "%s %s H=%d %s: %s",
        record["backbone"],
        record["dataset"],
        record["horizon"],
        record["method"],
        " ".join(f"{k}={record[k]:.4f}" for k in scores),
    )
    return record


def evaluate_run(run_dir: str | os.PathLike, test_stride: int | None = None) -> dict[str, Any]:
    """Test a run trained with ``defer_test=true``: rebuild its model from ``config.yaml``, load the
    checkpoint training kept (``record["checkpoint"]``; the zero-shot weights when the guard kept
    them), score the test split exactly as `run` would have, and complete ``metrics.json``.

    ``test_stride`` (LSF) scores every ``test_stride``-th test window instead of the run's own
    ``data.test_stride``; a run tested on other windows only is tested again, its earlier test kept
    in ``record["tests"]`` (keyed by stride) while the top-level scores become the new ones.
    A run already tested on the asked windows is returned as it is (`needs_test`), so a stopped
    evaluation can be started again."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record.get("status") != "ok":
        raise ValueError(f"{run_dir}: status {record.get('status')!r}; only a finished run (status ok) can be tested")
    if test_stride is not None:
        if isinstance(test_stride, bool) or not isinstance(test_stride, int) or test_stride < 1:
            raise ValueError(f"test_stride={test_stride!r}: expected a positive integer (1 scores every test window)")
        if record.get("protocol") != "lsf":
            raise ValueError(
                f"{run_dir}: test_stride={test_stride} but the run follows the {record.get('protocol')!r} "
                "protocol; only LSF runs have a test stride (PF scores its fixed rolling windows)"
            )
    if not needs_test(record, test_stride):
        return record
    cfg, model, data = load_run(run_dir, record)
    if test_stride is not None:
        cfg.data.test_stride = test_stride
    return _test_and_write(cfg, model, data, record, run_dir)


class FinishedRun(NamedTuple):
    """What `load_run` returns; unpacks as ``config, model, data``."""

    config: DictConfig  # the run's resolved config.yaml
    model: Any  # the msft.MSFTModel with exactly the weights the run's record scored, in eval mode
    data: Any  # the run's data module, set up for fitting (its validation and test windows)


def load_run(run_dir: str | os.PathLike, record: dict[str, Any] | None = None) -> FinishedRun:
    """A finished run of ``msft-train``, rebuilt from its ``config.yaml`` with exactly the weights its
    record scored: the checkpoint the record names (``best.ckpt`` or ``last.ckpt``), or the
    zero-shot weights when the zero-shot guard kept them. The one loader of runs: the CLI,
    ``msft-evaluate``, the benchmarks and the docs all use it. ``record``: the run's metrics record
    (read from ``metrics.json`` when not given)."""
    run_dir = Path(run_dir)
    for needed in ("config.yaml", METRICS):
        if not (run_dir / needed).is_file():
            raise ValueError(
                f"run_dir={str(run_dir)!r} has no {needed}: expected the directory of a finished msft-train run"
            )
    record = record if record is not None else read_record(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    setup = _build(cfg, {}, record["protocol"], score_zero_shot=False)
    _check_same_weights(run_dir, record, setup.base_fingerprint)
    model = setup.built.model
    if record.get("guard") == "zero_shot_kept":
        backbone = msft.unwrap(model)
        model = msft.wrap(backbone, horizon=cfg.data.horizon, **{**setup.wrap_options, **IDENTITY})
    elif setup.built.trains:
        checkpoint = run_dir / "checkpoints" / record.get("checkpoint", "best.ckpt")
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{run_dir}: {checkpoint.name} is missing; the run's trained weights are gone")
        setup.module.load_trainable(str(checkpoint))
    calibrate_on_validation(cfg, model, setup.data)  # the run's calibration, fitted again exactly as run fitted it
    return FinishedRun(cfg, model.eval(), setup.data)


def _check_same_weights(run_dir: Path, record: dict[str, Any], now: str) -> None:
    """A checkpoint holds only the trained parameters: on other pretrained weights than the run started
    from (a new checkpoint of the same backbone) it would load without error and forecast nonsense."""
    then = record.get("base_fingerprint")  # absent from runs made before it was recorded: not checkable
    if then is not None and then != now:
        raise ValueError(
            f"{run_dir}: the run was finetuned from backbone weights {then[:19]}..., but its backbone config "
            f"now builds {now[:19]}...; its checkpoint holds only the trained parameters, so it cannot be "
            "loaded on these weights. Re-run it, or restore the weights it was trained from"
        )


@dataclass
class _Setup:
    data: Any
    built: Any
    module: ForecastModule
    wrap_options: dict[str, Any]
    zero_shot_score: float | None
    backbone_type: str  # the backbone's class name (a record's "backbone" when no config name is given)
    base_fingerprint: str  # the pretrained weights the method starts from (`msft.provenance.fingerprint`)
    zero_shot_board: dict | None = None  # a CSV run's zero-shot validation scores (`msft_runner.leaderboard`)
    covariates: dict[str, list[str]] = field(default_factory=dict)  # `data_covariates`


def _build(cfg: DictConfig, names: dict[str, str], protocol: str, score_zero_shot: bool) -> _Setup:
    """Data, backbone, method and Lightning module of a run, built from its config in the order `run`
    trains them (a deferred test rebuilds exactly this, then loads the run's checkpoint).
    ``score_zero_shot``: also score the identity wrap on validation before the method changes the backbone.
    Covariates (``data.past_covariates`` / ``data.known_covariates``) are checked before anything loads
    and declared to every wrap of the run (`data_covariates`)."""
    covariates = data_covariates(cfg, names)
    data = build_datamodule(cfg.data, cfg.seed, history=method_history(cfg))
    data.setup("fit")
    backbone, wrap_options = build_backbone(cfg.backbone)
    base = fingerprint(backbone)  # before any method touches it (full finetuning changes these weights)
    wrap_options = {**wrap_options, **covariates}
    if protocol == "pf":
        quantiles = (plain(cfg.method.get("options")) or {}).get("quantile_levels") or wrap_options.get(
            "quantile_levels"
        )
        _check_probabilistic(backbone, names.get("backbone"), quantiles)
    method = cfg.method
    num_samples = cfg.data.get("num_samples", 100)
    zero_shot_score, zero_shot_board = None, None
    if score_zero_shot:
        zero_shot = msft.wrap(backbone, horizon=cfg.data.horizon, **{**(wrap_options or {}), **IDENTITY})
        zero_shot_score = validation_scores(zero_shot, data, cfg)[SELECTION]
        if wants_leaderboard(cfg):
            from msft_runner.leaderboard import model_forecast, score

            device = _device(cfg)
            batches = validation_batches(data, cfg)
            zero_shot_board = score({"zero_shot": model_forecast(zero_shot.to(device).eval())}, batches, device)
            zero_shot.cpu()
        msft.unwrap(zero_shot)
    total_steps = _planned_steps(cfg, len(data.train_dataloader()))
    built = build_model(
        backbone,
        method.kind,
        cfg.data.horizon,
        plain(method.get("options")),
        plain(method.get("peft")),
        total_steps,
        wrap_options,
        method.get("backbone_trainable"),
    )
    optimizer = cfg.get("optimizer") or {}
    module = ForecastModule(
        built.model,
        _learning_rates(cfg),
        cfg.weight_decay,
        built.tuner,
        protocol,
        num_samples,
        betas=tuple(optimizer.get("betas", (0.9, 0.999))),
        eps=optimizer.get("eps", 1e-8),
        lr_decay=cfg.get("lr_decay"),
        progress_score=SELECTION,  # the results table's units (z-scored MSE, or CRPS)
    )
    return _Setup(
        data, built, module, wrap_options, zero_shot_score, type(backbone).__name__, base, zero_shot_board, covariates
    )


def _check_probabilistic(backbone: torch.nn.Module, name: str | None, quantile_levels: Any = None) -> None:
    """PF metrics score distributions: fail before training when the backbone gives point forecasts only
    (a point backbone with msft quantile heads, ``quantile_levels``, is scored through its quantiles)."""
    from msft.registry import spec_for

    spec = spec_for(backbone)
    if not spec.probabilistic and not quantile_levels:
        raise ValueError(
            f"backbone {name or spec.name!r} ({spec.name}) gives point forecasts only; the PF protocol "
            f"(data.protocol=pf) scores sample paths and needs a probabilistic backbone (MOIRAI), or "
            f"quantile heads: method=msft +method.options.quantile_levels=[0.1,0.2,...,0.9]"
        )


#: the methods a run with covariates may use: they wrap MOIRAI with the covariates declared
COVARIATE_METHODS = ("msft", "lora", "full", "zero_shot")
COVARIATE_KEYS = ("past_covariates", "known_covariates")


def data_covariates(cfg: DictConfig, names: dict[str, str] | None = None) -> dict[str, list[str]]:
    """``{"past_covariates": [...], "known_covariates": [...]}`` of ``data.past_covariates`` /
    ``data.known_covariates`` (the non-empty ones; ``{}`` for a run without covariates), checked before
    any data or weights load: ``ValueError`` for names that are not a list of strings, another
    protocol than LSF, a method outside `COVARIATE_METHODS`, a backbone whose spec takes no
    covariates (channel-independent: all but MOIRAI)."""
    found = {}
    for key in COVARIATE_KEYS:
        value = plain(cfg.data.get(key)) or []
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"data.{key}={value!r}: expected a list of column names, e.g. data.{key}=[HUFL,HULL]")
        if value:
            found[key] = value
    if not found:
        return {}
    given = " ".join(f"data.{k}=[{','.join(v)}]" for k, v in found.items())
    protocol = cfg.data.get("protocol", "lsf")
    if protocol != "lsf":
        raise ValueError(f"{given}: covariates are read under the LSF protocol only, not data.protocol={protocol!r}")
    kind = cfg.method.get("kind")
    if kind not in COVARIATE_METHODS:
        raise ValueError(
            f"{given}: method {cfg.method.get('name')!r} ({kind}) does not take covariates; expected a method of "
            f"kind {', '.join(COVARIATE_METHODS)}, or remove the covariates"
        )
    from msft.registry import registered_backbones

    family = cfg.backbone.get("family")
    spec = registered_backbones().get(family) if family else None
    if spec is not None and not spec.supports_variates:
        backbone = (names or {}).get("backbone") or family
        raise ValueError(
            f"{given}: the {backbone!r} backbone ({spec.name}) is channel-independent and takes no covariates; "
            "remove data.past_covariates / data.known_covariates, or use a MOIRAI backbone (e.g. backbone=tiny_moirai)"
        )
    return found


def method_history(cfg: DictConfig) -> int | None:
    """Past steps a window must hold for the method's per-scale context lengths (`MSFTConfig.
    context_lengths`), when they reach further back than ``data.context_length``, the context of
    scale 1: "equal_tokens" needs ``max(scales)`` times it, a list its longest entry. None otherwise."""
    options = plain(cfg.method.get("options")) or {}
    lengths = options.get("context_lengths")
    if lengths is None:
        return None
    if lengths == "equal_tokens":
        return max(options.get("scales") or msft.MSFTConfig().scales) * cfg.data.context_length
    return max(max(lengths), cfg.data.context_length)


def build_datamodule(data: DictConfig, seed: int = 0, history: int | None = None):
    """The data module of a data config (LSF, or PF when ``data.protocol`` is "pf"), with training
    batches shuffled per (seed, epoch). ``history``: past steps per window when the method's scales
    need more than ``data.context_length`` (`method_history`); validation and test windows borrow
    them from the splits before, as the protocol does for its look-back, so their count is the same."""
    from msft_runner.lsf_data import LSFDataModule
    from msft_runner.pf_data import PFDataModule

    val_stride = data.get("val_stride", 1)
    if isinstance(val_stride, bool) or not isinstance(val_stride, int) or val_stride < 1:
        raise ValueError(f"data.val_stride={val_stride!r}: expected a positive integer")

    class Seeded:
        # Under DDP each rank takes its share of every batch (data.batch_size stays the global batch).
        def train_dataloader(self) -> DataLoader:
            batches = distributed.shard(EpochShuffledBatches(len(self.splits["train"]), self.batch_size, seed))
            return DataLoader(self.splits["train"], sampler=batches, batch_size=None, num_workers=self.num_workers)

        def val_dataloader(self) -> DataLoader:  # every val_stride-th window (all series alike)
            windows = self.splits["val"]
            order = SequentialSampler(windows) if val_stride == 1 else range(0, len(windows), val_stride)
            batches = BatchSampler(order, self.eval_batch_size, drop_last=False)
            return DataLoader(
                windows, sampler=distributed.shard(batches), batch_size=None, num_workers=self.num_workers
            )

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
    common = dict(
        context_length=history or data.context_length,
        horizon=data.horizon,
        batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size,
        targets=plain(data.get("target")),
        data_dir=data.get("data_dir"),
        download=data.get("download", False),
        train_stride=data.train_stride,
    )
    if data.get("protocol", "lsf") == "pf":
        return SeededPFDataModule(dataset, windows=data.windows, **common)
    covariates = {key: plain(data.get(key)) or () for key in COVARIATE_KEYS}
    return SeededLSFDataModule(dataset, mode=data.mode, **common, **covariates)


def fit(cfg: DictConfig, module: ForecastModule, data, run_dir: Path) -> dict[str, Any]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=SELECTION,
        mode="min",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    best_metrics = BestMetrics(SELECTION)
    callbacks = [
        checkpoint,
        EarlyStopping(SELECTION, patience=cfg.trainer.patience, mode="min"),
        EpochSeed(cfg.seed),
        best_metrics,
    ]
    if cfg.get("interrupt_at_step"):
        callbacks.append(StopAt(cfg.interrupt_at_step))
    trainer_args = _trainer_arguments(cfg)
    if trainer_args.get("enable_progress_bar", True) and distributed.is_rank_zero():
        callbacks.append(StepProgress(module.progress_score))  # in steps, not Lightning's per-epoch bar
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if cfg.resume and last.exists() else None
    if cfg.resume and resume is None:
        logger.info("resume=true but %s does not exist: starting from scratch", last)
    # msft-train's `verbose: false` silences Lightning's notices and tips (msft.finetune quiets its own call)
    with _quiet_lightning(cfg.get("verbose") is False):
        # The loaders shard batches themselves (no padding, global batch): Lightning's sampler must not.
        trainer = L.Trainer(
            default_root_dir=run_dir,
            callbacks=callbacks,
            enable_model_summary=False,
            logger=CSVLogger(run_dir, name="", version=""),
            use_distributed_sampler=False,
            **trainer_args,
        )
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    kept = "last.ckpt"  # no validation score: the final weights
    if checkpoint.best_model_path:
        module.load_trainable(checkpoint.best_model_path)
        kept = Path(checkpoint.best_model_path).name
    best = checkpoint.best_model_score
    return {
        **best_metrics.best,
        "checkpoint": kept,
        SELECTION: None if best is None else float(best),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "resumed": resume is not None,
    }


def _quiet_lightning(quiet: bool):
    """`msft.finetune`'s quieting (Lightning's loggers at ERROR, its warnings ignored) when ``quiet``."""
    import contextlib

    if not quiet:
        return contextlib.nullcontext()
    from msft_runner.api import _quiet

    return _quiet(verbose=False)


def validation_scores(model, data, cfg: DictConfig) -> dict[str, float]:
    """``val_score`` and the per-scale MSEs of ``model`` on the validation batches training sees
    (``trainer.limit_val_batches``), computed as `ForecastModule`'s validation does."""
    sums: dict[str, list[float]] = {}
    device, training = _device(cfg), model.training
    model.to(device).eval()
    for batch in validation_batches(data, cfg):
        keep = batch["past_observed"].any(1).all(-1)
        if not bool(keep.any()):
            continue
        batch = {k: v[keep].to(device) for k, v in batch.items()}
        for name, (num, den) in validation_sums(
            model, batch, cfg.data.get("protocol", "lsf"), cfg.data.get("num_samples", 100)
        ).items():
            total = sums.setdefault(name, [0.0, 0.0])
            total[0], total[1] = total[0] + num, total[1] + den
    model.cpu().train(training)
    return {name: num / den for name, (num, den) in sums.items() if den > 0}


def validation_batches(data, cfg: DictConfig):
    """The validation batches training sees: ``data.val_dataloader()`` cut at ``trainer.limit_val_batches``."""
    limit = cfg.trainer.get("limit_val_batches", 1.0)
    loader = data.val_dataloader()
    batches = len(loader)
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = max(int(batches * limit), 1)
    for idx, batch in enumerate(loader):
        if idx >= batches:
            break
        yield batch


def wants_leaderboard(cfg: DictConfig) -> bool:
    """A CSV run (``data.path``) under the LSF protocol, in one process (validation batches are not
    sharded), without covariates: its validation leaderboard is written (`msft_runner.leaderboard`)."""
    return (
        bool(cfg.data.get("path"))
        and cfg.data.get("protocol", "lsf") == "lsf"
        and distributed.rank_and_world()[1] == 1
        and not any(cfg.data.get(key) for key in COVARIATE_KEYS)  # its forecasts take no covariates
    )


def write_leaderboard(cfg: DictConfig, model, data, zero_shot: dict, run_dir: Path, tested: str) -> None:
    """Score ``model`` (tested as ``tested``) and the naive baselines on the validation windows, next to
    the zero-shot scores measured before training; write ``<run_dir>/leaderboard.{md,csv}``."""
    from msft_runner import leaderboard

    device = _device(cfg)
    forecasts = leaderboard.naive_forecasts(data.data.dates, cfg.data.context_length)
    if tested != "zero_shot":
        forecasts[tested] = leaderboard.model_forecast(model.to(device).eval())
    scores = {**zero_shot, **leaderboard.score(forecasts, validation_batches(data, cfg), device)}
    model.cpu()
    board = leaderboard.rows(scores, tested)
    leaderboard.warn_if_naive_wins(board, tested, run_dir)
    title = f"{cfg.data.name} H={cfg.data.horizon} {cfg.method.name} seed {cfg.seed}: validation leaderboard"
    leaderboard.write_run(run_dir, board, title)


def calibrate_on_validation(cfg: DictConfig, model, data) -> dict[str, Any] | None:
    """``calibrate=conformal``: fit `msft.MSFTModel.calibrate` on every validation window of ``data``
    (the windows validation scores read), with the run's seed, so the test scores calibrated
    quantiles and paths (`msft.calibration`); returns the calibration's record, None when not asked."""
    method = cfg.get("calibrate")
    if not method:
        return None
    batches = list(data.val_dataloader())
    windows = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    keep = windows["past_observed"].any(1).all(-1)  # as validation: a window needs an observed context
    device = _device(cfg)
    past, future, past_seen, future_seen = (
        windows[k][keep].to(device) for k in ("past_target", "future_target", "past_observed", "future_observed")
    )
    covariates = {k: v[keep].to(device) for k, v in covariates_of(windows, model).items()}
    model.to(device)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            calibration = model.calibrate(
                past,
                future,
                past_seen,
                future_seen,
                method=method,
                num_samples=cfg.data.get("num_samples", 100),
                **covariates,
            )
    finally:
        model.cpu()
    return calibration.to_dict()


def _initial_backbone_values(model) -> dict[str, torch.Tensor]:
    """Copies of the trainable backbone parameters (msft's own parts are dropped by a fallback)."""
    return {n: p.detach().clone() for n, p in model.backbone.named_parameters() if p.requires_grad}


def _zero_shot_fallback(model, initial: dict[str, torch.Tensor], horizon: int, wrap_options: dict | None):
    """The zero-shot model of the same backbone: trained backbone parameters back to their initial
    values (peft's LoRA B / AdaLoRA E return to 0, so injected pairs are identities again), msft's
    parts removed, and the identity wrap."""
    with torch.no_grad():
        params = dict(model.backbone.named_parameters())
        for name, value in initial.items():
            params[name].copy_(value)
    backbone = msft.unwrap(model)
    return msft.wrap(backbone, horizon=horizon, **{**(wrap_options or {}), **IDENTITY})


@torch.no_grad()
def evaluate(cfg: DictConfig, model, data) -> dict[str, Any]:
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
            if not model.spec.probabilistic:  # quantile heads: paths whose sample quantiles are the heads'
                levels, shape = model.config.quantile_levels, (num_samples, horizon, past.shape[2])
                return forecaster._sharded(
                    past.to(device),
                    shape,
                    lambda part: quantile_paths(model.predict_quantiles(part, horizon, levels), levels, num_samples),
                ).cpu()
            return forecaster.predict_samples(past.to(device), horizon, num_samples=num_samples).cpu()

        # 101 paths put GluonTS's sample quantile round((S-1) q) exactly on every level 0.01, ..., 0.99
        num_samples = cfg.data.num_samples if model.spec.probabilistic else 101
        result = evaluate_pf(
            sample,
            data.data.frame,
            horizon=cfg.data.horizon,
            windows=cfg.data.windows,
            context_length=data.context_length,  # with the history the scales need
            num_samples=num_samples,
            seasonality=cfg.data.seasonality,
            batch_size=cfg.data.eval_batch_size,
        )
        result["windows"] = len(data.splits["test"])
    else:
        num_samples = cfg.data.get("num_samples", 100)

        def forecast(past, **covariates):  # MSE of the mean, MAE of the median (GluonTS, the MSFT authors)
            if not covariates:
                both = forecaster.predict_mean_median(past, cfg.data.horizon, num_samples)  # (batch, 2, H, V)
                return {"mean": both[:, 0], "median": both[:, 1]}
            covariates = covariates_of(covariates, model)

            def mean_median(rows: torch.Tensor) -> torch.Tensor:  # the block's windows, by row
                rows = rows.long()
                part = {key: value[rows] for key, value in covariates.items()}
                out = model.predict_all(past[rows], cfg.data.horizon, num_samples=num_samples, **part)
                return torch.stack([out["mean"], out["median"]], dim=1)

            # the windows' rows are sharded (as their values would be), so covariates follow their windows
            rows = torch.arange(len(past), dtype=past.dtype, device=past.device)
            both = forecaster._sharded(rows, (2, cfg.data.horizon, past.shape[2]), mean_median)
            return {"mean": both[:, 0], "median": both[:, 1]}

        stride = cfg.data.get("test_stride", 1)
        result = evaluate_lsf(
            forecast,
            data.data,
            cfg.data.horizon,
            data.context_length,  # with the history the scales need (method_history)
            cfg.data.mode,
            batch_size=cfg.data.eval_batch_size,
            device=device,
            stride=stride,
            progress=bool(cfg.trainer.get("enable_progress_bar")) and distributed.is_rank_zero(),
        )
        if not model.spec.probabilistic:
            result["scoring"] = "MSE and MAE of the point forecast"
        elif num_samples > 0:
            result["scoring"] = f"MSE of the mean, MAE of the median of {num_samples} fused sample paths"
        else:
            result["scoring"] = "MSE and MAE of the mean forecast"
        if stride > 1:
            result["scoring"] += off_protocol_windows(stride)
        result["test_stride"] = stride
    result["windows_per_process"] = forecaster.rows_per_rank()  # sums to `windows`: each scored once
    return {**result, "eval_seconds": round(time.perf_counter() - start, 2)}


def quantile_paths(quantiles: torch.Tensor, levels: Any, num_samples: int) -> torch.Tensor:
    """``(batch, levels, H, V)`` quantiles -> ``(batch, num_samples, H, V)`` paths: path j is the quantile
    function at ``j / (num_samples - 1)``, linear between the levels and flat beyond the outer ones, so
    the paths' sample quantiles at the levels are the given quantiles (CRPS over them exact; MSIS's
    2.5/97.5% interval falls back to the outer levels)."""
    grid = torch.linspace(0, 1, num_samples, dtype=torch.float64, device=quantiles.device)
    levels = torch.as_tensor(levels, dtype=torch.float64, device=quantiles.device)
    upper = torch.searchsorted(levels, grid).clamp(1, len(levels) - 1)  # (S,)
    lo, hi = levels[upper - 1], levels[upper]
    weight = ((grid - lo) / (hi - lo)).clamp(0, 1).to(quantiles.dtype)[None, :, None, None]
    return quantiles[:, upper - 1] * (1 - weight) + quantiles[:, upper] * weight


def _learning_rates(cfg: DictConfig) -> dict[str, float | None]:
    """The data config's rates per parameter group, with the method's ``lr`` merged over them, times
    ``lr_scale``."""
    rates = {**plain(cfg.data.lr), **(plain(cfg.method.get("lr")) or {})}
    scale = cfg.get("lr_scale", 1.0)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"lr_scale={scale!r}: expected a positive number")
    return {k: None if v is None else float(v) * scale for k, v in rates.items()}


def _device(cfg: DictConfig) -> str:
    return "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator in ("gpu", "cuda", "auto") else "cpu"


def _trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in plain(cfg.trainer).items() if k not in TRAINER_EXTRAS}


def _planned_steps(cfg: DictConfig, batches_per_epoch: int) -> int:
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and limit > 0:
        batches_per_epoch = min(batches_per_epoch, limit)
    elif isinstance(limit, float):
        batches_per_epoch = max(int(batches_per_epoch * limit), 1)
    return batches_per_epoch * max(cfg.trainer.max_epochs, 1)


def plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
