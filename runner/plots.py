"""PNG plots of one run: forecast vs truth on a few test windows, fusion weights, learning curves."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from msft_runner.module import covariates_of


def plot_run(run_dir: Path, model, data, record: dict[str, Any], num_windows: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    windows = data.data.windows("test", data.horizon, data.mode)
    picks = torch.linspace(0, len(windows) - 1, num_windows).long()
    batch = windows[picks]  # (num_windows, time, variate)
    device = next(model.parameters()).device
    with torch.no_grad():
        covariates = {k: v.to(device) for k, v in covariates_of(batch, model).items()}  # none without covariates
        pred = model.predict(batch["past_target"].to(device), data.horizon, **covariates).cpu()
    fig, axes = plt.subplots(num_windows, 1, figsize=(8, 2.2 * num_windows), squeeze=False)
    context = batch["past_target"].shape[1]
    for ax, idx in zip(axes[:, 0], range(num_windows)):
        ax.plot(range(context), batch["past_target"][idx, :, 0], color="gray", lw=0.8, label="context")
        steps = range(context, context + data.horizon)
        ax.plot(steps, batch["future_target"][idx, :, 0], color="black", lw=1, label="truth")
        ax.plot(steps, pred[idx, :, 0], color="tab:red", lw=1, label="forecast")
        ax.set_title(f"test window {int(picks[idx])}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{record['backbone']} {record['dataset']} H={record['horizon']} {record['method']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "forecast.png", dpi=100)
    plt.close(fig)
    if "fusion_weights" in record:
        fig, ax = plt.subplots(figsize=(3.5, 2.5))
        weights = record["fusion_weights"]
        ax.bar([f"×{s}" for s in weights], list(weights.values()), color="tab:blue")
        ax.set_ylabel("fusion weight")
        ax.set_xlabel("scale")
        fig.tight_layout()
        fig.savefig(out / "fusion_weights.png", dpi=100)
        plt.close(fig)
    curves = run_dir / "metrics.csv"
    if curves.exists():
        plot_learning_curves(curves, out / "learning_curves.png")


def plot_learning_curves(metrics_csv: Path, target: Path) -> None:
    """Per-epoch train and validation loss from Lightning's CSV log."""
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {"train_loss_epoch": [], "val_loss": []}
    with open(metrics_csv) as handle:
        for row in csv.DictReader(handle):
            for key in series:
                if row.get(key):
                    series[key].append((int(row["epoch"]), float(row[key])))
    if not any(series.values()):
        return
    fig, ax = plt.subplots(figsize=(4, 3))
    for key, points in series.items():
        if points:
            ax.plot(*zip(*points), marker="o", label=key.replace("_epoch", ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
