"""msft's probabilistic default, chosen on validation: fusion objective x sample fusion x coarse paths.

    MSFT_DATA_DIR=../shared/data .venv/bin/python -m benchmarks.pf_fusion_recipe   # results/recipe/pf_fusion.{md,json}

Under the PF setup of `benchmarks.pf_calibration` (raw scale, rolling windows; test = the last 7 x H
steps, validation = the 7 x H before; the embedded tiny MOIRAI, msft with scales 1, 2, 4), for each
dataset and seed msft is trained with
- the published objective (``fusion_objective="per_scale"``: ``sum_s w_s loss_s``),
- the LSF default (``"fused"``: the logits fitted to the fused point forecast's squared error),
each then scored under every ``sample_fusion`` x ``coarse_paths`` (both inference-time switches), and
- the CRPS objective (``"fused_crps"``), trained once per (sample_fusion, coarse_paths), because its
  loss is the CRPS of that very fused distribution, and scored under it.
The default is the configuration with the lowest validation CRPS relative to the best configuration
of each dataset, averaged over the datasets (each dataset's CRPS is on its own raw scale, so they are
not averaged directly). Test scores are written beside it and never read by the choice. Resumable:
finished (dataset, seed) cells are kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import msft
from benchmarks.pf_calibration import DATASETS, LR, tensors, train, windows
from benchmarks.pf_calibration import load as load_values
from benchmarks.pf_calibration import score as score_block
from benchmarks.tiny_moirai_common import machine_line
from msft.config import COARSE_PATHS, SAMPLE_FUSIONS
from msft_runner.methods import build_model

OBJECTIVES = ("per_scale", "fused", "fused_crps")
OPTIONS = {"scales": [1, 2, 4]}


def configurations() -> list[tuple[str, str, str]]:
    """Every (objective, sample_fusion, coarse_paths) compared."""
    return [(o, f, c) for o in OBJECTIVES for f in SAMPLE_FUSIONS for c in COARSE_PATHS]


def _trained(dataset: str, seed: int, steps: int, batch: int, objective: str, fusion: str, coarse: str):
    values = load_values(dataset)
    horizon, seasonality = DATASETS[dataset][1:]
    train_part, val, test = windows(values, horizon, seasonality)
    options = {**OPTIONS, "fusion_objective": objective, "sample_fusion": fusion, "coarse_paths": coarse}
    torch.manual_seed(seed)
    built = build_model(msft.load_backbone("tiny_moirai"), "msft", horizon, options, None, steps, {"patch_size": 32})
    train(built.model, train_part, horizon, steps, batch, LR.get("msft", 1e-3), seed)
    return built.model, val, test


def _scores(model, val, test, seed: int) -> dict:
    out = {}
    for split, block in (("val", val), ("test", test)):
        past, future = tensors(block)
        out[split] = score_block(model, past, future, block.seasonal_error, seed)
    return out


def run_cell(dataset: str, seed: int, steps: int, batch: int) -> list[dict]:
    """Every configuration's scores on one (dataset, seed)."""
    rows = []
    for objective in OBJECTIVES:
        if objective != "fused_crps":  # one model; both switches are inference-only
            model, val, test = _trained(dataset, seed, steps, batch, objective, "linear", "repeat")
            weights = model.fusion_weights.tolist()
            for fusion in SAMPLE_FUSIONS:
                for coarse in COARSE_PATHS:
                    model.set_sample_fusion(fusion).set_coarse_paths(coarse)
                    rows.append(
                        _row(dataset, seed, objective, fusion, coarse, weights, _scores(model, val, test, seed))
                    )
            continue
        for fusion in SAMPLE_FUSIONS:  # the objective is the CRPS of this fused distribution
            for coarse in COARSE_PATHS:
                model, val, test = _trained(dataset, seed, steps, batch, objective, fusion, coarse)
                weights = model.fusion_weights.tolist()
                rows.append(_row(dataset, seed, objective, fusion, coarse, weights, _scores(model, val, test, seed)))
    return rows


def _row(dataset, seed, objective, fusion, coarse, weights, scores) -> dict:
    return {
        "dataset": dataset,
        "seed": seed,
        "objective": objective,
        "fusion": fusion,
        "coarse_paths": coarse,
        "weights": [round(w, 4) for w in weights],
        **scores,
    }


def mean_score(rows: list[dict], config: tuple[str, str, str], dataset: str, split: str, metric: str) -> float:
    group = [r for r in rows if (r["objective"], r["fusion"], r["coarse_paths"]) == config and r["dataset"] == dataset]
    return float(np.mean([r[split][metric] for r in group]))


def _configs(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The configurations ``rows`` hold, in `configurations` order."""
    held = {(r["objective"], r["fusion"], r["coarse_paths"]) for r in rows}
    return [c for c in configurations() if c in held]


def _best(rows: list[dict]) -> dict[str, float]:
    """Per dataset, the lowest seed-mean validation CRPS of any configuration."""
    datasets = sorted({r["dataset"] for r in rows})
    return {d: min(mean_score(rows, c, d, "val", "crps") for c in _configs(rows)) for d in datasets}


def choose(rows: list[dict]) -> tuple[tuple[str, str, str], dict[tuple[str, str, str], float]]:
    """The configuration with the lowest mean over datasets of validation CRPS / the dataset's best
    validation CRPS (seed means); and every configuration's relative score."""
    best = _best(rows)
    relative = {
        c: float(np.mean([mean_score(rows, c, d, "val", "crps") / best[d] for d in best])) for c in _configs(rows)
    }
    return min(relative, key=lambda c: relative[c]), relative


def per_seed_relative(rows: list[dict], config: tuple[str, str, str], best: dict[str, float]) -> dict[int, float]:
    """Per seed, the configuration's mean over datasets of validation CRPS / the dataset's best
    seed-mean validation CRPS (`_best`; seeds that scored every dataset)."""
    out = {}
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if (r["objective"], r["fusion"], r["coarse_paths"]) == config and r["seed"] == seed]
        if {r["dataset"] for r in mine} == set(best):
            out[seed] = float(np.mean([r["val"]["crps"] / best[r["dataset"]] for r in mine]))
    return out


