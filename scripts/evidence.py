"""The evidence (issues 18 and 31): does MSFT help on the embedded tiny MOIRAI? One resumable command per suite.

    .venv/bin/python scripts/evidence.py lsf          # 5 LSF datasets, H=96, 8 methods, 5 seeds
    .venv/bin/python scripts/evidence.py lsf336       # ETTh1 and ETTm1 at H=336, 3 seeds
    .venv/bin/python scripts/evidence.py ablations    # MSFT's components on ETTh1 and ETTm1, 5 seeds
    .venv/bin/python scripts/evidence.py pf           # Jena weather, ETTh1, ETTm1, PF protocol, 5 seeds
    .venv/bin/python scripts/evidence.py budget       # msft, full, LoRA with 10x the steps, ETTh1/ETTm1, 3 seeds
    .venv/bin/python scripts/evidence.py long_context long_context336  # issue 30: longer coarse history
    .venv/bin/python scripts/evidence.py covariates   # issue 28: ETTh1's OT alone / + past loads / + calendar
    .venv/bin/python scripts/evidence.py all --jobs 2 # every suite, two msft-train processes at a time
    .venv/bin/python scripts/evidence.py lsf:ETTh1,ETTm1 pf   # some datasets of a suite, then another suite

Protocol, the same for every method (`msft_runner.evidence` holds the rules):
1. Learning rate: on seed 0, every method trains at ``lr_scale`` 0.1, 0.3, 1, 3 and 10 (every learning
   rate of the run times that factor) with the preset's step budget, early-stopping and keeping its
   checkpoint on the fused validation score. While the best grid point is an edge of what was tried,
   one more point 3x beyond it is trained (at most twice); a choice still at an edge is flagged.
2. One other knob: at the chosen rate, three values of the method's second setting
   (`msft_runner.evidence.KNOBS`: LoRA's rank, AdaLoRA's schedule, full finetuning's weight decay,
   the prompt length, msft's scale set, ...); seed 0's selection is the best validation score of its
   whole search. ``lora_matched`` is LoRA with msft's trainable-parameter count.
3. The other seeds train at seed 0's choice (ablations and the budget check: at the choice of the
   same method in the lsf suite; the ablations' variants at msft's).
4. Testing: ``defer_test=true`` trains and validates only; ``msft-evaluate --select --test-stride``
   then tests the run validation selected per (method, dataset, seed), so no test score of an
   unselected candidate is ever computed. Every test window is scored (stride 1, the protocol).
5. Tables: ``msft-results --select`` writes ``results/evidence/<suite>.{md,csv}`` (the long-context
   suites: ``results/long_context/lsf{,336}``); this script adds the search (grids, extensions, knobs,
   trainable parameters) and the reference method's (msft; ``msft_equal_tokens`` for long context)
   paired per-seed difference to every other method with its 95% interval and p-value; ``lsf`` also
   draws ``results/evidence/lsf.png``.

Every stage skips what is finished (``skip_finished``, deferred tests already done), so the command
continues a stopped sweep, and the committed tables stand in for runs that are gone (a fresh clone:
their runs are neither trained again nor dropped; ``msft-results --keep``). Each msft-train process
runs one torch thread, ``--jobs`` of them at a time over all datasets and stages: with ``--jobs`` > 1
every run trains in its own process (the grid of a one-dataset suite, the seeds of every method at
once), one multirun per stage otherwise. Each dataset's tests run in ``--jobs`` processes too. Logs:
``runs/evidence_<suite>/logs/<stage>.log`` (``<stage>_<method>_seed<k>_lr<scale>.log`` per run).
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from msft_runner.evidence import (
    COVARIATE_KNOBS,
    GRID,
    LONG_CONTEXT_KNOBS,
    Knob,
    knob_values,
    lr_dir,
    next_lr_scale,
    paired_table,
    run_tag,
    search_table,
    variants_table,
    verdict_table,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SELECTION_SEED = 0
LSF_METHODS = ["linear_probe", "prompt_tuning", "lora", "lora_matched", "adalora", "full", "msft"]
# Issue 30: does longer coarse history help? msft [1, 2, 4] at 512 past steps (today), with equal_tokens
# (scale 4 sees 2048), one scale at 2048, LoRA and full finetuning at the better of 512 and 2048 on
# validation (their knob); the same rate search as every suite, 3 seeds; results/long_context/.
LONG_CONTEXT = dict(
    methods=["msft", "msft_equal_tokens", "msft_single_scale_long", "lora", "full"],
    zero_shot=False,
    seeds=3,
    knobs=LONG_CONTEXT_KNOBS,
    out="results/long_context",
    reference="msft_equal_tokens",
)
SUITES = {
    "lsf": dict(data=["ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather"], methods=LSF_METHODS, zero_shot=True, seeds=5),
    "lsf336": dict(  # the long horizon on two datasets
        data=["ETTh1", "ETTm1"], methods=LSF_METHODS, zero_shot=True, seeds=3, overrides=["data.horizon=336"]
    ),
    "ablations": dict(
        data=["ETTh1", "ETTm1"],
        methods=[
            "msft",
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
        seeds=5,
        lr_from="lsf",  # every variant trains at the lr_scale msft selected in the lsf suite (default knobs)
        lr_method="msft",
    ),
    "pf": dict(  # Jena weather (the published PF benchmark's) and ETTh1, ETTm1 under the PF protocol
        data=["pf_jena_weather", "pf_etth1", "pf_ettm1"],
        methods=["lora", "lora_matched", "full", "msft", "msft_full_backbone_crps"],
        zero_shot=True,
        seeds=5,
        protocol="pf",
    ),
    "budget": dict(  # does the ranking hold when every method trains 10x longer (early stopping still on)?
        data=["ETTh1", "ETTm1"],
        methods=["lora", "full", "msft"],
        zero_shot=False,
        seeds=3,
        lr_from="lsf",  # each method at its own lsf choice (rate and knob)
        overrides=["trainer.max_epochs=20"],
    ),
    "long_context": dict(LONG_CONTEXT, data=["ETTh1", "ETTm1", "Weather"], table="lsf"),
    "long_context336": dict(LONG_CONTEXT, data=["ETTm1"], table="lsf336", overrides=["data.horizon=336"]),
    # Issue 28: do covariates help? ETTh1's oil temperature alone, with the six loads as past-only
    # covariates, and with the calendar known over the horizon too (configs/data/ETTh1_OT*.yaml): msft
    # with the same rate search on each, 3 seeds, each variant paired with the target alone.
    "covariates": dict(
        data=["ETTh1_OT", "ETTh1_OT_past", "ETTh1_OT_past_known"],
        methods=["msft"],
        zero_shot=True,
        seeds=3,
        knobs=COVARIATE_KNOBS,
        out="results/multivariate",
        variants_of="ETTh1_OT",
    ),
}
SUBDIR = "${data.name}_H${data.horizon}/${hydra:runtime.choices.backbone}/${method.name}/{lr}/seed${seed}"
_print_lock = threading.Lock()
# Offline; the data from $MSFT_DATA_DIR, else ../shared/data beside the checkout (as scripts/test.sh).
ENV = dict(os.environ, HF_HUB_OFFLINE="1")
if not ENV.get("MSFT_DATA_DIR") and (REPO.parent / "shared" / "data").is_dir():
    ENV["MSFT_DATA_DIR"] = str((REPO.parent / "shared" / "data").resolve())
PREFIX = ["evidence"]  # --prefix: the experiment name is <prefix>_<suite> (a smoke run keeps its own runs)
OVERRIDES: list[str] = []  # --override: extra msft-train overrides for every run (e.g. a tiny budget)
JOBS = [1]  # --jobs: processes at a time, for training and for each dataset's tests
# --jobs: msft-train processes at a time over every dataset and stage (each run its own process then)
SLOTS = [threading.BoundedSemaphore(1)]
ONLY_METHODS: list[str] = []  # --methods: only these of each suite's methods (e.g. the baselines first)


def say(message: str) -> None:
    with _print_lock:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def experiment(suite: str) -> str:
    return f"{PREFIX[0]}_{suite}"


def knobs_of(suite: str, method: str) -> tuple[Knob, ...]:
    """``method``'s knob values in ``suite`` (the suite's own knobs where it has them)."""
    return knob_values(method, SUITES[suite].get("knobs"))


def on_disk(roots: list[Path]) -> list[dict]:
    """The run records under ``roots``, their ``run_dir`` relative to the checkout (as tables name them)."""
    from msft_runner.results import collect

    records = collect(roots)
    for r in records:
        r["run_dir"] = str(Path(r["run_dir"]).resolve().relative_to(REPO.resolve()))
    return records


def committed(suite: str, dataset: str | None = None) -> list[dict]:
    """The runs of ``suite`` its committed table (``results/.../<table>.csv``) holds: after ``runs/``
    was cleared (another machine, a fresh clone) the search and the seeds continue from them, and the
    tables keep them (``msft-results --keep``)."""
    from msft_runner.results import read_table_csv

    path = table_csv(suite)
    if not path.is_file():
        return []
    prefix = f"runs/{experiment(suite)}/"
    rows = [
        r
        for r in read_table_csv(path)
        if str(r.get("run_dir", "")).startswith(prefix) and dataset in (None, r.get("dataset"))
    ]
    # A row started from other pretrained weights than its backbone config builds now is not this
    # backbone's run any more: it trains again (rows written before fingerprints were kept: unknown).
    fresh = [r for r in rows if not r.get("base_fingerprint") or r["base_fingerprint"] == fingerprint_of(r["backbone"])]
    if len(fresh) < len(rows):
        say(
            f"{experiment(suite)}: {len(rows) - len(fresh)} row(s) of {path.name} started from other weights; they train again"
        )
    return fresh


@functools.cache
def fingerprint_of(backbone: str) -> str:
    """The weights fingerprint (`msft.provenance.fingerprint`) of what ``configs/backbone/<backbone>.yaml`` builds now."""
    from omegaconf import OmegaConf

    from msft.provenance import fingerprint
    from msft_runner.backbones import build_backbone

    config = importlib.resources.files("msft_runner.configs") / "backbone" / f"{backbone}.yaml"
    module, _ = build_backbone(OmegaConf.load(str(config)))
    return fingerprint(module)


def reusable(rows: list[dict]) -> set[tuple[str, int, str]]:
    """`run_key` of the committed ``rows`` that need no training: finished, and tested or not selected
    (a selected run still to be tested needs its checkpoint, which only training it again brings back)."""
    from msft_runner.results import select

    ok = [r for r in rows if r.get("status") == "ok"]
    untested = {r["run_dir"] for r in select(ok) if r.get("test") != "done"}
    return {run_key(r["run_dir"]) for r in ok if r["run_dir"] not in untested}


def table_csv(suite: str) -> Path:
    spec = SUITES[suite]
    return REPO / spec.get("out", "results/evidence") / f"{spec.get('table', suite)}.csv"


def run_key(run_dir: str) -> tuple[str, int, str]:
    """(method, seed, rate directory) of ``.../<method>/lr<scale>[_<tag>]/seed<k>``."""
    parts = Path(run_dir).parts
    return parts[-3], int(parts[-1].removeprefix("seed")), parts[-2]


def train(
    suite: str,
    stage: str,
    dataset: str,
    methods: list[str],
    seeds,
    lr_scales,
    tag: str = "",
    extra: tuple[str, ...] = (),
) -> None:
    """One msft-train multirun: ``methods`` x ``seeds`` x ``lr_scales`` on ``dataset``, test deferred;
    ``tag`` / ``extra``: a knob value's directory tag and overrides (one method). Runs the committed
    table already holds (`committed`) are not trained again, except one validation selects that was
    never tested (its checkpoint left with the runs); the rest train one multirun per method and rate."""
    done = reusable(committed(suite, dataset))
    todo = {(m, s, r) for m in methods for s in seeds for r in lr_scales if (m, s, lr_dir(r, tag)) not in done}
    if not todo:
        say(f"{experiment(suite)} {stage}: every run is in the committed table")
        return
    if JOBS[0] > 1 and len(todo) > 1:  # one process per run, --jobs at a time (a one-dataset suite too)
        in_parallel(
            [
                functools.partial(_train, suite, f"{stage}_{m}_seed{s}_lr{r:g}", dataset, [m], (s,), (r,), tag, extra)
                for m, s, r in sorted(todo)
            ]
        )
        return
    if len(todo) < len(methods) * len(seeds) * len(lr_scales):
        for method, scale in sorted({(m, r) for m, _, r in todo}):
            missing = tuple(s for s in seeds if (method, s, scale) in todo)
            part = (f"_{method}" if len(methods) > 1 else "") + (f"_lr{scale:g}" if len(lr_scales) > 1 else "")
            _train(suite, stage + part, dataset, [method], missing, (scale,), tag, extra)
        return
    _train(suite, stage, dataset, methods, seeds, lr_scales, tag, extra)


def _train(suite, stage, dataset, methods, seeds, lr_scales, tag, extra) -> None:
    exp = experiment(suite)
    logs = REPO / "runs" / exp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lr = "lr${lr_scale}" + (f"_{tag}" if tag else "")
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
        f"hydra.sweep.subdir={SUBDIR.replace('{lr}', lr)}",
        *SUITES[suite].get("overrides", ()),
        *extra,
    ]
    stride = test_stride(suite, dataset)
    if stride is not None:
        args.append(f"data.test_stride={stride}")
    replaced = {o.split("=")[0] for o in OVERRIDES}  # an --override wins over the suite's own value
    args = [a for a in args if a.split("=")[0] not in replaced] + OVERRIDES
    env = dict(ENV, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRANSFORMERS_OFFLINE="1")
    log = logs / f"{stage}.log"
    say(f"{exp} {stage}: {len(methods)} method(s) x {len(seeds)} seed(s) x {len(lr_scales)} lr -> {log}")
    with SLOTS[0], log.open("a") as handle:
        code = subprocess.run(args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    say(f"{exp} {stage}: done (exit {code})")


def in_parallel(calls: list) -> None:
    """Call ``calls`` (stages that start msft-train), ``--jobs`` at a time; `SLOTS` bounds the processes
    over every dataset, so nested calls never run more than ``--jobs`` trainings. The first error raises."""
    if JOBS[0] == 1 or len(calls) < 2:
        for call in calls:
            call()
        return
    with ThreadPoolExecutor(min(JOBS[0], len(calls))) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def test_stride(suite: str, dataset: str) -> int | None:
    """Every how many test windows ``suite`` scores on ``dataset`` (1: all of them, the protocol);
    None for the PF protocol, whose rolling test windows are fixed."""
    if SUITES[suite].get("protocol") == "pf":
        return None
    return SUITES[suite].get("test_stride", {}).get(dataset, 1)


def _seed0(suite: str, dataset: str, method: str) -> list[dict]:
    from msft_runner.results import keep_earlier

    root = REPO / "runs" / experiment(suite)
    return [
        r
        for r in keep_earlier(on_disk(sorted(root.glob(f"{dataset}_H*"))), committed(suite, dataset))
        if r.get("method") == method
        and r.get("seed") == SELECTION_SEED
        and r.get("status") == "ok"
        and r.get("val_score") is not None
    ]


def grid_choice(suite: str, dataset: str, method: str) -> tuple[list[float], float | None]:
    """The rates seed 0 tried at the default knob, and the one with the best validation score."""
    runs = [r for r in _seed0(suite, dataset, method) if run_tag(r["run_dir"])[1] == ""]
    if not runs:
        return [], None
    best = min(runs, key=lambda r: r["val_score"])
    return sorted(run_tag(r["run_dir"])[0] for r in runs), run_tag(best["run_dir"])[0]


def selected(suite: str, dataset: str, method: str):
    """Seed 0's choice over its whole search: (lr_scale, knob), None if nothing finished."""
    runs = _seed0(suite, dataset, method)
    if not runs:
        return None
    scale, tag = run_tag(min(runs, key=lambda r: r["val_score"])["run_dir"])
    return scale, next(k for k in knobs_of(suite, method) if k.tag == tag)


