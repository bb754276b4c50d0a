"""``msft-distill``: distil a teacher into an MLP student on an LSF dataset.

    msft-distill --teacher runs/teacher --dataset ETTh1 --horizon 96 --context-length 336 \\
        --data-dir /path/to/data --out results/distill/etth1

``--teacher`` is a directory written by `msft.distill.save_teacher`, ``last_value`` or
``seasonal_naive:PERIOD``. Writes ``result.json``, ``result.md`` and the distilled ``student/``
(load it with `msft.distill.load_student`) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch


def build_teacher(spec: str) -> Any:
    from msft.protocols import LastValue, SeasonalNaive

    if spec == "last_value":
        return LastValue()
    if spec.startswith("seasonal_naive:"):
        period = spec.split(":", 1)[1]
        if not period.isdigit() or int(period) < 1:
            raise ValueError(f"--teacher {spec!r}: expected seasonal_naive:PERIOD with a positive integer period")
        return SeasonalNaive(int(period))
    if Path(spec).is_dir():
        from msft.distill.teacher import load_teacher

        return load_teacher(spec)
    raise ValueError(f"--teacher {spec!r}: expected a save_teacher directory, 'last_value' or 'seasonal_naive:PERIOD'")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msft-distill", description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--dataset", default="ETTh1")
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--context-length", type=int, default=336)
    p.add_argument("--mode", default="S", choices=["S", "M"])
    p.add_argument("--data-dir", default=None, help="default: $MSFT_DATA_DIR")
    p.add_argument("--train-stride", type=int, default=1)
    p.add_argument(
        "--arch",
        default="dmlp",
        choices=["dmlp", "mlp"],
        help="student: TimeDistill's DMLP (trend/seasonal MLPs, default) or a plain MLP",
    )
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--moving-avg", type=int, default=25, help="DMLP: kernel of the trend's moving average (odd)")
    p.add_argument("--num-layers", type=int, default=1, help="MLP: hidden layers")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=0.5)
    p.add_argument(
        "--period-reduction",
        default="mean",
        choices=["mean", "sum"],
        help="the spectral KL averaged over frequency bins (default, as TimeDistill's code) or summed",
    )
    p.add_argument(
        "--scale-pooling",
        default="drop",
        choices=["drop", "partial"],
        help="multi-scale term: drop a window that does not fit at the end (default, as TimeDistill) or average it",
    )
    p.add_argument(
        "--regressor",
        default="mlp",
        choices=["mlp", "linear"],
        help="teacher-to-student feature map: Linear-ReLU-Linear (default, as TimeDistill) or one Linear",
    )
    p.add_argument("--no-period", action="store_true", help="switch the multi-period (spectral KL) term off")
    p.add_argument("--no-scale", action="store_true", help="switch the multi-scale (pooled MSE) term off")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--lr-schedule",
        default="constant",
        choices=["constant", "type1"],
        help="constant, or TimeDistill's type1 (halved after every epoch; their recipe with --lr 0.01)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a lower validation MSE (TimeDistill: 5; default: never)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--cache-dir", default=None, help="keep the teacher's outputs here between runs")
    p.add_argument("--out", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    from msft.distill.losses import DistillConfig
    from msft_runner.distill import markdown_table, run_distill

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    distill = DistillConfig(
        alpha=args.alpha,
        beta=args.beta,
        tau=args.tau,
        period=not args.no_period,
        scale=not args.no_scale,
        period_reduction=args.period_reduction,
        scale_pooling=args.scale_pooling,
        regressor=args.regressor,
    )
    teacher = build_teacher(args.teacher)
    result = run_distill(
        teacher,
        args.dataset,
        args.horizon,
        args.context_length,
        args.mode,
        args.data_dir,
        args.train_stride,
        student={
            "arch": args.arch,
            "hidden": args.hidden,
            "moving_avg": args.moving_avg,
            "num_layers": args.num_layers,
            "dropout": args.dropout,
        },
        distill=distill,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        patience=args.patience,
        seed=args.seed,
        cache_dir=args.cache_dir,
        teacher_tag=Path(args.teacher).name.replace(":", "-"),
        out_dir=args.out,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result["command"] = "msft-distill " + " ".join(sys.argv[1:] if argv is None else argv)
    result["torch_threads"] = torch.get_num_threads()
    (out / "result.json").write_text(json.dumps(result, indent=2))
    table = markdown_table(result)
    (out / "result.md").write_text(f"Command: `{result['command']}`\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
