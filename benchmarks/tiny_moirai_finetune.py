"""Finetuning comparison on the shipped tiny MOIRAI: zero-shot, full, LoRA and MSFT [1, 2, 4].

    MSFT_DATA_DIR=../shared/data python -m benchmarks.tiny_moirai_finetune --datasets ETTh1 ETTh2 ...

Every method goes through ``msft.wrap`` on a fresh copy of the backbone (the MOIRAI spec, patch
size ``--patch-size`` at every scale) and trains on ``model.loss`` (MOIRAI's mixture NLL on the
pooled future of each scale, fusion-weighted):

- zero-shot: ``wrap(m, scales=[1], adapters=False, lora=False, c2f=False, f2c=False,
  learned_fusion=False)``, the backbone's own forecast; not trained.
- full: the same wrapper with every backbone parameter trainable (lr ``--full-lr``); full-fast: the
  same with the backbone at ``--lr`` (the runner's main job uses one lr for everything, and there
  full finetuning does much better than at 1e-4).
- LoRA: peft LoRA on q/k/v (r=16, alpha=32, dropout 0.05: the paper's LoRA baseline), built by
  the runner's ``msft_runner.methods.build_model`` like every other method here.
- MSFT: ``wrap(m, scales=[1, 2, 4])`` (adapters, per-scale LoRA r=16 alpha=16, C2F/F2C, learned fusion).
- msft-fused (only with ``--methods``): MSFT with ``fusion_objective="fused"``.

Same budget for every method: ``--steps`` AdamW steps of ``--batch-size`` windows drawn at random
(seeded) from the train split (S mode, context ``--context``), linear warm-up then cosine decay.
Test: the full LSF test split, stride 1 (``--test-stride D=k`` subsamples dataset D, off-protocol);
point forecast = mean of the fused forecast distribution (``--point median``: median of ``--samples``
fused sample paths, msft's ``predict``). Writes results/pretrained/<--name>.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import msft_backbones.moirai  # noqa: F401  (registers the MOIRAI spec even where the entry point is not installed)
from benchmarks.tiny_moirai_common import DATA_DIR, DATASETS, SampleMedian, machine_line, write_table
from msft.data.lsf import prepare_lsf
from msft.protocols import evaluate_lsf

# method -> (the runner's method kind, its msft options): every method is built by the runner's
# `build_model`, so "LoRA" here is the same peft LoRA as in every msft-train table.
METHODS = {
    "zero-shot": ("zero_shot", None),
    "full": ("full", None),
    "full-fast": ("full", None),  # full finetuning with the backbone at --lr instead of --full-lr
    "lora": ("lora", None),
    "msft": ("msft", dict(scales=[1, 2, 4])),
    # The fusion logits fitted to the fused forecast instead of sum_s w_s * loss_s (not run by default).
    "msft-fused": ("msft", dict(scales=[1, 2, 4], fusion_objective="fused")),
}
#: the LSF baseline LoRA of the paper (peft, q/k/v): r=16, alpha=32, dropout 0.05.
PEFT_LORA = dict(r=16, alpha=32, dropout=0.05)
DEFAULT_METHODS = ["zero-shot", "full", "full-fast", "lora", "msft"]


def evaluate(forecaster, data, horizon: int, context: int, stride: int, batch_size: int) -> dict:
    """LSF test metrics; ``stride=1`` is the protocol (evaluate_lsf), a larger stride a cheaper subsample."""
    if stride == 1:
        return evaluate_lsf(forecaster, data, horizon=horizon, context_length=context, mode="S", batch_size=batch_size)
    windows = data.windows("test", horizon, "S", stride=stride)
    squared = absolute = 0.0
    with torch.no_grad():
        for batch in windows.batches(batch_size):
            error = (forecaster.predict(batch["past_target"], horizon) - batch["future_target"]).double()
            squared, absolute = squared + float(error.square().sum()), absolute + float(error.abs().sum())
    count = horizon * len(windows)
    return {"mse": squared / count, "mae": absolute / count, "windows": len(windows)}


def build(method: str, backbone, patch_size: int, horizon: int, point: str = "mean"):
    """A fresh copy of ``backbone`` with ``method`` applied by the runner's `build_model`."""
    from msft_runner.methods import build_model

    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {list(METHODS)}")
    kind, options = METHODS[method]
    return build_model(
        copy.deepcopy(backbone),
        kind,
        horizon,
        options,
        peft=PEFT_LORA,
        wrap_options=dict(patch_size=patch_size, point_forecast=point),
    ).model


