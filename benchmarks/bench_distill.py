"""Teacher vs distilled DMLP student vs the same student undistilled, ETTh1 / ETTm1, H=96, mode S.

    MSFT_DATA_DIR=../shared/data python benchmarks/bench_distill.py --out results/distill

Teacher: the embedded tiny MOIRAI wrapped with ``msft.wrap(..., scales=[1, 2, 4], patch_size=32,
point_forecast="mean")`` and finetuned on the dataset's train split with the recipe of
``benchmarks/tiny_moirai_finetune.py`` (AdamW on ``model.loss``, random train windows, warm-up then
cosine, grad clip 1); its features are the finest scale's last hidden states averaged over its
real data tokens (`MSFTModel.forward_features`). Students: TimeDistill's DMLP (the default
`msft.distill.MLPStudent`), all from the same initialisation per seed, trained on the same
strided train windows the teacher is cached over, best validation epoch kept. Every model is scored
with `msft.protocols.evaluate_lsf` on the full test split (stride 1). Throughput: windows per second
of ``.predict`` on one batch of 256 test windows at one torch thread (the machine is shared).

The teacher is finetuned once (``--seed``); the students run for every seed in ``--seeds`` against
it (the cache is reused). Results are written after every dataset, so a partial run leaves a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msft  # noqa: E402
from benchmarks.tiny_moirai_finetune import finetune  # noqa: E402
from msft.data import prepare_lsf  # noqa: E402
from msft.distill import DistillConfig  # noqa: E402
from msft_backbones.moirai import load_tiny_moirai  # noqa: E402
from msft_runner.distill import markdown_table, run_distill  # noqa: E402

#: The ablation row: distillation of the predictions only (no feature term).
PREDICTIONS_ONLY = "student (distilled, predictions only: β=0)"
PLAIN = "student (no distillation)"
DISTILLED = "student (distilled)"

SETTINGS = {  # dataset: window stride of the students' train / validation windows and the teacher cache (~7k each)
    "ETTh1": 8,
    "ETTm1": 32,
}


def train_teacher(dataset: str, args: argparse.Namespace, log: dict) -> msft.MSFTModel:
    """The tiny MOIRAI, msft-wrapped at scales [1, 2, 4] and finetuned on the train split."""
    data = prepare_lsf(dataset, args.context_length, data_dir=args.data_dir)
    model = msft.wrap(load_tiny_moirai(), scales=[1, 2, 4], patch_size=args.patch_size, point_forecast="mean")
    start = time.perf_counter()
    losses = finetune(
        model,
        data.windows("train", args.horizon, "S"),
        args.teacher_steps,
        args.teacher_batch,
        args.teacher_lr,
        args.teacher_lr,
        args.seed,
    )
    log.update(finetune_s=time.perf_counter() - start, first_loss=losses[0], last_loss=sum(losses[-10:]) / 10)
    return model.eval()


def seed_table(seeds: dict) -> str:
    """Test MSE of each model, mean ± std over the student seeds (same teacher and cache)."""
    names = list(next(iter(seeds.values())))
    lines = [
        f"Students over seeds {list(seeds)} (test MSE, mean ± std; wins = seeds where the student beats the "
        "undistilled one / the teacher):",
        "",
        "| student | MSE mean ± std | wins vs undistilled | wins vs teacher |",
        "|---|---|---|---|",
    ]
    plain = [by_model[PLAIN] for by_model in seeds.values()]
    teacher = [by_model["teacher"] for by_model in seeds.values()]
    for name in names:
        if name == "teacher":
            continue
        values = [by_model[name] for by_model in seeds.values()]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        vs_plain = "" if name == PLAIN else f"{sum(v < p for v, p in zip(values, plain))}/{len(values)}"
        vs_teacher = f"{sum(v < t for v, t in zip(values, teacher))}/{len(values)}"
        lines.append(f"| {name} | {statistics.mean(values):.4f} ± {std:.4f} | {vs_plain} | {vs_teacher} |")
    return "\n".join(lines)


def write_report(out: Path, report: dict, args: argparse.Namespace) -> None:
    (out / "bench_distill.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Distillation: msft-finetuned tiny MOIRAI teacher vs distilled DMLP student vs undistilled student",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {os.cpu_count()} CPU cores (shared with other jobs), torch {torch.__version__}, one torch thread "
        f"for training, evaluation and throughput (load average at start {report['load_average_start'][0]:.1f}"
        + (f", at end {report['load_average_end'][0]:.1f}" if "load_average_end" in report else "")
        + f"); wall time so far {report['wall_s'] / 60:.1f} min.",
        "",
        f"Teacher: the embedded tiny MOIRAI, `msft.wrap(scales=[1, 2, 4], patch_size={args.patch_size})`, finetuned "
        f"{args.teacher_steps} AdamW steps × {args.teacher_batch} train windows (lr {args.teacher_lr}, warm-up + cosine, "
        "clip 1; `benchmarks/tiny_moirai_finetune.py`'s recipe), point forecast = fused mixture mean; features = the "
        "finest scale's last hidden states averaged over its real data tokens (`MSFTModel.forward_features`). "
        f"Students: DMLP (TimeDistill's: moving average {args.moving_avg}, trend and seasonal Linear(L, {args.hidden}) → "
        f"BatchNorm → ReLU → Linear), context {args.context_length}, {args.epochs} epochs of Adam (lr {args.lr}, "
        f"batch {args.batch_size}), best validation epoch kept, same initialisation and windows for all students of a "
        "seed; distillation α=β=1, τ=0.5, spectral KL averaged over bins, multi-scale MSE pooled by 1/2/4/8 dropping "
        "remainders, two-layer feature regressor (all TimeDistill's). MSE/MAE: full test split, stride 1, "
        "z-scored with train statistics.",
        "",
    ]
    for dataset, result in report["datasets"].items():
        lines += [
            f"## {dataset}",
            "",
            markdown_table(result),
            "",
            f"Teacher finetuning: {result['teacher_training']['finetune_s']:.0f} s. Students trained on "
            f"{result['setup']['train_windows']:,} windows (stride {result['setup']['train_stride']}), best epoch "
            f"chosen on {result['setup']['val_windows']:,} validation windows (stride {result['setup']['val_stride']}); best "
            f"epochs (seed {args.seeds[0]}) {result['setup']['best_epoch']}. Speed-up column: 1-thread "
            "throughput over the teacher's.",
            "",
            seed_table(result["seeds"]),
            "",
        ]
    (out / "bench_distill.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(REPO / "results" / "distill"))
    p.add_argument("--work-dir", default=str(REPO / "runs" / "bench_distill"), help="teacher cache (not committed)")
    p.add_argument("--data-dir", default=os.environ.get("MSFT_DATA_DIR"))
    p.add_argument("--datasets", nargs="+", default=list(SETTINGS))
    p.add_argument("--context-length", type=int, default=512)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--teacher-steps", type=int, default=80)
    p.add_argument("--teacher-batch", type=int, default=32)
    p.add_argument("--teacher-lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--moving-avg", type=int, default=25)
    p.add_argument("--ablation", action="store_true", help="also a student distilled on predictions only (β=0)")
    p.add_argument("--seed", type=int, default=0, help="the teacher's finetuning seed")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="student seeds (initialisation, batch order)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # per-epoch progress
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "MSFT_DATA_DIR=../shared/data python benchmarks/bench_distill.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = {
        "command": command,
        "cpu_count": os.cpu_count(),
        "torch_threads": 1,
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
        "datasets": {},
    }
    wall = time.perf_counter()
    student = {"arch": "dmlp", "hidden": args.hidden, "moving_avg": args.moving_avg}
    variants = {PREDICTIONS_ONLY: DistillConfig(beta=0.0)} if args.ablation else {}
    for dataset in args.datasets:
        log: dict = {}
        teacher = train_teacher(dataset, args, log)
        print(dataset, "teacher", log, flush=True)
        result, seeds = None, {}
        for seed in args.seeds:
            run = run_distill(
                teacher,
                dataset,
                args.horizon,
                args.context_length,
                "S",
                args.data_dir,
                SETTINGS[dataset],
                student=student,
                distill=DistillConfig(),
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=seed,
                cache_dir=Path(args.work_dir),
                teacher_tag=f"tiny_moirai_msft_seed{args.seed}",
                throughput_threads=1,
                variants=variants,
                evaluate_teacher=result is None,
                val_stride=SETTINGS[dataset],
            )
            if result is None:
                result = run
            teacher_mse = result["rows"][0]["mse"]
            seeds[seed] = {
                "teacher": teacher_mse,
                **{row["model"]: row["mse"] for row in run["rows"] if row["model"] != "teacher"},
            }
            print(dataset, seed, json.dumps(seeds[seed]), f"{(time.perf_counter() - wall) / 60:.1f} min", flush=True)
        result["seeds"] = seeds
        result["teacher_training"] = log
        result["teacher"] = {
            "backbone": "tiny MOIRAI (embedded)",
            "scales": [1, 2, 4],
            "patch_size": args.patch_size,
            "steps": args.teacher_steps,
            "batch": args.teacher_batch,
            "lr": args.teacher_lr,
            "seed": args.seed,
        }
        report["datasets"][dataset] = result
        report["wall_s"] = time.perf_counter() - wall
        write_report(out, report, args)  # after every dataset: a partial run leaves a table
    report["load_average_end"] = os.getloadavg()
    write_report(out, report, args)
    print((out / "bench_distill.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
