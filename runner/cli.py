"""``msft-train``: the Hydra app. Every job runs `msft_runner.train.run` in its own run directory.

A failed job is caught, written as ``metrics.json`` with ``status: failed`` and the error, and the
sweep goes on; at the end of a sweep `ResultsTable` prints the comparison table, lists failures,
and writes ``results/<experiment>.{md,csv}`` from every run under ``runs/<experiment>/`` (so the
default experiment's table gains a row per run instead of being replaced); the command exits 1 if
any job failed. A job whose run directory holds a finished run (a CSV's runs are named after its
file, `msft_runner.train.file_stem`) is refused, naming it, unless ``overwrite=true`` (run again) or
``skip_finished=true`` (keep it); the command then exits 1 too. CSV runs also write their validation
leaderboard (zero-shot, last value, seasonal naive, the trained model: `msft_runner.leaderboard`),
gathered into ``results/<experiment>_leaderboard.{md,csv}`` and printed after the table.
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from msft_runner.process import keep_freed_memory
from msft_runner.train import register_resolvers

register_resolvers()  # before Hydra composes: run folders name a CSV's data set after its file
logger = logging.getLogger("msft_runner")

# The repository's configs/ folder, installed as the package `msft_runner.configs` (editable or
# not); MSFT_CONFIG_DIR points elsewhere, e.g. at a copy you edit.
CONFIG_DIR = os.environ.get("MSFT_CONFIG_DIR") or str(importlib.resources.files("msft_runner.configs"))
_FAILED: list[str] = []  # read and written through _failures()
_REFUSED: list[str] = []  # runs that would have overwritten a finished run (the sweep's records cannot say)


def _failures() -> list[str]:
    """The failure list of the importable module: under ``python -m msft_runner.cli`` this file also runs
    as ``__main__``, and Hydra's callback is instantiated from ``msft_runner.cli``."""
    return importlib.import_module("msft_runner.cli")._FAILED


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _app(cfg: DictConfig) -> dict[str, Any]:
    from msft_runner.records import METRICS, write_record
    from msft_runner.train import check_run_dir, run

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    names = {"backbone": cfg.names.backbone}
    finished = _finished(run_dir / METRICS) if cfg.get("skip_finished") else None
    if finished is not None:
        logger.info("skip_finished: %s is done (val_score %s)", run_dir, finished.get("val_score"))
        return finished
    try:
        check_run_dir(run_dir, overwrite=bool(cfg.get("overwrite")))
    except FileExistsError as error:  # the finished run is left exactly as it was
        logger.error("%s", error)
        importlib.import_module("msft_runner.cli")._REFUSED.append(str(error))
        return _finished(run_dir / METRICS) or {}
    try:
        return run(cfg, run_dir, names)
    except Exception as error:  # one failed job must not stop a sweep: record it and go on
        message = f"{type(error).__name__}: {error}"
        logger.error("run %s failed: %s", run_dir, message)
        logger.debug("%s", traceback.format_exc())
        (run_dir / "error.txt").write_text(traceback.format_exc())
        record = {
            "status": "failed",
            "error": message,
            "experiment": cfg.experiment,
            "backbone": names["backbone"],
            "dataset": cfg.data.name,
            "horizon": cfg.data.horizon,
            "method": cfg.method.name,
            "seed": cfg.seed,
        }
        write_record(run_dir, record)
        _failures().append(f"{run_dir}: {message}")
        return record


def _finished(path: Path) -> dict[str, Any] | None:
    """The record of a finished run (status ok), else None."""
    if not path.is_file():
        return None
    from msft_runner.records import read_record

    record = read_record(path.parent)
    return record if record.get("status") == "ok" else None


class ResultsTable(Callback):
    """At the end of a sweep: aggregate its runs, print the table, write results/<experiment>.*."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from msft_runner.results import collect, write_selection, write_tables

        sweep_dir = Path(config.hydra.sweep.dir)
        records = collect([sweep_dir])
        if not records:
            return
        # The jobs may have run in other processes (submitit launchers): their records say what failed.
        _failures()[:] = [f"{r['run_dir']}: {r.get('error')}" for r in records if r.get("status") != "ok"]
        command = f"msft-results {sweep_dir} --name {config.experiment} --out {config.results_dir}"
        trained_by = " ".join(["msft-train", *sys.argv[1:]])
        write = write_selection if config.get("select") else write_tables
        if config.get("select"):
            command += " --select"
        markdown = write(records, Path(config.results_dir), config.experiment, command, trained_by)
        print("\n" + markdown, flush=True)
        from msft_runner.leaderboard import write_leaderboards

        board = write_leaderboards(records, Path(config.results_dir), config.experiment)
        if board is not None:  # CSV runs: validation against zero-shot and the naive forecasts
            print(f"\nValidation leaderboard ({config.results_dir}/{config.experiment}_leaderboard.md):\n{board}")


def main() -> None:
    keep_freed_memory()  # before the first large tensor: steps stop faulting their activations in
    _app()
    failed, refused = _failures(), importlib.import_module("msft_runner.cli")._REFUSED
    if failed:
        print(f"\n{len(failed)} run(s) failed:", *failed, sep="\n  ", file=sys.stderr)
    if refused:
        print(f"\n{len(refused)} run(s) refused:", *refused, sep="\n  ", file=sys.stderr)
    if failed or refused:
        sys.exit(1)


if __name__ == "__main__":
    main()
