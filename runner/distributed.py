"""Data-parallel runs: starting the processes, sharding batches, and exact sharded evaluation.

Every process of a data-parallel run executes the whole of `msft_runner.train.run` (data, model,
fit, evaluation) as one rank, the way ``torchrun`` or a SLURM job with one task per device runs a
script; rank 0 alone writes the run directory. When nothing has started the processes (a plain
``msft-train trainer=ddp_cpu``), `start_processes` starts them, each with the variables torchrun sets
(``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ...), so Lightning treats them as launched externally and
never re-executes the command line (which under a Hydra sweep or pytest
would re-run the whole sweep or test session).

Batches keep their single-process meaning: ``data.batch_size`` is the *global* batch, and each
process takes its contiguous share of every batch (`ShardedBatches`), so a DDP step sees the same
windows as a single-process step and averages the same gradient (exactly when the shares are equal).
No sampler pads or repeats windows, so Lightning's distributed sampler is switched off.

Test-set evaluation runs the protocol code (`msft.protocols`) unchanged on every rank through a
`ShardedForecaster`: each forecast batch is split across the ranks, every window is forecast by
exactly one rank, and the forecasts are gathered back in order, so the metrics are those of a single
process (up to the last bits of batch-size-dependent float arithmetic).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

logger = logging.getLogger(__name__)

# Lightning strategies whose processes are separate ranks that each run the whole script.
DATA_PARALLEL = (
    "ddp",
    "ddp_find_unused_parameters_true",
    "ddp_find_unused_parameters_false",
    "ddp_static_graph",
    "fsdp",
)
START_METHODS = ("spawn", "fork", "forkserver")


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size) of this process: from the process group once it exists, else from the
    launcher's environment (ours, torchrun or SLURM), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    for rank_key, world_key in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank_key in os.environ and world_key in os.environ:
            return int(os.environ[rank_key]), int(os.environ[world_key])
    return 0, 1


def is_rank_zero() -> bool:
    return rank_and_world()[0] == 0


def launched_externally() -> bool:
    """Whether this process is already one rank of a launched group (ours, torchrun, Lightning's own
    launcher, or a SLURM job step with several tasks)."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1


def processes_to_start(trainer: Any) -> int:
    """How many processes `run` must start itself for this trainer config (0: run in this process).

    A data-parallel strategy on one node with more than one device, when no launcher has started the
    ranks already. Several nodes always need an external launcher (SLURM, torchrun).
    """
    strategy = trainer.get("strategy", "auto")
    if not isinstance(strategy, str) or strategy not in DATA_PARALLEL or launched_externally():
        return 0
    devices = trainer.get("devices", 1)
    if devices in (-1, "auto", "-1"):
        devices = torch.cuda.device_count() if trainer.get("accelerator") in ("gpu", "cuda", "auto") else 1
    elif isinstance(devices, (list, tuple)) or not isinstance(devices, int):
        devices = len(devices) if isinstance(devices, (list, tuple)) else int(devices)
    if trainer.get("num_nodes", 1) != 1:
        raise ValueError(
            f"trainer.num_nodes={trainer.get('num_nodes')}: several nodes need an external launcher "
            f"(hydra/launcher=slurm, or torchrun on each node); msft starts processes on one node only"
        )
    return devices if devices > 1 else 0


def start_processes(fn: Callable[..., Any], args: tuple, nprocs: int, start_method: str = "spawn") -> Any:
    """Run ``fn(*args)`` in ``nprocs`` new processes as ranks 0..nprocs-1 of one node; return rank 0's
    result. A failure in any rank stops the others and is re-raised here as the original exception."""
    if start_method not in START_METHODS:
        raise ValueError(f"trainer.start_method={start_method!r}; expected one of {START_METHODS}")
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    port = str(find_free_network_port())
    # torchrun's variables on one node: Lightning then picks its TorchElastic environment, which ranks
    # above SLURM's, so the ranks are these processes even inside a one-task SLURM job.
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
        "WORLD_SIZE": str(nprocs),
        "GROUP_RANK": "0",
        "NODE_RANK": "0",
        "LOCAL_WORLD_SIZE": str(nprocs),
        "TORCHELASTIC_RUN_ID": f"msft-{port}",
    }
    with tempfile.TemporaryDirectory(prefix="msft-ranks-") as scratch:
        try:
            torch.multiprocessing.start_processes(
                _rank_main, args=(nprocs, env, scratch, fn, args), nprocs=nprocs, join=True, start_method=start_method
            )
        except (torch.multiprocessing.ProcessRaisedException, torch.multiprocessing.ProcessExitedException) as error:
            failed = Path(scratch) / f"error{error.error_index}.pkl"
            if failed.exists():
                original = pickle.loads(failed.read_bytes())
                raise original from error
            raise
        return pickle.loads((Path(scratch) / "result0.pkl").read_bytes())


