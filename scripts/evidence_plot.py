"""Draw results/evidence/lsf.png from results/evidence/lsf.csv: test MSE (mean ± std over seeds) per
method per dataset, of the runs validation selected (the rule of `msft_runner.results.select`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(csv: Path = REPO / "results" / "evidence" / "lsf.csv", out: Path | None = None) -> None:
    runs = pd.read_csv(csv, comment="#")
    runs = runs[(runs["status"] == "ok") & runs["val_score"].notna()]
    keys = ["backbone", "dataset", "horizon", "method", "seed"]
    chosen = runs.loc[runs.groupby(keys)["val_score"].idxmin()].dropna(subset=["mse"])
    stats = chosen.groupby(["dataset", "method"])["mse"].agg(["mean", "std"]).reset_index()
    datasets = list(dict.fromkeys(stats["dataset"]))
    order = ["zero_shot", "linear_probe", "prompt_tuning", "lora", "adalora", "full", "msft"]
    methods = [m for m in order if m in set(stats["method"])] + sorted(set(stats["method"]) - set(order))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = stats[stats["dataset"] == dataset].set_index("method").reindex(methods)
        colors = ["tab:red" if m == "msft" else "tab:gray" for m in methods]
        ax.bar(range(len(methods)), rows["mean"], yerr=rows["std"].fillna(0), color=colors, capsize=2)
        low = rows["mean"].min()
        ax.set_ylim(low * 0.9, rows["mean"].max() * 1.03)
        ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{dataset} H=96", fontsize=9)
    axes[0][0].set_ylabel("test MSE (selected on validation)")
    fig.tight_layout()
    fig.savefig(out or csv.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
