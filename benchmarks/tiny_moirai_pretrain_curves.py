"""Curves of a tiny-MOIRAI pretraining stage from its ``train_log.json``: the training loss (smoothed)
and the held-out synthetic loss at each snapshot, as a PNG and a markdown table.

    python -m benchmarks.tiny_moirai_pretrain_curves --log backbones/moirai/tiny_moirai_train_logs/stage5.json \\
        --name stage5_curves --out results/pretrained
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` logged points (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="a stage's train_log.json")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=Path("results/pretrained"))
    parser.add_argument("--window", type=int, default=20, help="logged points in the trailing mean")
    args = parser.parse_args(argv)
    log = json.loads(args.log.read_text())
    steps = np.array([h["step"] for h in log["history"]])
    loss = np.array([h["loss"] for h in log["history"]])
    val = log.get("validation", [])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps, loss, color="0.8", lw=0.8, label="training loss (every logged step)")
    ax.plot(steps, smooth(loss, args.window), color="tab:blue", label=f"training loss, mean of last {args.window}")
    if val:
        ax.plot(
            [v["step"] for v in val],
            [v["val_loss"] for v in val],
            "o-",
            color="tab:red",
            label="held-out synthetic loss",
        )
    shipped = log.get("shipped", {}).get("snapshot")
    if shipped:
        ax.axvline(int(shipped.split("_")[-1]), color="k", ls="--", lw=0.8, label=f"shipped ({shipped})")
    ax.set_xlabel("step")
    ax.set_ylabel("mixture NLL per masked point")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / f"{args.name}.png", dpi=120)
    command = f"python -m benchmarks.tiny_moirai_pretrain_curves --log {args.log.as_posix()} --name {args.name} --out {args.out.as_posix()}"
    lines = [
        f"# Pretraining curves ({args.name})",
        "",
        f"Regenerate: `{command}`",
        "",
        f"![curves]({args.name}.png)",
        "",
        "| step | held-out synthetic loss | training loss (mean of the last "
        f"{args.window} logged steps) | elapsed (min) |",
        "|---|---|---|---|",
    ]
    smoothed = smooth(loss, args.window)
    for v in val:
        i = int(np.searchsorted(steps, v["step"], side="right")) - 1
        lines.append(f"| {v['step']} | {v['val_loss']:.4f} | {smoothed[max(i, 0)]:.4f} | {v['elapsed_s'] / 60:.1f} |")
    lines += [
        "",
        f"- {log.get('run_steps', log['steps'])} steps in {log.get('run_seconds', log['train_seconds']) / 60:.1f} "
        "min"
        + (f"; shipped: {shipped} ({log['steps']} steps, {log['train_seconds'] / 60:.1f} min)" if shipped else "")
        + "; held-out synthetic loss: "
        f"{log['args'].get('val_batches')} batches of the training recipe with their own seed (mixture NLL on the "
        "series' original scale, so its level depends on the recipe's scales, not comparable across stages).",
    ]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / args.name}.md")


if __name__ == "__main__":
    main()
