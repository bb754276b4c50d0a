"""``msft-evaluate RUN_DIR... [--select]``: test the runs of a sweep trained with ``defer_test=true``.

A learning-rate grid trains many candidates per (method, dataset, seed) and keeps one, chosen on
validation. Testing every candidate on the full protocol (every stride-1 test window) would cost
more than training them, and would put test scores of unselected settings in front of the reader.
With ``defer_test=true`` a run trains, validates and keeps its checkpoint; this command then tests
only what validation selected (``--select``: `msft_runner.results.select`, the same rule the tables
use) or every deferred run. Each tested run's ``metrics.json`` is completed in place, so a stopped
evaluation continues where it stopped when started again; ``msft-results --select`` writes the table.

``--test-stride N`` scores every N-th test window (1: all, the protocol) whatever stride the runs
were trained with, and tests again the chosen runs already tested on other windows; their earlier
scores stay in ``metrics.json`` under ``tests`` (``msft-results --test-stride`` reads either).

``--jobs N`` tests N runs at a time, each in its own process (give each one torch thread with
``OMP_NUM_THREADS=1``); a run's scores do not depend on which process tested it.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from msft_runner.process import keep_freed_memory
from msft_runner.results import collect_or_exit, needs_test, select

logger = logging.getLogger("msft_runner")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="msft-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run or sweep directories to scan")
    parser.add_argument(
        "--select",
        action="store_true",
        help="test only the run with the best validation score per (backbone, dataset, horizon, method, seed)",
    )
    parser.add_argument(
        "--test-stride",
        type=int,
        metavar="N",
        help="score every N-th test window (1: every window); runs tested on other windows are tested again",
    )
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="test N runs at a time, one process each")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    if args.test_stride is not None and args.test_stride < 1:
        parser.error(f"--test-stride {args.test_stride}: expected a positive integer (1 scores every test window)")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    records = collect_or_exit(parser, args.runs)
    chosen = select(records) if args.select else [r for r in records if r.get("status") == "ok"]
    if args.test_stride is not None:
        pf = sorted({r["run_dir"] for r in chosen if r.get("protocol") == "pf"})
        if pf:
            parser.error(f"--test-stride: {len(pf)} PF run(s) (e.g. {pf[0]}); only LSF runs have a test stride")
    todo = [r for r in chosen if needs_test(r, args.test_stride)]
    print(f"{len(chosen)} run(s) chosen, {len(chosen) - len(todo)} already tested, {len(todo)} to test", flush=True)
    failed = []
    outcomes = _outcomes(sorted(r["run_dir"] for r in todo), args.test_stride, args.jobs)
    for i, (run_dir, done, seconds) in enumerate(outcomes, 1):
        if isinstance(done, str):  # one broken run must not stop the others: report it at the end
            failed.append(f"{run_dir}: {done}")
            logger.error("[%d/%d] %s failed: %s", i, len(todo), run_dir, done)
            continue
        score = "crps" if done.get("protocol") == "pf" else "mse"
        print(f"[{i}/{len(todo)}] {run_dir}: {score}={done[score]:.4f} ({seconds:.0f} s)", flush=True)
    if failed:
        print(f"\n{len(failed)} run(s) failed:", *failed, sep="\n  ", file=sys.stderr)
        sys.exit(1)


def _outcomes(run_dirs: list[str], test_stride: int | None, jobs: int):
    """`_test` of every run, in order with one job, else as they finish in ``jobs`` processes."""
    if jobs == 1 or len(run_dirs) < 2:
        for run_dir in run_dirs:
            yield _test(run_dir, test_stride)
        return
    context = multiprocessing.get_context("spawn")  # a forked child would inherit this process's torch state
    with ProcessPoolExecutor(min(jobs, len(run_dirs)), mp_context=context) as pool:
        for future in as_completed([pool.submit(_test, run_dir, test_stride) for run_dir in run_dirs]):
            yield future.result()


def _test(run_dir: str, test_stride: int | None) -> tuple[str, dict[str, Any] | str, float]:
    """Test one run: (run_dir, its completed record or the error as text, seconds)."""
    from msft_runner.train import evaluate_run  # torch, lightning: after the arguments are checked

    keep_freed_memory()  # in each spawned test process too
    start = time.perf_counter()
    try:
        done: dict[str, Any] | str = evaluate_run(run_dir, test_stride)
    except Exception as error:
        done = f"{type(error).__name__}: {error}"
    return run_dir, done, time.perf_counter() - start


if __name__ == "__main__":
    main()
