"""The evidence (issue 18): does MSFT help on the embedded tiny MOIRAI? One resumable command per suite.

    .venv/bin/python scripts/evidence.py lsf          # 5 LSF datasets, H=96, 7 methods, 3 seeds
    .venv/bin/python scripts/evidence.py lsf336       # ETTh1 and ETTm1 at H=336, the same
    .venv/bin/python scripts/evidence.py pf           # Jena weather, PF protocol, 5 methods, 3 seeds
    .venv/bin/python scripts/evidence.py ablations    # MSFT's components on ETTm1 and Weather, 3 seeds
    .venv/bin/python scripts/evidence.py all --jobs 2 # the three, two msft-train processes at a time
    .venv/bin/python scripts/evidence.py lsf:ETTh1,ETTm1 pf   # some datasets of a suite, then another suite

Protocol, the same for every method:
1. Learning rate: on seed 0, every method trains at ``lr_scale`` 0.3, 1 and 3 (every learning rate of
   the run times that factor) with the preset's step budget, early-stopping and keeping its checkpoint
   on the fused validation score; the grid point with the best validation score is selected.
2. Seeds 1 and 2 train at the learning rate seed 0 selected (ablations: at the one msft selected).
3. Testing: ``defer_test=true`` trains and validates only; ``msft-evaluate --select --test-stride``
   then tests the run validation selected per (method, dataset, seed), so no test score of an
   unselected grid point is ever computed. The LSF suites score every test window (stride 1, the
   protocol); the ablations on Weather every 12th window, labelled off-protocol.
4. Tables: ``msft-results --select`` writes ``results/evidence/<suite>.{md,csv}``; ``lsf`` also
   draws ``results/evidence/lsf.png``.

Every stage skips what is finished (``skip_finished``, deferred tests already done), so the command
continues a stopped sweep. Each msft-train process runs one torch thread (``--jobs`` of them at a
time); its log is ``runs/evidence_<suite>/logs/<stage>.log``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRID = (0.3, 1, 3)
SELECTION_SEED, OTHER_SEEDS = 0, (1, 2)
# Test windows: every one (stride 1, the protocol) unless a suite names a stride per dataset; the
# ablations on Weather (27 runs, ~20 CPU-min each on every window) every 12th, labelled off-protocol.
# A run keeps its test at every stride it was scored on (msft-evaluate --test-stride).
SUITES = {
    "lsf": dict(
        data=["ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather"],
        methods=["linear_probe", "prompt_tuning", "lora", "adalora", "full", "msft"],
        zero_shot=True,
    ),
    "lsf336": dict(  # the long horizon on two datasets
        data=["ETTh1", "ETTm1"],
        methods=["linear_probe", "prompt_tuning", "lora", "adalora", "full", "msft"],
        zero_shot=True,
        overrides=["data.horizon=336"],
    ),
    "pf": dict(
        data=["pf_jena_weather"],
        # msft_full_backbone_crps: the PF recipe validation chose among 6 msft variants (scripts/recipe_pf.sh)
        methods=["full", "lora", "msft", "msft_full_backbone_crps"],
        zero_shot=True,
        protocol="pf",
    ),
    "ablations": dict(
        data=["ETTm1", "Weather"],
        methods=[
            "msft_no_adapters",
            "msft_no_lora",
            "msft_no_intra_scale",
            "msft_no_c2f",
            "msft_no_f2c",
            "msft_no_cross_scale",
            "msft_uniform_fusion",
            "msft_single_scale",
            "msft_scales_1248",
        ],
        zero_shot=False,
        lr_from="lsf",  # every ablation trains at the lr_scale msft selected in the lsf suite
        test_stride={"Weather": 12},
    ),
}
SUBDIR = "${data.name}_H${data.horizon}/${hydra:runtime.choices.backbone}/${method.name}/lr${lr_scale}/seed${seed}"
_print_lock = threading.Lock()
# Offline; the data from $MSFT_DATA_DIR, else ../shared/data beside the checkout (as scripts/test.sh).
ENV = dict(os.environ, HF_HUB_OFFLINE="1")
if not ENV.get("MSFT_DATA_DIR") and (REPO.parent / "shared" / "data").is_dir():
    ENV["MSFT_DATA_DIR"] = str((REPO.parent / "shared" / "data").resolve())
PREFIX = ["evidence"]  # --prefix: the experiment name is <prefix>_<suite> (a smoke run keeps its own runs)
OVERRIDES: list[str] = []  # --override: extra msft-train overrides for every run (e.g. a tiny budget)


def say(message: str) -> None:
    with _print_lock:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def experiment(suite: str) -> str:
    return f"{PREFIX[0]}_{suite}"


def train(suite: str, stage: str, dataset: str, methods: list[str], seeds, lr_scales) -> None:
    """One msft-train multirun: ``methods`` x ``seeds`` x ``lr_scales`` on ``dataset``, test deferred."""
    exp = experiment(suite)
    logs = REPO / "runs" / exp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    args = [
        str(BIN / "msft-train"),
        "-m",
        f"experiment={exp}",
        f"data={dataset}",
        f"method={','.join(methods)}",
        f"seed={','.join(map(str, seeds))}",
        f"lr_scale={','.join(f'{s:g}' for s in lr_scales)}",
        "defer_test=true",
        "skip_finished=true",
        "select=true",
        "plots=false",
        f"results_dir=runs/{exp}/tables",  # each multirun's own table; the suite's table is written at the end
        f"hydra.sweep.subdir={SUBDIR}",
        *SUITES[suite].get("overrides", ()),
    ]
    stride = test_stride(suite, dataset)
    if stride is not None:
        args.append(f"data.test_stride={stride}")
    replaced = {o.split("=")[0] for o in OVERRIDES}  # an --override wins over the suite's own value
    args = [a for a in args if a.split("=")[0] not in replaced] + OVERRIDES
    env = dict(ENV, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRANSFORMERS_OFFLINE="1")
    log = logs / f"{stage}.log"
    say(f"{exp} {stage}: {len(methods)} method(s) x {len(seeds)} seed(s) x {len(lr_scales)} lr -> {log}")
    with log.open("a") as handle:
        code = subprocess.run(args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    say(f"{exp} {stage}: done (exit {code})")


def test_stride(suite: str, dataset: str) -> int | None:
    """Every how many test windows ``suite`` scores on ``dataset`` (1: all of them, the protocol);
    None for the PF protocol, whose rolling test windows are fixed."""
    if SUITES[suite].get("protocol") == "pf":
        return None
    return SUITES[suite].get("test_stride", {}).get(dataset, 1)


def selected_lr(suite: str, dataset: str, method: str) -> float | None:
    """The lr_scale of ``method``'s seed-0 run with the best validation score, None if none finished."""
    from msft_runner.results import collect, select

    root = REPO / "runs" / experiment(suite)
    chosen = [
        r
        for r in select(collect(sorted(root.glob(f"{dataset}_H*"))))
        if r["method"] == method and r["seed"] == SELECTION_SEED
    ]
    return chosen[0]["lr_scale"] if chosen else None