def selected_lr(suite: str, dataset: str, method: str) -> float | None:
    """The lr_scale of ``method``'s seed-0 choice, None if none finished."""
    choice = selected(suite, dataset, method)
    return None if choice is None else choice[0]


def search(suite: str, dataset: str, methods: list[str]) -> None:
    """Seed 0: the rate grid (extended beyond an edge choice), then the knob at the chosen rate."""
    train(suite, f"{dataset}_grid", dataset, methods, (SELECTION_SEED,), GRID)
    for step in range(1, 3):
        beyond: dict[float, list[str]] = {}
        for method in methods:
            tried, best = grid_choice(suite, dataset, method)
            point = None if best is None else next_lr_scale(tried, best)
            if point is not None:
                beyond.setdefault(point, []).append(method)
        for point, group in sorted(beyond.items()):
            say(f"{experiment(suite)} {dataset}: {', '.join(group)} chose an edge; extending to lr_scale {point:g}")
        in_parallel(
            [
                functools.partial(
                    train, suite, f"{dataset}_grid_ext{step}_lr{point:g}", dataset, group, (SELECTION_SEED,), (point,)
                )
                for point, group in sorted(beyond.items())
            ]
        )
    knobs = []
    for method in methods:
        best = grid_choice(suite, dataset, method)[1]
        for knob in knobs_of(suite, method)[1:]:
            if best is not None:
                stage = f"{dataset}_knob_{method}_{knob.tag}"
                args = (suite, stage, dataset, [method], (SELECTION_SEED,), (best,), knob.tag, knob.overrides)
                knobs.append(functools.partial(train, *args))
    in_parallel(knobs)


