"""Distillation that earns its speed-up (issue 34): the evidence suite's msft teacher vs a DMLP student
distilled from it vs the same student trained alone, LSF at H=96, 3 seeds, full test split.

    MSFT_DATA_DIR=../shared/data python benchmarks/bench_distill.py --datasets ETTh1 ETTm1

Teacher: a run of ``msft-train`` with the evidence suite's recipe (``scripts/evidence.py lsf``):
``method=msft`` (scales 1, 2, 4), seed 0, ``--teacher-lr-scale`` (default 1: the learning rate the
evidence suite selected on validation for msft on all five datasets), the backbone ``--teacher-backbone``
(default the embedded tiny MOIRAI; ``moment_tiny`` and ``time_dpd_tiny`` show that the pipeline is
backbone-agnostic). It is loaded with the one run loader `msft_runner.train.load_run`, which rebuilds
the backbone from the current weights, so a teacher run belongs to the weights it was trained from:
teacher runs, caches and distilled students live under the weights' tag (`weights_tag`: the shipped tiny
MOIRAI's fingerprint), and new pretrained weights never meet an old teacher's adapters. Its forecasts
and features over the students' training windows are cached once under ``--work-dir``.

Students: TimeDistill's DMLP and training recipe (LingFengGold/TimeDistill ``run_scripts/
train_student.sh``, ``exp/exp_long_term_forecasting.py``, ``utils/tools.py``): all channels of a
window in one batch (mode M, channel-independent weights, BatchNorm per channel), batch 32 windows,
Adam, lr halved after every epoch (``type1``), at most 100 epochs, early stopping on the student's
validation MSE with patience 5, the best epoch kept; α=β=1, τ=0.5. Search (seed 0, validation MSE,
the same number of candidates for both students): the distilled student over lr × (α, β), the
undistilled one over as many learning rates. Seeds 1 and 2 train at the settings seed 0 selected;
only the selected students are tested. Every model is scored on the full test split (stride 1).

Resumable: the teacher run, the cache and every trained student (weights + fit record) are kept
under ``--work-dir`` (runs/, not committed) and reused (undistilled students do not depend on the
teacher and are shared by every teacher); the tables are rewritten after every dataset.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from msft.data import prepare_lsf  # noqa: E402
from msft.distill import (  # noqa: E402
    ChannelIndependent,
    DistillConfig,
    MLPStudent,
    StudentConfig,
    cache_name,
    cache_teacher,
    fit_student,
    load_student,
)
from msft.protocols import evaluate_lsf  # noqa: E402
from msft_runner.distill import measure_throughput, num_parameters  # noqa: E402
from msft_runner.records import write_text_atomic  # noqa: E402

HORIZON, CONTEXT = 96, 512
#: Every how many training windows the students train on (and the teacher is cached over): 1 is
#: TimeDistill's; the 15-minute ETT sets take one window an hour and Weather one in 12, so that the
#: teacher cache and the 12 student trainings of a dataset fit on 2 shared CPU cores.
TRAIN_STRIDE = {"ETTh1": 1, "ETTh2": 1, "ETTm1": 4, "ETTm2": 4, "Weather": 12}
#: The search on seed 0: as many candidates for each student.
DISTILLED_GRID = [(lr, ab, ab) for lr in (0.01, 0.003) for ab in (1.0, 0.3)]  # (lr, alpha, beta)
PLAIN_GRID = [(lr, 0.0, 0.0) for lr in (0.03, 0.01, 0.003, 0.001)]
DISTILLED, PLAIN = "student (distilled)", "student (no distillation)"
TEACHER = "tiny_moirai"  # the main teacher; every dataset of the table distils from it
#: other teacher families have no preset for these datasets: they get the tiny MOIRAI presets' budget
#: (configs/preset/tiny_moirai_*.yaml: 2 epochs of at most 40 batches of 64 windows, every 8th
#: validation window), so every teacher trains for the same number of steps on the same windows
OTHER_TEACHER_BUDGET = [
    "data.context_length=512",
    "data.batch_size=64",
    "data.val_stride=8",
    "data.num_samples=20",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=40",
]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def weights_tag(backbone: str) -> str:
    """Which weights a teacher is finetuned from: the shipped tiny MOIRAI's fingerprint (its weights change
    from one pretraining stage to the next); the random-initialised geometries build the same seeded
    weights every time, so their name says it."""
    if backbone != "tiny_moirai":
        return backbone
    import msft
    from msft.provenance import fingerprint

    return "tiny_moirai-" + fingerprint(msft.load_backbone("tiny_moirai")).split(":", 1)[1][:12]


def report_key(dataset: str, backbone: str) -> str:
    return dataset if backbone == TEACHER else f"{dataset}, {backbone} teacher"


def ensure_teacher(dataset: str, args: argparse.Namespace, backbone: str, tag: str) -> Path:
    """The run directory of the teacher, trained by msft-train with the evidence recipe unless finished."""
    scale = args.teacher_lr_scale
    run_dir = REPO / "runs" / args.teacher_experiment / tag / f"{dataset}_H{HORIZON}" / backbone / "msft"
    run_dir = run_dir / f"lr{scale:g}" / "seed0"
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("status") == "ok":
        return run_dir
    command = [
        str(Path(sys.executable).parent / "msft-train"),
        "-m",
        f"experiment={args.teacher_experiment}",
        f"backbone={backbone}",
        f"data={dataset}",
        "method=msft",
        "seed=0",
        f"lr_scale={scale:g}",
        "defer_test=true",
        "skip_finished=true",
        "plots=false",
        f"results_dir=runs/{args.teacher_experiment}/tables",
        f"hydra.sweep.subdir={tag}/"
        "${data.name}_H${data.horizon}/${hydra:runtime.choices.backbone}/${method.name}/lr${lr_scale}/seed${seed}",
        *([] if backbone == TEACHER else OTHER_TEACHER_BUDGET),
    ]
    log = REPO / "runs" / args.teacher_experiment / "logs" / f"{dataset}_{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"{dataset}: training the teacher ({backbone}, msft, lr_scale {scale:g}) -> {log}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRANSFORMERS_OFFLINE="1")
    with log.open("a") as handle:
        subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, check=True)
    if not metrics.is_file():
        raise RuntimeError(f"the teacher run left no {metrics}; see {log}")
    return run_dir


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(value, indent=2))


class Bench:
    """One dataset: teacher, cache, search, seeds, tests."""

    def __init__(self, dataset: str, args: argparse.Namespace, backbone: str = TEACHER):
        from msft_runner.train import load_run

        self.dataset, self.args, self.backbone = dataset, args, backbone
        self.tag = weights_tag(backbone)
        self.stride = args.train_stride or TRAIN_STRIDE[dataset]
        # undistilled students: shared by every teacher trained on the same windows
        self.work = Path(args.work_dir) / dataset
        if self.stride != TRAIN_STRIDE[dataset]:
            self.work = self.work / f"stride{self.stride}"
        self.teacher_work = self.work / f"{self.tag}_lr{args.teacher_lr_scale:g}"  # cache, distilled students
        self.run_dir = ensure_teacher(dataset, args, backbone, self.tag)
        self.record = json.loads((self.run_dir / "metrics.json").read_text())
        self.teacher_model = load_run(self.run_dir).model
        self.teacher = ChannelIndependent(self.teacher_model)
        self.data = prepare_lsf(dataset, CONTEXT, data_dir=args.data_dir)
        self.variates = self.data.values.shape[1]
        self.train = self.data.windows("train", HORIZON, "M", stride=self.stride)
        self.val = self.data.windows("val", HORIZON, "M")
        tag = f"msft_{backbone}_lr{self.record['lr_scale']:g}_seed0"
        path = self.teacher_work / cache_name(dataset, CONTEXT, HORIZON, "M", self.stride, tag)
        start = time.perf_counter()
        say(f"{dataset}: teacher cache over {len(self.train):,} windows x {self.variates} channels -> {path}")
        self.cache = cache_teacher(
            self.teacher, self.train, HORIZON, batch_size=max(1, 256 // self.variates), path=path
        )
        say(f"{dataset}: teacher cache ready in {time.perf_counter() - start:.0f} s")
        self.student_config = StudentConfig(CONTEXT, HORIZON, hidden=512, moving_avg=25, channels=self.variates)

    def student_dir(self, kind: str, name: str) -> Path:
        return (self.teacher_work if kind == "distilled" else self.work) / "students" / name

    def candidate(self, kind: str, lr: float, alpha: float, beta: float, seed: int) -> dict:
        """Train (or reload) one student; returns its fit record."""
        name = f"{kind}_lr{lr:g}_a{alpha:g}_b{beta:g}_seed{seed}"
        directory = self.student_dir(kind, name)
        record = read_json(directory / "fit.json")
        if record is not None:
            return record
        say(f"{self.dataset}: training {name}")
        torch.manual_seed(seed)  # the same initialisation for every student of a seed
        student = MLPStudent(self.student_config)
        start = time.perf_counter()
        fit = fit_student(
            student,
            self.train,
            DistillConfig(alpha=alpha, beta=beta),
            self.cache if alpha > 0 or beta > 0 else None,
            epochs=self.args.max_epochs,
            batch_size=self.args.batch_size,
            lr=lr,
            seed=seed,
            val_windows=self.val,
            lr_schedule="type1",
            patience=self.args.patience,
        )
        record = {
            "name": name,
            "kind": kind,
            "lr": lr,
            "alpha": alpha,
            "beta": beta,
            "seed": seed,
            "val_mse": fit.val_mse,
            "best_val_mse": min(fit.val_mse),
            "best_epoch": fit.best_epoch,
            "epochs_run": fit.epochs_run,
            "stopped_early": fit.stopped_early,
            "lrs": fit.lrs,
            "train": fit.history,
            "fit_s": time.perf_counter() - start,
        }
        student.save(directory)
        write_json(directory / "fit.json", record)
        say(
            f"{self.dataset}: {name}: best val MSE {record['best_val_mse']:.4f} at epoch {fit.best_epoch} of "
            f"{fit.epochs_run} ({record['fit_s']:.0f} s)"
        )
        return record

    def test(self, record: dict) -> dict:
        directory = self.student_dir(record["kind"], record["name"])
        scores = read_json(directory / "test.json")
        if scores is None:
            student = load_student(directory)
            scores = evaluate_lsf(student, self.data, HORIZON, CONTEXT, "M", batch_size=256)
            write_json(directory / "test.json", scores)
        return scores

    def teacher_test(self) -> dict:
        path = self.teacher_work / "teacher_test.json"
        scores = read_json(path)
        if scores is None:
            say(f"{self.dataset}: testing the teacher on the full test split")
            scores = evaluate_lsf(self.teacher_model, self.data, HORIZON, CONTEXT, "S", batch_size=1024)
            write_json(path, scores)
        return scores

    def teacher_val(self) -> float:
        """The teacher's MSE on the students' validation windows (stride 1): is its target worth matching?"""
        path = self.teacher_work / "teacher_val.json"
        scores = read_json(path)
        if scores is None:
            say(f"{self.dataset}: scoring the teacher on the students' validation windows")
            scores = evaluate_lsf(self.teacher_model, self.data, HORIZON, CONTEXT, "S", split="val", batch_size=1024)
            write_json(path, scores)
        return scores["mse"]

    def run(self) -> dict:
        search = {
            DISTILLED: [self.candidate("distilled", *c, seed=0) for c in DISTILLED_GRID],
            PLAIN: [self.candidate("plain", *c, seed=0) for c in PLAIN_GRID],
        }
        result: dict[str, Any] = {"search": search, "seeds": {}, "selected": {}}
        for label, candidates in search.items():
            best = min(candidates, key=lambda r: r["best_val_mse"])
            kind = "distilled" if label == DISTILLED else "plain"
            result["selected"][label] = {k: best[k] for k in ("lr", "alpha", "beta")}
            runs = [best] + [
                self.candidate(kind, best["lr"], best["alpha"], best["beta"], seed) for seed in self.args.seeds[1:]
            ]
            result["seeds"][label] = [{**r, "test": self.test(r)} for r in runs]
        teacher = self.teacher_test()
        means = {k: statistics.mean(r["test"]["mse"] for r in v) for k, v in result["seeds"].items()}
        # the teacher's validation MSE explains a loss (is its target better than the student alone?);
        # scoring it costs a teacher pass over every validation window, so only where the distilled one lost
        teacher_val = self.teacher_val() if means[DISTILLED] > means[PLAIN] else None
        batch = self.data.windows("test", HORIZON, "M")[: max(1, 256 // self.variates)]["past_target"]
        student = load_student(self.student_dir("distilled", result["seeds"][DISTILLED][0]["name"]))
        result.update(
            dataset=self.dataset,
            teacher={
                "backbone": self.backbone,
                "weights": self.tag,
                "run_dir": str(self.run_dir.relative_to(REPO)),
                "lr_scale": self.record["lr_scale"],
                "val_score": self.record["val_score"],
                "zero_shot_val_score": self.record.get("zero_shot_val_score"),
                **({} if teacher_val is None else {"val_mse": teacher_val}),
                "test": teacher,
                "params": num_parameters(self.teacher_model),
                "series_per_s": measure_throughput(self.teacher, batch, HORIZON) * self.variates,
            },
            student_params=student.num_parameters(),
            student_series_per_s=measure_throughput(student, batch, HORIZON) * self.variates,
            train_windows=len(self.train),
            train_stride=self.stride,
            val_windows=len(self.val),
            variates=self.variates,
        )
        return result


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def val_text(teacher: dict) -> str:
    return f"{teacher['val_mse']:.4f}" if "val_mse" in teacher else "(scored only where the distilled student lost)"


def why_not(r: dict, means: dict[str, float]) -> list[str]:
    """Where distillation lost: is the teacher a better forecaster than the student alone at all?"""
    if means[DISTILLED] <= means[PLAIN]:
        return []
    teacher = r["teacher"]
    plain_val = statistics.mean(s["best_val_mse"] for s in r["seeds"][PLAIN])
    spread = max(statistics.stdev(s["test"]["mse"] for s in r["seeds"][k]) for k in (DISTILLED, PLAIN))
    gap = means[DISTILLED] - means[PLAIN]
    val = (
        f"validation MSE teacher {teacher['val_mse']:.4f} vs undistilled {plain_val:.4f} (mean over seeds of the "
        f"best epoch, {(teacher['val_mse'] / plain_val - 1) * 100:+.1f}%)"
        if "val_mse" in teacher
        else "validation: teacher not scored"
    )
    return [
        f"Why distillation does not help here: the teacher is no better a forecaster than the student trained "
        f"alone: {val}; test MSE teacher {teacher['test']['mse']:.4f} vs undistilled {means[PLAIN]:.4f}. "
        "Distillation pulls the student towards forecasts that are not more accurate than those it learns by "
        f"itself. The students differ by {gap:.4f}, {'within' if gap <= spread else 'beyond'} their larger "
        f"standard deviation over seeds ({spread:.4f}). Per-epoch validation curves: `val_curves.csv`.",
        "",
    ]


def summary(report: dict) -> list[str]:
    lines = [
        "| dataset | teacher | teacher MSE | distilled MSE | undistilled MSE | distilled ≤ undistilled | distilled − teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["datasets"].values():
        t = r["teacher"]["test"]["mse"]
        d, u = (statistics.mean(s["test"]["mse"] for s in r["seeds"][k]) for k in (DISTILLED, PLAIN))
        lines.append(
            f"| {r['dataset']} | msft {r['teacher']['backbone']} | {t:.4f} | {d:.4f} | {u:.4f} | "
            f"{'yes' if d <= u else 'no'} | {d - t:+.4f} |"
        )
    return lines + ["", "Mean test MSE over 3 seeds (teacher: one run, seed 0); details per dataset below.", ""]


def edge_note(distilled: dict, plain: dict) -> str:
    """Which selected settings sit at an edge of their search grid (not shown to be optima)."""
    grids = {
        "distilled lr": ([c[0] for c in DISTILLED_GRID], distilled["lr"]),
        "α = β": ([c[1] for c in DISTILLED_GRID], distilled["alpha"]),
        "undistilled lr": ([c[0] for c in PLAIN_GRID], plain["lr"]),
    }
    edges = [name for name, (grid, chosen) in grids.items() if chosen in (min(grid), max(grid))]
    return f" (**at an edge of its grid**: {', '.join(edges)})" if edges else ""


def dataset_section(key: str, r: dict) -> list[str]:
    teacher = r["teacher"]
    t_mse = teacher["test"]["mse"]
    means = {label: statistics.mean(s["test"]["mse"] for s in r["seeds"][label]) for label in (DISTILLED, PLAIN)}
    lines = [
        f"## {key}",
        "",
        "| model | test MSE (3 seeds) | test MAE | parameters | series/s (1 thread) | speed-up |",
        "|---|---|---|---|---|---|",
        f"| teacher (msft {teacher['backbone']}, lr_scale {teacher['lr_scale']:g}) | {t_mse:.4f} | "
        f"{teacher['test']['mae']:.4f} | {teacher['params']:,} | {teacher['series_per_s']:,.0f} | 1.0× |",
    ]
    for label in (DISTILLED, PLAIN):
        seeds = r["seeds"][label]
        speed = r["student_series_per_s"]
        lines.append(
            f"| {label} | {mean_std([s['test']['mse'] for s in seeds])} | "
            f"{mean_std([s['test']['mae'] for s in seeds])} | {r['student_params']:,} | {speed:,.0f} | "
            f"{speed / teacher['series_per_s']:.0f}× |"
        )
    d_seeds, p_seeds = r["seeds"][DISTILLED], r["seeds"][PLAIN]
    wins = sum(d["test"]["mse"] <= p["test"]["mse"] for d, p in zip(d_seeds, p_seeds))
    sel_d, sel_p = r["selected"][DISTILLED], r["selected"][PLAIN]
    verdict = "at least as accurate as" if means[DISTILLED] <= means[PLAIN] else "**worse than**"
    lines += [
        "",
        f"Distilled vs undistilled: {means[DISTILLED]:.4f} vs {means[PLAIN]:.4f} (mean over seeds): the distilled "
        f"student is {verdict} the undistilled one ({wins}/{len(d_seeds)} seeds at least as good). Gap to the "
        f"teacher: distilled {means[DISTILLED] - t_mse:+.4f} ({(means[DISTILLED] / t_mse - 1) * 100:+.1f}%), "
        f"undistilled {means[PLAIN] - t_mse:+.4f} ({(means[PLAIN] / t_mse - 1) * 100:+.1f}%).",
        "",
        f"Selected on validation (seed 0): distilled lr {sel_d['lr']:g}, α {sel_d['alpha']:g}, β {sel_d['beta']:g}; "
        f"undistilled lr {sel_p['lr']:g}{edge_note(sel_d, sel_p)}. Students trained on {r['train_windows']:,} windows × {r['variates']} "
        f"channels (stride {r['train_stride']}), early-stopped on {r['val_windows']:,} validation windows (stride 1). "
        f"Teacher: `{teacher['run_dir']}` (weights `{teacher['weights']}`), validation score "
        f"{teacher['val_score']:.4f} (zero-shot {teacher['zero_shot_val_score']:.4f}).",
        "",
        f"Validation MSE on the students' validation windows: teacher {val_text(teacher)}; best seed-0 "
        f"students: distilled {min(c['best_val_mse'] for c in r['search'][DISTILLED]):.4f}, undistilled "
        f"{min(c['best_val_mse'] for c in r['search'][PLAIN]):.4f}.",
        "",
        *why_not(r, means),
        "Search (seed 0; best validation MSE, its epoch (0-based) / epochs run):",
        "",
        "| student | lr | α | β | best val MSE | best epoch / epochs run |",
        "|---|---|---|---|---|---|",
    ]
    for label, candidates in r["search"].items():
        for c in candidates:
            lines.append(
                f"| {label} | {c['lr']:g} | {c['alpha']:g} | {c['beta']:g} | {c['best_val_mse']:.4f} | "
                f"{c['best_epoch']} / {c['epochs_run']} |"
            )
    lines += ["", "Per seed (test MSE; best epoch / epochs run):", ""]
    lines += ["| seed | distilled | undistilled |", "|---|---|---|"]
    for d, p in zip(d_seeds, p_seeds):
        lines.append(
            f"| {d['seed']} | {d['test']['mse']:.4f} ({d['best_epoch']} / {d['epochs_run']}) | "
            f"{p['test']['mse']:.4f} ({p['best_epoch']} / {p['epochs_run']}) |"
        )
    return lines + [""]


def write_report(out: Path, report: dict, args: argparse.Namespace) -> None:
    write_json(out / "bench_distill.json", report)
    done = [r["dataset"] for r in report["datasets"].values() if r["teacher"]["backbone"] == TEACHER]
    missing = [d for d in args.all_datasets if d not in done]
    others = [k for k, r in report["datasets"].items() if r["teacher"]["backbone"] != TEACHER]
    lines = [
        "# Distillation: an msft-finetuned teacher vs a distilled DMLP student vs the undistilled student",
        "",
        "Commands (in this order; each resumes from the runs the one before left under runs/): "
        + ", ".join(f"`{c}`" for c in report["commands"])
        + "  ",
        f"Machine: {os.cpu_count()} CPU cores shared with other jobs, torch {torch.__version__}, one torch thread "
        f"(load average at start {report['load_average_start'][0]:.1f}); wall time {report['wall_s'] / 60:.0f} min "
        "(this invocation; finished teachers, caches and students are reused).",
        "",
        (
            f"Datasets done (tiny MOIRAI teacher): {', '.join(done) or 'none'}"
            + (f"; **not run yet: {', '.join(missing)}**" if missing else "")
            + (f". Other teacher families: {', '.join(others)}." if others else ".")
            if done or not others
            else f"Teacher families other than the tiny MOIRAI: {', '.join(others)}."
        ),
        "",
        "**Teacher**: a run of `msft-train` with the evidence suite's recipe (`scripts/evidence.py lsf`: 80 steps "
        "of 64 windows, early stopping and checkpoint on the validation MSE): `method=msft` (scales 1, 2, 4), seed 0, "
        "lr_scale 1 unless its section says otherwise (the rate the evidence suite selected on validation for msft "
        "on all five datasets), on the "
        "embedded tiny MOIRAI as shipped (its weights' fingerprint is in each section); loaded with "
        "`msft_runner.train.load_run`; point forecast = the fused mixture mean; features = the finest scale's last "
        "hidden states averaged over its data tokens. Its MSE is scored as the evidence table's (MSE of the mean); "
        "its MAE here is of the mean too (the evidence table's is of the median of 20 paths). Other teacher "
        "families (MOMENT, Time-DPD) use their tiny random-initialised geometries (`configs/backbone/moment_tiny.yaml`, "
        "`time_dpd_tiny.yaml`) finetuned the same way: they show the pipeline is backbone-agnostic, not good "
        "teachers.",
        "",
        "**Students**: TimeDistill's DMLP (moving average 25; trend and seasonal Linear(512, 512) → BatchNorm → ReLU → "
        "Linear(512, 96)), context 512, channel-independent weights, one BatchNorm channel per variate, trained with "
        f"TimeDistill's recipe: batches of {args.batch_size} windows with all their channels, Adam, lr halved after "
        f"every epoch (`type1`), at most {args.max_epochs} epochs, early stopping on the validation MSE with patience "
        f"{args.patience}, the best epoch kept; τ = 0.5, spectral KL averaged over bins, multi-scale MSE pooled by "
        "1/2/4/8, two-layer feature regressor. Deviations from the authors' scripts: context 512 (theirs 720, the "
        "teacher's is 512), ETTm1/ETTm2 train on every 4th window and Weather on every 12th (CPU budget: teacher cache "
        "and 12 trainings per dataset on 2 shared cores)"
        + (
            f"; here every {args.train_stride}-th window on every dataset (`--train-stride`)"
            if args.train_stride
            else ""
        )
        + "; their max epochs is 100.",
        "",
        f"**Search** (validation MSE of seed 0, {len(DISTILLED_GRID)} candidates each): distilled lr × (α = β) over "
        f"{sorted({c[0] for c in DISTILLED_GRID})} × {sorted({c[1] for c in DISTILLED_GRID})}; undistilled lr over "
        f"{[c[0] for c in PLAIN_GRID]}. Seeds 1 and 2 at the selected settings; every student of a seed starts from "
        "the same initialisation. Only selected students are tested: full test split, stride 1, z-scored with train "
        "statistics. Throughput: series per second of `.predict` on one batch of test windows (≈256 series), 1 "
        "thread. Per-epoch validation curves of every student: `val_curves.csv`.",
        "",
    ]
    lines += summary(report)
    for key, result in report["datasets"].items():
        lines += dataset_section(key, result)
    write_text_atomic(out / "bench_distill.md", "\n".join(lines))
    rows = [
        "dataset,teacher,student,lr,alpha,beta,seed,epoch,epoch_lr,train_mse,val_mse,best_epoch",
    ]
    for result in report["datasets"].values():
        dataset, teacher = result["dataset"], result["teacher"]["backbone"]
        seen = set()
        for group in list(result["search"].values()) + list(result["seeds"].values()):
            for c in group:
                if c["name"] in seen:
                    continue
                seen.add(c["name"])
                for epoch, (val, lr, train) in enumerate(zip(c["val_mse"], c["lrs"], c["train"])):
                    rows.append(
                        f"{dataset},{teacher},{c['kind']},{c['lr']:g},{c['alpha']:g},{c['beta']:g},{c['seed']},{epoch},"
                        f"{lr:.6g},{train['mse']:.6f},{val:.6f},{c['best_epoch']}"
                    )
    write_text_atomic(out / "val_curves.csv", "\n".join(rows) + "\n")


def current(datasets: dict[str, dict]) -> dict[str, dict]:
    """The earlier report's sections whose teacher was finetuned from the weights its backbone has now."""
    tags: dict[str, str] = {}
    kept = {}
    for key, r in datasets.items():
        backbone = r.get("teacher", {}).get("backbone")
        if backbone is None or "search" not in r:
            continue
        if backbone not in tags:
            tags[backbone] = weights_tag(backbone)
        if r["teacher"].get("weights") == tags[backbone]:
            kept[key] = r
    return kept


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results" / "distill"))
    p.add_argument("--work-dir", default=str(REPO / "runs" / "bench_distill"), help="caches and students (ignored)")
    p.add_argument("--teacher-experiment", default="distill_teachers", help="teacher runs: runs/<this>/<weights>/...")
    p.add_argument("--teacher-backbone", default=TEACHER, help="backbone config of the teacher (moment_tiny, ...)")
    p.add_argument("--teacher-lr-scale", type=float, default=1.0, help="the teacher run's lr_scale")
    p.add_argument("--data-dir", default=os.environ.get("MSFT_DATA_DIR"))
    p.add_argument("--datasets", nargs="+", default=list(TRAIN_STRIDE))
    p.add_argument("--batch-size", type=int, default=32, help="windows per batch (TimeDistill: 32)")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the first one runs the search")
    p.add_argument(
        "--train-stride",
        type=int,
        default=None,
        help="every N-th training window on every dataset (default: TRAIN_STRIDE)",
    )
    args = p.parse_args(argv)
    args.all_datasets = list(TRAIN_STRIDE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    previous = read_json(out / "bench_distill.json") or {}
    command = "MSFT_DATA_DIR=../shared/data python benchmarks/bench_distill.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = {
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
        "datasets": current(previous.get("datasets", {})),
    }
    earlier = previous.get("commands", []) if report["datasets"] else []  # the commands of sections kept
    report["commands"] = [c for c in earlier if c != command] + [command]
    wall = time.perf_counter()
    for dataset in args.datasets:
        say(f"{dataset}: start ({args.teacher_backbone} teacher)")
        key = report_key(dataset, args.teacher_backbone)
        report["datasets"][key] = Bench(dataset, args, args.teacher_backbone).run()
        order = [report_key(d, b) for b in (TEACHER, "moment_tiny", "time_dpd_tiny") for d in args.all_datasets]
        rank = {name: i for i, name in enumerate(order)}  # the main teacher's datasets first, then other families
        report["datasets"] = dict(sorted(report["datasets"].items(), key=lambda kv: rank.get(kv[0], len(rank))))
        report["wall_s"] = time.perf_counter() - wall
        write_report(out, report, args)
        say(f"{dataset}: done; wrote {out / 'bench_distill.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