def paired_gap(rows: list[dict], config: tuple[str, str, str], chosen: tuple[str, str, str]) -> str:
    """``mean ± std`` over seeds of the configuration's per-seed relative score minus the chosen one's
    (same seed, so the seeds' common noise cancels), and on how many seeds the chosen one was lower."""
    best = _best(rows)
    mine, theirs = per_seed_relative(rows, config, best), per_seed_relative(rows, chosen, best)
    gaps = [mine[s] - theirs[s] for s in mine if s in theirs]
    if config == chosen or len(gaps) < 2:
        return "–"
    wins = sum(g > 0 for g in gaps)
    return f"{np.mean(gaps):+.4f} ± {np.std(gaps, ddof=1):.4f} ({wins}/{len(gaps)})"


def table(rows: list[dict], command: str) -> str:
    datasets = sorted({r["dataset"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    chosen, relative = choose(rows)
    lines = [
        "# msft's probabilistic default, chosen on validation (PF setup, tiny MOIRAI)",
        "",
        f"Regenerate: `{command}`",
        "",
        machine_line(),
        "",
        f"msft (scales 1, 2, 4) on {', '.join(datasets)}; seeds {seeds}. Validation: the 7 rolling windows "
        "before the test part. `rel. val` = validation CRPS / the dataset's best validation CRPS, averaged "
        "over the datasets (the choice: lowest); `vs chosen`: per seed, that score minus the chosen "
        "configuration's on the same seed, mean ± std over seeds (in parentheses: the seeds on which the "
        "chosen one was lower); test shown, never used. Mean over seeds.",
        "",
        f"**Chosen: fusion_objective={chosen[0]!r}, sample_fusion={chosen[1]!r}, coarse_paths={chosen[2]!r}** "
        f"(rel. val {relative[chosen]:.4f}).",
        "",
        "| objective | fusion | coarse paths | rel. val | vs chosen (paired) | "
        + " | ".join(f"{d} val CRPS | {d} val cov80 | {d} test CRPS | {d} test cov80" for d in datasets)
        + " |",
        "|---|---|---|---|---|" + "---|" * (4 * len(datasets)),
    ]
    for config in sorted(relative, key=lambda c: relative[c]):
        cells = []
        for d in datasets:
            cells += [
                f"{mean_score(rows, config, d, 'val', 'crps'):.4f}",
                f"{mean_score(rows, config, d, 'val', 'cov80'):.2f}",
                f"{mean_score(rows, config, d, 'test', 'crps'):.4f}",
                f"{mean_score(rows, config, d, 'test', 'cov80'):.2f}",
            ]
        mark = "**" if config == chosen else ""
        lines.append(
            f"| {mark}{config[0]}{mark} | {config[1]} | {config[2]} | {relative[config]:.4f} | "
            f"{paired_gap(rows, config, chosen)} | " + " | ".join(cells) + " |"
        )
    weights = {
        (d, o): np.round(
            np.mean([r["weights"] for r in rows if r["dataset"] == d and r["objective"] == o], 0), 3
        ).tolist()
        for d in datasets
        for o in OBJECTIVES
    }
    lines += [
        "",
        "- Fusion weights after training (scales 1, 2, 4; mean over seeds and, for fused_crps, over the "
        "configurations): " + "; ".join(f"{d} {o}: {w}" for (d, o), w in weights.items()) + ".",
        "- Horizons (steps): "
        + ", ".join(f"{d} {DATASETS[d][1] if d in DATASETS else '?'}" for d in datasets)
        + "; coverage of the "
        "central 80% interval (nominal 0.80), uncalibrated.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("results/recipe"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    flags = f"--steps {args.steps} --batch {args.batch} --seeds {' '.join(map(str, args.seeds))}"
    if args.datasets != list(DATASETS):
        flags += " --datasets " + " ".join(args.datasets)
    if args.out != Path("results/recipe"):
        flags += f" --out {args.out.as_posix()}"
    command = f"MSFT_DATA_DIR=../shared/data .venv/bin/python -m benchmarks.pf_fusion_recipe {flags}"
    path = args.out / "pf_fusion.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    rows = saved.get("rows", []) if saved.get("command") == command else []
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        for seed in args.seeds:
            if any(r["dataset"] == dataset and r["seed"] == seed for r in rows):
                continue  # finished before an interruption
            rows += run_cell(dataset, seed, args.steps, args.batch)
            path.write_text(json.dumps({"command": command, "rows": rows}, indent=1))
            print(f"{dataset} seed {seed}: {len(rows)} rows", flush=True)
    (args.out / "pf_fusion.md").write_text(table(rows, command))
    print(f"wrote {args.out / 'pf_fusion.md'}")


if __name__ == "__main__":
    main()