def _rank_main(rank: int, nprocs: int, env: dict[str, str], scratch: str, fn: Callable, args: tuple) -> None:
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, torch.get_num_threads() // nprocs))  # the ranks share the machine's cores
    try:
        result = fn(*args)
    except BaseException as error:
        try:
            payload = pickle.dumps(error)
        except Exception:  # an exception that does not pickle: keep its type name and message
            payload = pickle.dumps(
                RuntimeError(f"rank {rank}: {type(error).__name__}: {error}\n{traceback.format_exc()}")
            )
        (Path(scratch) / f"error{rank}.pkl").write_bytes(payload)
        raise
    if rank == 0:
        (Path(scratch) / "result0.pkl").write_bytes(pickle.dumps(result))


def join_processes(trainer_arguments: dict[str, Any]) -> None:
    """Set up the process group as Lightning's strategy for ``trainer_arguments`` would at the start of
    `fit` (its cluster environment: ours, torchrun, SLURM): for runs that evaluate without training."""
    import lightning as L

    quiet = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer = L.Trainer(**{**trainer_arguments, **quiet})
    trainer.strategy.setup_environment()


class ShardedBatches(torch.utils.data.Sampler):
    """This rank's contiguous share of every index batch of ``batches`` (shares differ by at most one).

    Every rank sees as many batches as the single-process loader; a share may be empty when a batch
    has fewer items than there are ranks (the module's loss is then a zero with a graph).
    """

    def __init__(self, batches: torch.utils.data.Sampler, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}; expected 0 <= rank < world_size={world_size}")
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self):
        for batch in self.batches:
            yield torch.as_tensor(batch, dtype=torch.long).tensor_split(self.world_size)[self.rank]

    def __len__(self) -> int:
        return len(self.batches)


def shard(batches: torch.utils.data.Sampler) -> torch.utils.data.Sampler:
    """``batches`` sharded over the ranks of the process group, or unchanged in a single process."""
    rank, world = rank_and_world() if dist.is_available() and dist.is_initialized() else (0, 1)
    return ShardedBatches(batches, rank, world) if world > 1 else batches


class ShardedForecaster:
    """``predict`` / ``predict_samples`` of ``model`` over the ranks of the process group.

    Each batch is cut into ``blocks`` equal blocks of windows (their size depends on the batch alone,
    not on the number of processes); the ranks take contiguous runs of blocks,
    every rank gets the whole batch's forecast back in order, and each window is forecast by exactly
    one rank. Every block is forecast under its own seed (from ``seed`` and the block's position in
    the evaluation), so sampled forecasts do not depend on how many processes share the work: one
    process and N processes give the same forecasts. ``rows`` counts the windows this rank forecast.
    """

    def __init__(self, model: Any, seed: int = 0, blocks: int = 16):
        if blocks < 1:
            raise ValueError(f"blocks={blocks!r}; expected a positive int")
        self.model, self.seed, self.blocks = model, seed, blocks
        self.rank, self.world_size = rank_and_world()
        self.rows = 0
        self._blocks_done = 0  # blocks of earlier calls: the seed of a block is its position overall

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        shape = (horizon, past_target.shape[2])
        return self._sharded(past_target, shape, lambda part: self.model.predict(part, horizon))

    def predict_samples(self, past_target: Tensor, horizon: int, num_samples: int = 100) -> Tensor:
        shape = (num_samples, horizon, past_target.shape[2])
        return self._sharded(
            past_target, shape, lambda part: self.model.predict_samples(part, horizon, num_samples=num_samples)
        )

    def predict_mean_median(self, past_target: Tensor, horizon: int, num_samples: int = 100) -> Tensor:
        """``(batch, 2, horizon, variate)``: `MSFTModel.predict_all`'s mean and median (LSF scoring)."""

        def both(part: Tensor) -> Tensor:
            out = self.model.predict_all(part, horizon, num_samples=num_samples)
            return torch.stack([out["mean"], out["median"]], dim=1)

        return self._sharded(past_target, (2, horizon, past_target.shape[2]), both)

    def _sharded(self, past: Tensor, shape: tuple[int, ...], forecast: Callable[[Tensor], Tensor]) -> Tensor:
        blocks = list(torch.arange(len(past)).split(-(-len(past) // self.blocks)))
        mine = list(range(len(blocks)))
        mine = [list(part) for part in torch.tensor(mine, dtype=torch.long).tensor_split(self.world_size)]
        sizes = [sum(len(blocks[b]) for b in part) for part in mine]
        outputs = []
        for b in mine[self.rank]:
            with torch.random.fork_rng(devices=[past.device] if past.device.type == "cuda" else []):
                torch.manual_seed(self.seed * 1_000_003 + self._blocks_done + int(b))
                outputs.append(forecast(past[blocks[b]]))
        self._blocks_done += len(blocks)
        own = torch.cat(outputs) if outputs else past.new_zeros((0,) + shape)  # (rows, *shape)
        self.rows += len(own)
        if self.world_size == 1:
            return own
        padded = own.new_zeros((max(sizes),) + shape)  # all_gather needs the same shape on every rank
        padded[: len(own)] = own
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded)
        return torch.cat([part[:size] for part, size in zip(gathered, sizes)])  # (batch, *shape) in order

    def rows_per_rank(self) -> list[int]:
        """Windows forecast by each rank (summed over every call), gathered to every rank."""
        if self.world_size == 1:
            return [self.rows]
        counts: list[Any] = [None] * self.world_size
        dist.all_gather_object(counts, self.rows)
        return counts