def run_dataset(suite: str, dataset: str, grid_done: dict[str, threading.Event]) -> None:
    spec = SUITES[suite]
    methods = spec["methods"]
    if spec.get("zero_shot"):
        train(suite, f"{dataset}_zero_shot", dataset, ["zero_shot"], (SELECTION_SEED, *OTHER_SEEDS), (1,))
    if "lr_from" in spec:  # the ablations: msft's learning rate from the lsf suite
        grid_done[f"{spec['lr_from']}/{dataset}"].wait()
        scale = selected_lr(spec["lr_from"], dataset, "msft")
        if scale is None:
            say(f"{experiment(suite)} {dataset}: no msft run in the {spec['lr_from']} suite; skipped")
            return
        train(suite, f"{dataset}_seeds", dataset, methods, (SELECTION_SEED, *OTHER_SEEDS), (scale,))
    else:
        train(suite, f"{dataset}_grid", dataset, methods, (SELECTION_SEED,), GRID)
        grid_done[f"{suite}/{dataset}"].set()
        by_scale: dict[float, list[str]] = {}
        for method in methods:
            scale = selected_lr(suite, dataset, method)
            if scale is not None:
                by_scale.setdefault(scale, []).append(method)
        for scale, group in sorted(by_scale.items()):
            train(suite, f"{dataset}_seeds_lr{scale:g}", dataset, group, OTHER_SEEDS, (scale,))
    root = REPO / "runs" / experiment(suite)
    stride = test_stride(suite, dataset)
    stride_option = [] if stride is None else ["--test-stride", str(stride)]
    for sweep in sorted(root.glob(f"{dataset}_H*")):
        say(f"{experiment(suite)} {dataset}: testing the selected runs of {sweep.name}")
        with (root / "logs" / f"{dataset}_evaluate.log").open("a") as handle:
            subprocess.run(
                [str(BIN / "msft-evaluate"), str(sweep), "--select", *stride_option],
                cwd=REPO,
                env=dict(ENV, OMP_NUM_THREADS="1"),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
    grid_done[f"{suite}/{dataset}"].set()


def write_table(suite: str) -> None:
    root = REPO / "runs" / experiment(suite)
    if not root.is_dir():
        return
    out = REPO / "results" / "evidence"
    roots = [root]
    if "lr_from" in SUITES[suite]:  # the reference: msft's own runs in the suite its learning rate came from
        source = REPO / "runs" / experiment(SUITES[suite]["lr_from"])
        roots += [path for d in SUITES[suite]["data"] for path in sorted(source.glob(f"{d}_H*/*/msft"))]
    note = (
        "Learning rate: seed 0 trains every method at lr_scale 0.3, 1, 3 and keeps the best on validation; "
        "seeds 1 and 2 train at that lr_scale (`runs` counts the grid and the two seeds). "
        if suite != "ablations"
        else "Every ablation trains at the lr_scale msft selected on seed 0 in the lsf suite, for all 3 seeds; "
        "the msft rows are that suite's msft runs (the reference). "
    )
    ran = [d for d in SUITES[suite]["data"] if any(root.glob(f"{d}_H*"))]  # the table names only these
    strides = {d: test_stride(suite, d) for d in ran}
    note += "Test: only the selected runs are tested (defer_test + msft-evaluate --select). Test windows: "
    note += ", ".join(f"{d} every {k}-th (off-protocol)" if k and k > 1 else f"{d} all" for d, k in strides.items())
    strides = {d: k for d, k in strides.items() if k is not None}
    note += f". Regenerate the runs: `.venv/bin/python scripts/evidence.py {suite}`."
    subprocess.run(
        [
            str(BIN / "msft-results"),
            *(str(r.relative_to(REPO)) for r in roots),
            "--select",
            "--name",
            suite,
            "--out",
            str(out.relative_to(REPO)),
            "--trained-by",
            f".venv/bin/python scripts/evidence.py {suite}",
            "--note",
            note,
            *(["--test-stride", ",".join(f"{d}={k}" for d, k in strides.items())] if strides else []),
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    say(f"wrote {out / suite}.md")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "suites",
        nargs="+",
        metavar="SUITE[:DATA,...]",
        help=f"{', '.join(SUITES)} or all, optionally with some of its datasets (lsf:ETTh1,ETTm1); run in this order",
    )
    parser.add_argument("--jobs", type=int, default=2, help="msft-train processes at a time (one torch thread each)")
    parser.add_argument("--data", nargs="*", help="only these datasets (default: every dataset of the suite)")
    parser.add_argument("--prefix", default="evidence", help="runs go to runs/<prefix>_<suite>")
    parser.add_argument("--override", nargs="*", default=[], help="extra msft-train overrides for every run")
    parser.add_argument("--no-tables", action="store_true", help="do not write results/evidence/ (smoke runs)")
    parser.add_argument("--tables-only", action="store_true", help="only (re)write results/evidence/ from the runs")
    args = parser.parse_args(argv)
    PREFIX[0] = args.prefix
    OVERRIDES[:] = args.override
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    work: list[tuple[str, str]] = []
    for item in args.suites:
        suite, _, only = item.partition(":")
        if suite != "all" and suite not in SUITES:
            parser.error(f"suite {suite!r}: expected one of {', '.join(SUITES)} or all")
        chosen = only.split(",") if only else None
        for name in [*SUITES] if suite == "all" else [suite]:
            unknown = set(chosen or []) - set(SUITES[name]["data"])
            if unknown:
                parser.error(f"{item}: {sorted(unknown)} not in the {name} suite's {SUITES[name]['data']}")
            work += [(name, d) for d in SUITES[name]["data"] if (not chosen or d in chosen) and (name, d) not in work]
    work = [(s, d) for s, d in work if not args.data or d in args.data]
    suites = list(dict.fromkeys(s for s, _ in work))
    if not work:
        parser.error(f"nothing to run among --data {args.data}")
    # An ablation waits for the lsf grid of its dataset (msft's learning rate); without lsf in this
    # call that grid is whatever finished before.
    grid_done = {f"{s}/{d}": threading.Event() for s in SUITES for d in SUITES[s]["data"]}
    for key, event in grid_done.items():
        if tuple(key.split("/")) not in work:
            event.set()
    if not args.tables_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(run_dataset, s, d, grid_done) for s, d in work]:
                future.result()
    if args.no_tables:
        return
    for suite in suites:
        write_table(suite)
    if "lsf" in suites:
        subprocess.run([str(BIN / "python"), str(REPO / "scripts" / "evidence_plot.py")], cwd=REPO, check=False)


if __name__ == "__main__":
    main()
