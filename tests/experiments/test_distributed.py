"""Data-parallel runs on CPU processes (Lightning DDP, gloo) and cluster sweeps through submitit.

The tests marked ``distributed`` start real processes (2 DDP ranks, or submitit jobs); they are slow
on a small machine and opt-in: ``pytest -m distributed`` runs them all, ``pytest -m ddp`` the
selection CI runs (all but the every-method sweep). The unmarked ones check the pieces (batch
sharding, sharded forecasting, process planning) in this process and run by default.
"""

from __future__ import annotations

import json

import pytest
import torch

from msft_runner import distributed
from msft_runner.module import EpochShuffledBatches

from .conftest import CONFIG_DIR, TINY, cli, compose, small_csv

# ----------------------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_batches_split_every_batch_into_disjoint_shares(world):
    batches = EpochShuffledBatches(num_items=23, batch_size=5, seed=3)  # last batch: 3 items < 5
    batches.set_epoch(2)
    shards = [distributed.ShardedBatches(batches, rank, world) for rank in range(world)]
    for shard in shards:
        shard.set_epoch(2)
        assert len(shard) == len(batches) == 5  # every rank steps as often as one process
    for whole, *shares in zip(batches, *shards):
        assert torch.equal(torch.cat(shares), whole)  # contiguous shares, in order, nothing repeated
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError, match="rank=2"):
        distributed.ShardedBatches(batches, 2, 2)