def finetune(model, windows, steps: int, batch_size: int, lr: float, full_lr: float, seed: int) -> list[float]:
    """AdamW on ``model.loss`` over random train windows; returns the loss every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    groups = model.parameter_groups(lr=lr, xscale_lr=lr, head_lr=full_lr, scale_weight_lr=lr)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    base = [g["lr"] for g in optimizer.param_groups]
    warmup = max(1, steps // 10)
    losses = []
    model.train()
    for step in range(steps):
        factor = (
            (step + 1) / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        )
        for group, rate in zip(optimizer.param_groups, base):
            group["lr"] = rate * factor
        batch = windows[torch.randint(len(windows), (batch_size,), generator=generator)]
        loss = model.loss(
            batch["past_target"], batch["future_target"], batch["past_observed"], batch["future_observed"]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def run_one(backbone, dataset: str, method: str, seed: int, args) -> dict:
    data = prepare_lsf(dataset, args.context, data_dir=DATA_DIR)
    model = build(method, backbone, args.patch_size, args.horizon, args.point)
    t0 = time.time()
    losses = []
    if method != "zero-shot":
        full_lr = args.lr if method == "full-fast" else args.full_lr
        losses = finetune(
            model, data.windows("train", args.horizon, "S"), args.steps, args.batch_size, args.lr, full_lr, seed
        )
    train_s = time.time() - t0
    # point_forecast="mean": the fused mixture mean, exact and ~5x cheaper than a sampled median.
    forecaster = model if args.point == "mean" else SampleMedian(model, args.samples, seed)
    stride = args.test_stride.get(dataset, 1)
    result = evaluate(forecaster, data, args.horizon, args.context, stride, args.eval_batch_size)
    result["test_stride"] = stride
    result |= {
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(time.time() - t0 - train_s, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": sum(losses[-10:]) / 10 if losses else None,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad) if losses else 0,
    }
    return result


def summarise(runs: list[dict]) -> dict:
    mses = [r["mse"] for r in runs]
    maes = [r["mae"] for r in runs]
    return {
        "mse_mean": statistics.mean(mses),
        "mse_std": statistics.stdev(mses) if len(mses) > 1 else 0.0,
        "mae_mean": statistics.mean(maes),
        "mae_std": statistics.stdev(maes) if len(maes) > 1 else 0.0,
        "seeds": len(runs),
    }


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--checkpoint", type=Path, default=None, help="MOIRAI directory (default: the shipped one)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="adapters, LoRA, aggregation, fusion")
    p.add_argument("--full-lr", type=float, default=1e-4, help="backbone weights in full finetuning")
    p.add_argument(
        "--point",
        choices=("mean", "median"),
        default="mean",
        help="point forecast: fused mixture mean, or median of --samples fused sample paths",
    )
    p.add_argument("--samples", type=int, default=100)
    p.add_argument(
        "--test-stride",
        nargs="*",
        default=[],
        metavar="DATASET=STRIDE",
        help="evaluate DATASET on every STRIDE-th test window only (off-protocol, for lack of CPU)",
    )
    p.add_argument("--eval-batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results/pretrained"))
    p.add_argument("--name", default="finetune")
    return p


def load_backbone(checkpoint: Path | None):
    if checkpoint is None:
        from msft_backbones.moirai import load_tiny_moirai

        return load_tiny_moirai()
    return msft_backbones.moirai.load_moirai(checkpoint)


def compare(args, argv: list[str] | None, module_name: str, title: str) -> dict:
    torch.set_num_threads(args.threads)
    args.started = time.time()
    args.test_stride = {k: int(v) for k, v in (item.split("=") for item in args.test_stride)}
    backbone = load_backbone(args.checkpoint)
    results: dict[str, dict] = {}
    for dataset in args.datasets:
        results[dataset] = {}
        for method in args.methods:
            seeds = [args.seeds[0]] if method == "zero-shot" else args.seeds
            runs = []
            for seed in seeds:
                runs.append(run_one(backbone, dataset, method, seed, args))
                print(dataset, method, seed, runs[-1], flush=True)
            results[dataset][method] = {"runs": runs, **summarise(runs)}
        write_results(args, argv, module_name, title, results)  # after every dataset: partial tables survive
    return results


def write_results(args, argv: list[str] | None, module_name: str, title: str, results: dict) -> None:
    command = f"MSFT_DATA_DIR=../shared/data python -m {module_name} " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    header = ["dataset"] + [f"{m} MSE" for m in args.methods] + ["best"]
    rows = []
    results = {d: r for d, r in results.items() if set(r) == set(args.methods)}
    for dataset, row in results.items():
        cells = []
        for method in args.methods:
            s = row[method]
            cells.append(f"{s['mse_mean']:.4f}" if s["seeds"] == 1 else f"{s['mse_mean']:.4f} ± {s['mse_std']:.4f}")
        best = min(args.methods, key=lambda m: row[m]["mse_mean"])
        rows.append([dataset] + cells + [best])
    header_mae = ["dataset"] + [f"{m} MAE" for m in args.methods]
    rows_mae = [
        [d]
        + [
            f"{r[m]['mae_mean']:.4f}" + ("" if r[m]["seeds"] == 1 else f" ± {r[m]['mae_std']:.4f}")
            for m in args.methods
        ]
        for d, r in results.items()
    ]
    notes = [
        f"LSF protocol: S mode, H={args.horizon}, context {args.context}, train-split z-scoring.",
        f"Budget per finetuned run: {args.steps} AdamW steps × {args.batch_size} random train windows, "
        f"warm-up {max(1, args.steps // 10)} steps then cosine; lr {args.lr} (adapters, LoRA, aggregation, "
        f"fusion), {args.full_lr} (backbone weights, full finetuning; {args.lr} in full-fast); grad-norm clip 1.",
        f"Finetuned methods: mean ± std over seeds {args.seeds}; zero-shot is one run (deterministic with "
        "the mean point forecast).",
        f"Wall time of this script: {(time.time() - args.started) / 60:.1f} min.",
        (
            "Point forecast: mean of the fused forecast distribution (fusion of each scale's mixture mean)"
            if args.point == "mean"
            else f"Point forecast: median of {args.samples} fused sample paths"
        )
        + f"; patch size {args.patch_size} at every scale.",
        "Test: full split, stride 1 (the LSF protocol)"
        + (
            ""
            if not args.test_stride
            else ", except "
            + ", ".join(
                f"{d} every {k}-th window (off-protocol subsample, for lack of CPU)"
                for d, k in args.test_stride.items()
            )
        )
        + ".",
        "LoRA = peft LoRA on q/k/v (r=16, alpha=32, dropout 0.05), the runner's method; MSFT = msft.wrap defaults, scales [1, 2, 4].",
    ]
    extra = ["MAE:", "", "| " + " | ".join(header_mae) + " |", "|" + "---|" * len(header_mae)]
    extra += ["| " + " | ".join(r) + " |" for r in rows_mae]
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(args.out / f"{args.name}.md", title, command, header, rows, notes, extra)
    (args.out / f"{args.name}.json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": machine_line(),
                "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.split("\n\n")[0]).parse_args(argv)
    return compare(
        args, argv, "benchmarks.tiny_moirai_finetune", f"Tiny MOIRAI finetuning comparison (LSF, H={args.horizon})"
    )


if __name__ == "__main__":
    main()
