"""Calibration of msft's quantile forecasts on LSF test splits: 10-90% interval coverage and CRPS.

    MSFT_DATA_DIR=../shared/data python -m benchmarks.quantiles --threads 1

Models (each trained with the runner's Lightning loop, `msft_runner.train.fit`, on the dataset's
train split with early stopping on its validation split; nothing is selected on the test split):

- ``moirai_zero_shot``: the embedded tiny MOIRAI as it is (``scales=[1]``), quantiles of 100 sample paths;
- ``moirai_msft``: the tiny MOIRAI finetuned with msft (scales 1, 2, 4), quantiles of 100 *fused* paths;
- ``moment_quantile_heads``: a MOMENT with a tiny random encoder (the MOMENT architecture, not its
  weights: the pretrained checkpoints are not reachable offline), finetuned with msft (scales 1, 2, 4)
  and ``quantile_levels`` 0.1..0.9: one head output per level and scale, pinball loss, fused per level.

Test windows: S mode (each channel its own series), context 512, H=96, every ``--stride``-th window of
the test split (default 96: non-overlapping forecasts). Coverage is the share of observed test points
inside [q0.1, q0.9] (nominal 0.8); CRPS is GluonTS's mean weighted quantile loss over 0.1..0.9, both
on the original units. Writes results/ecosystem/quantiles.{md,json}, after every model (resumable:
finished rows are kept unless ``--fresh``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))
MODELS = ("moirai_zero_shot", "moirai_msft", "moment_quantile_heads")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["ETTh1", "ETTm1"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--stride", type=int, default=96)
    p.add_argument("--steps", type=int, default=60, help="training batches per epoch (2 epochs)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--out", type=Path, default=Path("results/ecosystem"))
    p.add_argument("--merge-only", action="store_true", help="only merge --also into the table, run nothing")
    p.add_argument(
        "--also",
        type=Path,
        nargs="*",
        default=[],
        help="quantiles.json files of runs made in parallel (other --models): their rows are kept",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "quantiles.json"
    results = {} if args.fresh or not store.is_file() else json.loads(store.read_text())["results"]
    for other in args.also:
        results.update(json.loads(other.read_text())["results"])
    if args.merge_only:
        write(args, argv, results)
        return results
    for dataset in args.datasets:
        for name in args.models:
            key = f"{dataset}/{name}"
            if key in results:
                print("done already:", key, results[key], flush=True)
                continue
            start = time.time()
            model, training = train(name, dataset, args)
            row = evaluate(model, dataset, args)
            row.update(training, seconds=round(time.time() - start, 1))
            results[key] = row
            print(key, row, flush=True)
            write(args, argv, results)
    return results


def train(name: str, dataset: str, args) -> tuple[torch.nn.Module, dict]:
    """Build ``name`` on ``dataset`` and train it with the runner (nothing trains for zero-shot)."""
    from hydra import compose, initialize_config_dir

    from msft_runner.cli import CONFIG_DIR
    from msft_runner.methods import build_model
    from msft_runner.module import ForecastModule
    from msft_runner.train import build_datamodule, fit, plain

    overrides = [
        f"data={dataset}",
        f"data.context_length={args.context}",
        f"data.horizon={args.horizon}",
        f"data.batch_size={args.batch_size}",
        f"data.eval_batch_size={args.batch_size}",
        "trainer=cpu",
        "trainer.max_epochs=2",
        f"trainer.limit_train_batches={args.steps}",
        "trainer.limit_val_batches=16",
        "trainer.enable_progress_bar=false",
        f"seed={args.seed}",
    ]
    if name.startswith("moirai"):
        overrides += ["backbone=tiny_moirai", "method=" + ("zero_shot" if name == "moirai_zero_shot" else "msft")]
    else:
        overrides += [
            "backbone=moment_tiny",  # the MOMENT architecture at CPU cost: a tiny random T5 encoder
            f"backbone.seed={args.seed}",
            "method=msft",
            "+method.options.quantile_levels=" + "[" + ",".join(map(str, LEVELS)) + "]",
            "data.lr.head_lr=1e-3",
        ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    data = build_datamodule(cfg.data, cfg.seed)
    data.setup("fit")
    from msft_runner.backbones import build_backbone

    backbone, wrap_options = build_backbone(cfg.backbone)
    method = cfg.method
    built = build_model(
        backbone,
        method.kind,
        cfg.data.horizon,
        plain(method.get("options")),
        plain(method.get("peft")),
        2 * args.steps,
        wrap_options,
    )
    if not built.trains:
        return built.model.eval(), {"steps": 0}
    module = ForecastModule(built.model, plain(cfg.data.lr), cfg.weight_decay, built.tuner)
    with tempfile.TemporaryDirectory() as tmp:
        record = fit(cfg, module, data, Path(tmp))
    return built.model.eval(), {"steps": record["steps"], "val_loss": record["val_loss"]}


@torch.no_grad()
def evaluate(model, dataset: str, args) -> dict:
    from msft.data import prepare_lsf
    from msft.protocols.metrics import QUANTILES, quantile_loss

    data = prepare_lsf(dataset, args.context)
    windows = data.windows("test", args.horizon, "S", stride=args.stride)
    quantiles, targets = [], []
    for batch in windows.batches(64):
        past = batch["past_target"]  # (batch, L, 1), z-scored
        if model.spec.probabilistic:
            q = model.predict_quantiles(past, args.horizon, LEVELS, num_samples=args.samples)
        else:
            q = model.predict_quantiles(past, args.horizon, LEVELS)
        quantiles.append(q[..., 0].double().numpy())  # (batch, levels, H)
        targets.append(batch["future_target"][..., 0].double().numpy())
    q, y = np.concatenate(quantiles), np.concatenate(targets)
    # back to the original units: the channel of window i is i // windows_per_channel (S mode)
    channel = np.arange(len(y)) // windows.num_time_windows
    std, mean = data.std[channel][:, None], data.mean[channel][:, None]
    y, q = y * std + mean, q * std[:, None] + mean[:, None]
    assert QUANTILES == LEVELS
    inside = (y >= q[:, 0]) & (y <= q[:, -1])
    crps = np.mean([quantile_loss(y, q[:, i], level).sum() / np.abs(y).sum() for i, level in enumerate(LEVELS)])
    crossing = float((np.diff(q, axis=1) < 0).mean())
    return {
        "coverage_10_90": float(inside.mean()),
        "crps": float(crps),
        "windows": int(len(y)),
        "quantile_crossings": crossing,
    }


def write(args, argv, results: dict) -> None:
    from msft.config import MSFTConfig

    defaults = MSFTConfig()
    command = (
        f"python -m benchmarks.quantiles --datasets {' '.join(args.datasets)} --context {args.context} "
        f"--horizon {args.horizon} --stride {args.stride} --steps {args.steps} --batch-size {args.batch_size} "
        f"--samples {args.samples} --seed {args.seed} --threads {args.threads}"
    )
    payload = {
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s)",
        "results": results,
    }
    (args.out / "quantiles.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# Quantile calibration on LSF test splits",
        "",
        f"Generated by: `MSFT_DATA_DIR=../shared/data {command}` ({payload['machine']}).",
        "",
        f"S mode, context {args.context}, H={args.horizon}, test windows every {args.stride} steps; original units. Coverage: share of test "
        "points inside [q0.1, q0.9] (nominal 0.80). CRPS: GluonTS's mean weighted quantile loss over "
        "0.1..0.9 (lower is better). Rows are resumable: a run keeps the rows already in quantiles.json "
        "(models run as parallel processes are merged with --also). Training: 2 epochs of at most "
        f"{args.steps} batches of {args.batch_size} windows each, early stopping on validation; the steps taken "
        "are in the table. MOIRAI rows: the fused paths of `predict_samples` with msft's defaults "
        f"(sample_fusion={defaults.sample_fusion}, coarse_paths={defaults.coarse_paths}), no conformal "
        "calibration (results/pf/calibration.md measures `MSFTModel.calibrate`).",
        "",
        "| dataset | model | coverage 10-90% | CRPS | windows | training steps | crossings |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in sorted(
        results.items(), key=lambda item: (item[0].split("/")[0], MODELS.index(item[0].split("/")[1]))
    ):
        dataset, name = key.split("/")
        lines.append(
            f"| {dataset} | {name} | {row['coverage_10_90']:.3f} | {row['crps']:.4f} | {row['windows']} | "
            f"{row.get('steps', 0)} | {row['quantile_crossings']:.3f} |"
        )
    missing = [f"{d}/{m}" for d in args.datasets for m in MODELS if f"{d}/{m}" not in results]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)} (run the command above; finished rows are kept)."]
    lines += ["", "Models: see the docstring of `benchmarks/quantiles.py`."]
    (args.out / "quantiles.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