def test_sharded_forecaster_in_one_process_is_the_model_and_reproducible():
    import msft
    from msft_backbones.toy import ToyForecaster

    torch.manual_seed(0)
    model = msft.wrap(ToyForecaster(d_model=16), scales=[1, 2], horizon=8).eval()
    past = torch.randn(150, 32, 1)
    forecaster = distributed.ShardedForecaster(model, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(forecaster.predict(past, 8), model.predict(past, 8), rtol=1e-6, atol=1e-6)
    assert forecaster.rows_per_rank() == [150]


def test_processes_to_start(monkeypatch):
    for key in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    cfg = compose(["trainer=ddp_cpu"])
    assert (cfg.trainer.strategy, cfg.trainer.devices) == ("ddp", 2)
    assert distributed.processes_to_start(cfg.trainer) == 2
    assert distributed.processes_to_start(compose(["trainer=cpu"]).trainer) == 0
    monkeypatch.setenv("LOCAL_RANK", "1")  # already one rank of a launched group: start nothing
    assert distributed.processes_to_start(cfg.trainer) == 0
    monkeypatch.delenv("LOCAL_RANK")
    with pytest.raises(ValueError, match="num_nodes=2"):
        distributed.processes_to_start(compose(["trainer=ddp_cpu", "trainer.num_nodes=2"]).trainer)


# ------------------------------------------------------------------------- DDP with 2 CPU ranks


def _rank_probe(fail_rank):
    import os

    rank = int(os.environ["RANK"])
    if rank == fail_rank:
        raise KeyError(f"rank {rank} failed on purpose")
    return {key: os.environ[key] for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
def test_started_processes_return_rank_zero_and_reraise_a_rank_failure():
    """`spawn` (fresh interpreters, as with CUDA): rank 0's result comes back; a rank's exception is re-raised
    as itself."""
    env = distributed.start_processes(_rank_probe, (None,), 2, start_method="spawn")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("0", "0", "2")
    with pytest.raises(KeyError, match="rank 1 failed on purpose"):
        distributed.start_processes(_rank_probe, (1,), 2, start_method="fork")
    with pytest.raises(ValueError, match="start_method='thread'"):
        distributed.start_processes(_rank_probe, (None,), 2, start_method="thread")


def _csv_cfg(path, *extra):
    return compose(
        [
            *TINY,
            "data=csv",
            f"data.path={path}",
            "data.target=x1",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=3",
            "data.eval_batch_size=100",
            *extra,
        ]
    )


def _moirai_csv_cfg(path, *extra):
    return _csv_cfg(
        path,
        "backbone=moirai_random",
        "names.backbone=moirai_random",
        "backbone.wrap_options.patch_size=8",
        "data.batch_size=8",
        "trainer.limit_train_batches=2",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        *extra,
    )


def _pf_cfg(path, *extra):
    from .test_pf import _pf_cfg as pf_cfg
    from .test_pf import wide_csv

    return pf_cfg(
        wide_csv(path),
        "moirai_random",
        "backbone.wrap_options.patch_size=8",
        "data.eval_batch_size=4",
        "data.num_samples=20",
        *extra,
    )


def _runs(cfgs, run_dirs):
    """Every rank: `run` each config in turn (one process group for all of them); rank 0's records."""
    from msft_runner.train import run

    return [run(cfg, run_dir, {"backbone": cfg.names.backbone}) for cfg, run_dir in zip(cfgs, run_dirs)]


def _single_process_metrics(run_dir, cfg):
    """The saved run's model, evaluated again in this process through the same protocol code."""
    from msft_runner.train import build_datamodule, evaluate, load_run

    data = build_datamodule(cfg.data, cfg.seed)
    data.setup("test")
    return evaluate(cfg, load_run(run_dir).model, data)


def _check_shares(run_dir):
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["status"] == "ok", run_dir.name
    shares = saved["windows_per_process"]  # every window forecast by exactly one of the 2 ranks
    assert len(shares) == 2 and min(shares) > 0 and sum(shares) == saved["windows"], (run_dir.name, shares)
    return saved


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
def test_ddp_evaluation_scores_every_window_once_and_equals_one_process(tmp_path):
    """LSF and PF test metrics under DDP (2 CPU ranks) equal those of one process on the same model."""
    from msft_runner.train import run

    path = small_csv(tmp_path / "series.csv")
    cases = {
        "lsf_zero_shot": _csv_cfg(path, "method=zero_shot"),
        "lsf_msft": _csv_cfg(path, "method=msft"),
        "pf_zero_shot": _pf_cfg(tmp_path / "wide.csv", "method=zero_shot"),
        "pf_msft": _pf_cfg(tmp_path / "wide.csv", "method=msft"),
    }
    names = list(cases)
    distributed.start_processes(
        _runs, ([compose_ddp(cases[n]) for n in names], [tmp_path / "ddp" / n for n in names]), 2, start_method="fork"
    )
    for name in names:
        saved = _check_shares(tmp_path / "ddp" / name)
        metrics = ("mse", "mae") if name.startswith("lsf") else ("crps", "msis", "smape", "mase", "nd", "nrmse")
        if name.endswith("zero_shot"):  # the whole run in one process, from scratch
            again = run(cases[name], tmp_path / "single" / name, {"backbone": cases[name].names.backbone})
        else:  # the model DDP trained, evaluated again in one process
            assert saved["steps"] > 0
            again = _single_process_metrics(tmp_path / "ddp" / name, cases[name])
        assert again["windows"] == saved["windows"] and again["windows_per_process"] == [saved["windows"]]
        for metric in metrics:
            assert again[metric] == pytest.approx(saved[metric], rel=1e-6, abs=1e-9), (name, metric)


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_trains_every_method_and_ablation(tmp_path):
    """msft, LoRA and full finetuning on the toy and on the MOIRAI small geometry, and every msft
    ablation config (on the toy; those scored by the CRPS of fused paths on MOIRAI, the toy being a
    point forecaster), train and evaluate under DDP with 2 CPU ranks (plain DDP: no parameter is left
    out of any step's graph, which DDP would reject with "expected to have finished reduction")."""
    path = small_csv(tmp_path / "series.csv")
    ablations = sorted(p.stem for p in (CONFIG_DIR / "method").glob("msft_*.yaml"))
    # per-scale contexts (issue 30's msft_equal_tokens, msft_single_scale_long) need more history than the
    # small CSV holds; their windows and training are tested in test_long_history
    ablations = [m for m in ablations if compose([f"method={m}"]).method.options.get("context_lengths") is None]
    # The CRPS of fused sample paths needs a probabilistic backbone: those methods run on MOIRAI only.
    crps = {m for m in ablations if compose([f"method={m}"]).method.options.get("fusion_objective") == "fused_crps"}
    long = "data.context_length=64"  # scale 8 (msft_authors, msft_scales_1248) x the toy's patch 8
    point = [m for m in ("msft", "lora", "full", *ablations) if m not in crps]
    cases = {f"toy_{m}": _csv_cfg(path, f"method={m}", long) for m in point}
    cases |= {f"moirai_{m}": _moirai_csv_cfg(path, f"method={m}") for m in ("msft", "lora", "full", *sorted(crps))}
    assert crps  # the probabilistic-only methods are found (and run), not silently dropped
    # Known defects (test_method_matrix.KNOWN_UNUSED, xfail there): a trainable parameter outside the
    # loss's graph, which plain DDP rejects. Left out here until fixed; every other case runs.
    known = {
        "moirai_msft_full_backbone_crps": "var_attn_bias unused in MOIRAI's blocked attention",
        "moirai_msft_full_backbone_crps_fast_fusion": "var_attn_bias unused in MOIRAI's blocked attention",
    }
    assert set(known) <= set(cases)
    cases = {name: cfg for name, cfg in cases.items() if name not in known}
    names = list(cases)
    distributed.start_processes(
        _runs, ([compose_ddp(cases[n]) for n in names], [tmp_path / "ddp" / n for n in names]), 2, start_method="fork"
    )
    for name in names:
        assert _check_shares(tmp_path / "ddp" / name)["steps"] > 0, name


def compose_ddp(cfg):
    """The same config with the 2-process CPU DDP trainer."""
    from omegaconf import OmegaConf

    import msft_runner.train  # noqa: F401  (registers the resolvers the configs use, which resolve=True below needs)

    trainer = compose(["trainer=ddp_cpu"]).trainer
    merged = OmegaConf.to_container(cfg, resolve=True)
    merged["trainer"] = {
        **merged["trainer"],
        **{k: trainer[k] for k in ("devices", "num_nodes", "strategy", "start_method")},
    }
    return OmegaConf.create(merged)


def _one_step(cfg, world):
    """One optimiser step of the runner's module and loaders; the averaged gradient and the parameters after."""
    import lightning as L

    from msft_runner.backbones import build_backbone
    from msft_runner.methods import build_model
    from msft_runner.module import ForecastModule
    from msft_runner.train import build_datamodule

    L.seed_everything(0, verbose=False)
    data = build_datamodule(cfg.data, cfg.seed)
    data.setup("fit")
    backbone, wrap_options = build_backbone(cfg.backbone)
    model = build_model(
        backbone, cfg.method.kind, cfg.data.horizon, dict(cfg.method.options), None, 10, wrap_options
    ).model
    module = ForecastModule(model, {"lr": 1e-2}, 0.0)
    seen = {}

    class Capture(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # after DDP's all-reduce
            seen["grads"] = {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["windows"] = len(batch["past_target"])

    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[Capture()],
    )
    trainer.fit(module, datamodule=data)
    params = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    replicas = [params]
    if world > 1:  # every replica's parameters (fusion logits included), to compare them
        replicas = [None] * world
        torch.distributed.all_gather_object(replicas, params)
    return {"grads": seen["grads"], "params": params, "windows": seen["windows"], "replicas": replicas}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
@pytest.mark.parametrize("objective", ["per_scale", "fused"])
def test_ddp_step_averages_gradients_like_one_process(tmp_path, objective):
    """One DDP step with 2 x B/2 windows gives the gradient and parameters of one step with the B windows.
    With the fused objective the fusion logits' term is divided by each rank's own batch context
    variance (`msft.losses.scale_free_mse`), so their gradient is close, not equal (docs/distributed.md)."""
    cfg = _csv_cfg(
        small_csv(tmp_path / "series.csv"),
        "method=msft",
        "data.batch_size=16",
        f"method.options.fusion_objective={objective}",
    )
    alone = _one_step(cfg, 1)
    ddp = distributed.start_processes(_one_step, (cfg, 2), 2, start_method="fork")
    assert (alone["windows"], ddp["windows"]) == (16, 8)
    assert alone["grads"].keys() == ddp["grads"].keys() and len(alone["grads"]) > 5
    logits = "model.msft_fusion.msft_fusion_logits"
    changed = 0
    for name, grad in alone["grads"].items():
        if objective == "fused" and name == logits:
            torch.testing.assert_close(ddp["grads"][name], grad, rtol=0.2, atol=1e-3, msg=name)
            continue
        # Not bitwise: DDP averages two 8-window means (all-reduce) where one process takes one
        # 16-window mean, another summation order of B x tokens float32 terms (about sqrt(n) * 1.2e-7
        # ~ 2e-6 of the terms' size); rtol 1e-4 leaves room for terms larger than their sum.
        torch.testing.assert_close(ddp["grads"][name], grad, rtol=1e-4, atol=1e-7, msg=name)
        changed += int(grad.abs().max() > 0)
    assert changed > 5  # the gradients compared are not all zero
    for name, param in alone["params"].items():
        if objective == "fused" and name == logits:  # Adam's first step moves each logit by about lr
            torch.testing.assert_close(ddp["params"][name], param, rtol=0, atol=2e-2, msg=name)
            continue
        # the same rounding, after one AdamW step of size ~lr on parameters of size ~1
        torch.testing.assert_close(ddp["params"][name], param, rtol=1e-5, atol=1e-6, msg=name)
    assert "model.msft_fusion.msft_fusion_logits" in ddp["params"]
    # the replicas stay identical, bit for bit: the same all-reduced gradients through the same ops
    for name, param in ddp["params"].items():
        assert torch.equal(ddp["replicas"][1][name], param), name


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
def test_ddp_run_interrupted_mid_epoch_resumes_to_the_same_metrics(tmp_path):
    """Through `run` itself, which starts the 2 ranks (the path `msft-train trainer=ddp_cpu` takes: fork)."""
    from msft_runner.module import Interrupted
    from msft_runner.train import run

    path = small_csv(tmp_path / "series.csv")

    def cfg(*extra):
        return _csv_cfg(
            path,
            "method=msft",
            "trainer=ddp_cpu",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=2",
            "trainer.patience=5",
            *extra,
        )

    straight = run(cfg(), tmp_path / "straight", {"backbone": "toy_tiny"})
    with pytest.raises(Interrupted):  # raised in both ranks, re-raised here as itself
        run(cfg("interrupt_at_step=4"), tmp_path / "resumed", {"backbone": "toy_tiny"})  # inside epoch 2
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").exists()
    resumed = run(cfg("resume=true"), tmp_path / "resumed", {"backbone": "toy_tiny"})
    assert resumed["resumed"] and not straight["resumed"]
    assert resumed["steps"] == straight["steps"] == 9
    assert (resumed["val_loss"], resumed["mse"], resumed["mae"]) == (
        straight["val_loss"],
        straight["mse"],
        straight["mae"],
    )
    assert len(straight["windows_per_process"]) == 2 and sum(straight["windows_per_process"]) == straight["windows"]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
def test_msft_train_with_the_ddp_cpu_trainer(tmp_path, data_dir):
    """The README command: a Hydra sweep whose run trains and evaluates on 2 ranks, then the table."""
    result = cli(
        "-m",
        "method=msft",
        *TINY,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",  # after TINY's trainer=tiny
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "experiment=ddp",
        "results_dir=tables",
        cwd=tmp_path,
        env_extra={"MSFT_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = (tmp_path / "runs" / "ddp").rglob("metrics.json")
    saved = _check_shares(metrics.parent)
    assert saved["steps"] == 4 and "| toy_tiny | ETTh1 | 8 |" in (tmp_path / "tables" / "ddp.md").read_text()


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
def test_ddp_inside_a_one_task_slurm_job(tmp_path, monkeypatch):
    """A SLURM allocation with one task (e.g. `hydra/launcher=slurm` without tasks_per_node): msft starts
    the 2 ranks, and Lightning must take them for the ranks, not SLURM's single task."""
    from msft_runner.train import run

    for key, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "msft",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "1",
        "SLURM_NODELIST": "localhost",
    }.items():
        monkeypatch.setenv(key, value)
    cfg = _csv_cfg(
        small_csv(tmp_path / "series.csv"),
        "method=msft",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
    )
    record = run(cfg, tmp_path / "run", {"backbone": "toy_tiny"})
    assert record["steps"] == 2 and len(record["windows_per_process"]) == 2
    assert sum(record["windows_per_process"]) == record["windows"]


# ---------------------------------------------------------------------------- submitit sweeps


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.ddp
def test_submitit_local_sweep_builds_the_table_despite_a_failed_job(tmp_path, data_dir):
    """Each sweep point a real submitit job (a subprocess); the table is assembled from their run dirs."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    tiny = [o for o in TINY if not o.startswith("names.")]
    # LoRA rank 0 fails when peft builds the layers; zero_shot and msft ignore the peft settings.
    result = cli(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        "method=zero_shot,lora,msft",
        "++method.peft.r=0",
        *tiny,
        "trainer.max_epochs=1",
        "experiment=cluster",
        "results_dir=tables",
        cwd=tmp_path,
        env_extra={"MSFT_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 1, result.stderr[-3000:]  # the failed job fails the command, not the sweep
    assert "1 run(s) failed" in result.stderr
    job_logs = list((tmp_path / "runs" / "cluster" / ".submitit").rglob("*_log.out"))
    assert len(job_logs) == 3  # three submitit jobs ran
    table = (tmp_path / "tables" / "cluster.md").read_text()
    assert "zero_shot MSE" in table and "msft MSE" in table and "1 failed run(s)" in table
    assert "should be a positive integer" in table
    assert len((tmp_path / "tables" / "cluster.csv").read_text().splitlines()) == 1 + 1 + 3
