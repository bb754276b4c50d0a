"""Where did MSFT's learned fusion go, and is it a good place? Validation MSE under other weights.

    bash scripts/main.sh        # makes runs/main (the main job)
    MSFT_DATA_DIR=../shared/data python -m benchmarks.fusion_diagnostic --run runs/main/ETTh1_H96/tiny_moirai/msft/seed0

Loads a finished msft run, then scores its fused forecast on the **validation** split (LSF, S mode)
with the learned fusion weights, uniform weights and each scale alone (everything else unchanged).
MSFT trains the fusion logits with the loss ``Σ_s w_s · loss_s`` (docs/design.md §2.6): the gradient moves
weight towards the scale whose own loss is lowest, and a coarse scale's pooled target is smoother,
so its loss is lower whether or not its forecast helps the fused one.
Writes results/pretrained/<--name>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.tiny_moirai_common import DATA_DIR, machine_line, write_table


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished msft run directory (runs/.../msft/seedN)")
    p.add_argument("--dataset", default="ETTh1")
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--stride", type=int, default=4, help="every STRIDE-th validation window")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/pretrained"))
    p.add_argument("--name", default="fusion_diagnostic", help="output file stem")
    p.add_argument(
        "--coarse-paths",
        nargs="+",
        default=["repeat"],
        help="score each setting with each of these `coarse_paths` (how coarse forecasts are up-sampled)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from msft.data.lsf import prepare_lsf
    from msft_runner.train import load_run

    model = load_run(args.run).model
    windows = prepare_lsf(args.dataset, args.context, data_dir=DATA_DIR).windows(
        "val", args.horizon, "S", stride=args.stride
    )
    logits = model.msft_fusion.msft_fusion_logits
    learned = logits.detach().clone()
    n = len(model.scales)
    settings = {"learned": learned, "uniform": torch.zeros(n)}
    for idx, scale in enumerate(model.scales):
        alone = torch.full((n,), -1e4)
        alone[idx] = 0.0
        settings[f"scale {scale} alone"] = alone

    results = {"weights": dict(zip(map(str, model.scales), torch.softmax(learned, 0).tolist())), "val_mse": {}}
    saved_coarse = model.config.coarse_paths
    for coarse in args.coarse_paths:
        model.set_coarse_paths(coarse)
        for setting, value in settings.items():
            name = setting if args.coarse_paths == ["repeat"] else f"{setting}, coarse_paths={coarse}"
            if coarse != "repeat" and setting.startswith("scale 1 alone"):
                continue  # scale 1 alone is the same forecast under every up-sampling
            with torch.no_grad():
                logits.copy_(value)
                se = count = 0.0
                for batch in windows.batches(1024):
                    error = model.predict(batch["past_target"], args.horizon) - batch["future_target"]
                    se, count = se + float(error.double().square().sum()), count + error.numel()
            results["val_mse"][name] = se / count
            print(name, results["val_mse"][name], flush=True)
    model.set_coarse_paths(saved_coarse)
    with torch.no_grad():
        logits.copy_(learned)

    command = "MSFT_DATA_DIR=../shared/data python -m benchmarks.fusion_diagnostic " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    weights = ", ".join(f"scale {s}: {w:.3f}" for s, w in results["weights"].items())
    rows = [[name, f"{mse:.4f}"] for name, mse in results["val_mse"].items()]
    notes = [
        f"Run: `{args.run}`; learned fusion weights {weights}.",
        f"{args.dataset} validation split, S mode, H={args.horizon}, context {args.context}, every "
        f"{args.stride}-th window ({len(windows)} windows); point forecast as the run's (`predict`).",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(
        args.out / f"{args.name}.md",
        "MSFT fusion weights: learned vs alternatives (validation)",
        command,
        ["fusion weights", "validation MSE"],
        rows,
        notes,
    )
    (args.out / f"{args.name}.json").write_text(
        json.dumps({"command": command, "machine": machine_line(), "run": str(args.run), **results}, indent=1) + "\n"
    )
    return results


if __name__ == "__main__":
    main()