def run_dataset(suite: str, dataset: str, grid_done: dict[str, threading.Event]) -> None:
    spec = SUITES[suite]
    methods = [m for m in spec["methods"] if not ONLY_METHODS or m in ONLY_METHODS]
    seeds = tuple(range(spec["seeds"]))
    others = tuple(s for s in seeds if s != SELECTION_SEED)
    if spec.get("zero_shot"):
        train(suite, f"{dataset}_zero_shot", dataset, ["zero_shot"], seeds, (1,))
    if "lr_from" in spec:  # the ablations and the budget check: the choices of the lsf suite
        grid_done[f"{spec['lr_from']}/{dataset}"].wait()
        for method in methods:
            source = spec.get("lr_method", method)
            choice = selected(spec["lr_from"], dataset, source)
            if choice is None:
                say(f"{experiment(suite)} {dataset}: no {source} run in the {spec['lr_from']} suite; {method} skipped")
                continue
            scale, knob = choice
            if "lr_method" in spec:  # ablation variants keep their own settings; only the rate is shared
                knob = knobs_of(suite, method)[0]
            train(suite, f"{dataset}_{method}_seeds", dataset, [method], seeds, (scale,), knob.tag, knob.overrides)
    else:
        search(suite, dataset, methods)
        grid_done[f"{suite}/{dataset}"].set()
        stages = []
        for method in methods:
            choice = selected(suite, dataset, method)
            if choice is not None:
                scale, knob = choice
                stage = f"{dataset}_seeds_{method}_{lr_dir(scale, knob.tag)}"
                args = (suite, stage, dataset, [method], others, (scale,), knob.tag, knob.overrides)
                stages.append(functools.partial(train, *args))
        in_parallel(stages)
    root = REPO / "runs" / experiment(suite)
    stride = test_stride(suite, dataset)
    stride_option = [] if stride is None else ["--test-stride", str(stride)]
    for sweep in sorted(root.glob(f"{dataset}_H*")):
        say(f"{experiment(suite)} {dataset}: testing the selected runs of {sweep.name}")
        with (root / "logs" / f"{dataset}_evaluate.log").open("a") as handle:
            subprocess.run(
                [str(BIN / "msft-evaluate"), str(sweep), "--select", "--jobs", str(JOBS[0]), *stride_option],
                cwd=REPO,
                env=dict(ENV, OMP_NUM_THREADS="1"),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
    grid_done[f"{suite}/{dataset}"].set()


def write_table(suite: str) -> None:
    from msft_runner.records import write_text_atomic
    from msft_runner.results import keep_earlier, select

    root = REPO / "runs" / experiment(suite)
    earlier = committed(suite)
    if not root.is_dir() and not earlier:
        return
    root.mkdir(parents=True, exist_ok=True)
    spec = SUITES[suite]
    out, name = table_csv(suite).parent, table_csv(suite).stem
    if "lr_from" in spec:
        note = (
            f"Every method trains at the choice (lr_scale and knob) of {spec.get('lr_method', 'the same method')} "
            f"on seed 0 in the {spec['lr_from']} suite, for all {spec['seeds']} seeds. "
        )
    else:
        note = (
            "Search on seed 0, validation only, the same for every method: lr_scale 0.1, 0.3, 1, 3, 10, extended "
            "3x beyond an edge choice (at most twice), then the other values of the method's knob at the chosen "
            f"rate (tables below); seeds 1-{spec['seeds'] - 1} train at seed 0's choice (`runs` counts every candidate). "
        )
    ran = [d for d in spec["data"] if any(root.glob(f"{d}_H*")) or any(r["dataset"] == d for r in earlier)]
    strides = {d: test_stride(suite, d) for d in ran}
    note += "Test: only the selected runs are tested (defer_test + msft-evaluate --select). Test windows: "
    note += ", ".join(f"{d} every {k}-th (off-protocol)" if k and k > 1 else f"{d} all" for d, k in strides.items())
    strides = {d: k for d, k in strides.items() if k is not None}
    note += f". Regenerate the runs: `.venv/bin/python scripts/evidence.py {suite}`."
    subprocess.run(
        [
            str(BIN / "msft-results"),
            str(root.relative_to(REPO)),
            "--select",
            "--name",
            name,
            "--out",
            str(out.relative_to(REPO)),
            "--trained-by",
            f".venv/bin/python scripts/evidence.py {suite}",
            "--note",
            note,
            *(["--test-stride", ",".join(f"{d}={k}" for d, k in strides.items())] if strides else []),
            *(["--keep", str(table_csv(suite).relative_to(REPO))] if earlier else []),
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    records = keep_earlier(on_disk([root]), earlier)
    metric = "crps" if spec.get("protocol") == "pf" else "mse"
    reference = spec.get("reference", "msft")
    chosen = select(records)
    base = spec.get("variants_of")  # one method on several variants of one dataset: each against the plain one
    if base:
        extra = (
            f"\n## Each variant against {base} (test {metric.upper()})\n\n"
            f"Per method, the variant's selected run minus {base}'s, seed by seed, on the same test windows "
            "(the target's only); 95% t interval over seeds and the paired t-test's p. An interval that covers 0 "
            "is a tie.\n\n" + variants_table(chosen, metric, base) + "\n"
        )
    else:
        extra = (
            f"\n## Verdict per dataset (test {metric.upper()})\n\n{reference} against the baseline best on validation "
            "(paired over seeds, as below), and how many of all the other trained methods it is below, tied "
            "with or above.\n\n" + verdict_table(chosen, metric, reference) + "\n"
        )
    if "lr_from" not in spec:
        searched = search_table(records, SELECTION_SEED, spec.get("knobs"))
        extra += "\n## The search (seed 0, validation)\n\n" + searched + "\n"
    if not base:
        extra += (
            f"\n## {reference} against every other method, seed by seed (test {metric.upper()})\n\n"
            f"Difference = {reference} minus the method, per seed, on the same test windows; 95% t interval over seeds "
            "and the paired t-test's p. An interval that covers 0 is a tie. The baseline with the best mean validation "
            "score is marked (chosen on validation, never on test).\n\n"
            + paired_table(chosen, metric, reference)
            + "\n"
        )
    path = out / f"{name}.md"
    write_text_atomic(path, path.read_text() + extra)
    say(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "suites",
        nargs="+",
        metavar="SUITE[:DATA,...]",
        help=f"{', '.join(SUITES)} or all, optionally with some of its datasets (lsf:ETTh1,ETTm1); run in this order",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="msft-train processes at a time, and msft-evaluate processes per dataset (one torch thread each)",
    )
    parser.add_argument("--data", nargs="*", help="only these datasets (default: every dataset of the suite)")
    parser.add_argument("--prefix", default="evidence", help="runs go to runs/<prefix>_<suite>")
    parser.add_argument("--override", nargs="*", default=[], help="extra msft-train overrides for every run")
    parser.add_argument(
        "--methods",
        nargs="*",
        default=[],
        help="only these of each suite's methods (zero-shot still runs); e.g. the baselines before msft's defaults settle",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="at most this many seeds per suite (the tables say how many ran; a later call with more resumes)",
    )
    parser.add_argument("--no-tables", action="store_true", help="do not write results/evidence/ (smoke runs)")
    parser.add_argument("--tables-only", action="store_true", help="only (re)write results/evidence/ from the runs")
    args = parser.parse_args(argv)
    PREFIX[0] = args.prefix
    OVERRIDES[:] = args.override
    known = {m for spec in SUITES.values() for m in spec["methods"]}
    unknown = sorted(set(args.methods) - known)
    if unknown:
        parser.error(f"--methods {unknown}: expected some of {sorted(known)}")
    ONLY_METHODS[:] = args.methods
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    JOBS[0] = args.jobs
    SLOTS[0] = threading.BoundedSemaphore(args.jobs)
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds {args.seeds}: expected at least 1")
        for spec in SUITES.values():
            spec["seeds"] = min(spec["seeds"], args.seeds)
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
