"""The learning-rate rule and the notes of ``scripts/multivariate_lsf.sh`` (issue 28: do joint variates help?).

Seed 0 of every (dataset, method, mode) tries ``lr_scale`` over `BASE_GRID`; while the validation
choice is an edge of what was tried, one more point a factor `EXTENSION` beyond it, at most
`MAX_EXTENSIONS` times (the rule of `msft_runner.evidence`, counted against this smaller grid).
Runs are named ``<method>_<mode>`` (mode S: channel independence, mode M: joint variates).

``python -m msft_runner.multivariate next ROOT DATASET METHOD``: the next lr_scale to train (nothing
when the choice is interior or the extensions are used up); ``chosen``: seed 0's choice;
``notes ROOT [--test-stride ...] [--keep CSV]``: the search table (with the zero-shot validation score of each mode) and the paired M-vs-S comparison (markdown).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from msft_runner.evidence import at_edge, next_lr_scale, run_tag
from msft_runner.results import at_test_stride, collect, keep_earlier, parse_test_strides, read_table_csv, select

BASE_GRID = (0.3, 1.0, 3.0)
MODES = ("S", "M")


def extensions(tried: list[float], base: tuple[float, ...] = BASE_GRID) -> list[float]:
    """The points of ``tried`` beyond ``base``."""
    return sorted(s for s in tried if not any(math.isclose(s, g) for g in base))


def next_scale(tried: list[float], best: float, base: tuple[float, ...] = BASE_GRID) -> float | None:
    """The next lr_scale when ``best`` (the validation choice among ``tried``) is an edge of it and
    fewer than `MAX_EXTENSIONS` points beyond ``base`` were tried; None when interior or used up."""
    return next_lr_scale(tried, best, base)


def seed0(records: list[dict[str, Any]], dataset: str, method: str) -> list[dict[str, Any]]:
    """The finished, validated seed-0 runs of ``method`` on ``dataset``."""
    return [
        r
        for r in records
        if r.get("dataset") == dataset
        and r.get("method") == method
        and r.get("seed") == 0
        and r.get("status") == "ok"
        and r.get("val_score") is not None
    ]


def choice(records: list[dict[str, Any]], dataset: str, method: str) -> tuple[list[float], float | None]:
    """The lr_scales seed 0 tried and the one with the lowest validation score (None: no run)."""
    runs = seed0(records, dataset, method)
    if not runs:
        return [], None
    best = min(runs, key=lambda r: r["val_score"])
    return sorted(run_tag(r["run_dir"])[0] for r in runs), run_tag(best["run_dir"])[0]


def split_mode(method: str) -> tuple[str, str]:
    """``"lora_M"`` -> ``("lora", "M")``; a name without a mode suffix has mode ""."""
    base, _, mode = method.rpartition("_")
    return (base, mode) if base and mode in MODES else (method, "")


def search_table(records: list[dict[str, Any]]) -> str:
    """Per (dataset, H, method_mode): seed 0's grid, its extensions, the choice and whether it is
    interior, the candidates and the chosen run's trainable parameters."""
    keys = sorted({(r["dataset"], int(r["horizon"]), r["method"]) for r in records if r.get("seed") == 0})
    lines = [
        "| dataset | H | method | lr_scale tried (seed 0) | extensions | chosen lr_scale | interior | seed-0 val MSE per lr_scale | zero-shot val MSE | trainable parameters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, horizon, method in keys:
        runs = [r for r in seed0(records, dataset, method) if int(r["horizon"]) == horizon]
        if not runs:
            continue
        tried, best = choice(runs, dataset, method)
        chosen = min(runs, key=lambda r: r["val_score"])
        ext = extensions(tried)
        interior = "yes" if len(tried) > 2 and not at_edge(tried, best) else "**no (edge)**"
        scores = ", ".join(
            f"{run_tag(r['run_dir'])[0]:g}: {r['val_score']:.4f}"
            for r in sorted(runs, key=lambda r: run_tag(r["run_dir"])[0])
        )
        params = chosen.get("trainable_params")
        zero_shot = chosen.get("zero_shot_val_score")
        lines.append(
            f"| {dataset} | {horizon} | {method} | {', '.join(f'{s:g}' for s in tried)} | "
            f"{', '.join(f'{s:g}' for s in ext) or 'none'} | {best:g} | {interior} | {scores} | "
            f"{f'{zero_shot:.4f}' if zero_shot is not None else ''} | {f'{params:,}' if params is not None else ''} |"
        )
    return "\n".join(lines)


def paired_modes(chosen: list[dict[str, Any]], metric: str = "mse") -> str:
    """Per (dataset, H, method): M minus S seed by seed on the selected runs' ``metric`` (test) and
    validation score; mean difference and on how many seeds M was lower (better)."""
    by: dict[tuple, dict[str, dict[int, dict[str, Any]]]] = {}
    for r in chosen:
        base, mode = split_mode(r["method"])
        if mode:
            by.setdefault((r["dataset"], int(r["horizon"]), base), {}).setdefault(mode, {})[r["seed"]] = r
    lines = [
        f"| dataset | H | method | seeds (both modes) | mean val MSE M - S | M lower on val | mean test {metric.upper()} M - S | M lower on test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, horizon, method), modes in sorted(by.items()):
        if set(modes) != set(MODES):
            continue
        seeds = sorted(set(modes["M"]) & set(modes["S"]))
        if not seeds:
            continue
        val = [modes["M"][s]["val_score"] - modes["S"][s]["val_score"] for s in seeds]
        tested = [s for s in seeds if modes["M"][s].get("test") == "done" and modes["S"][s].get("test") == "done"]
        test = [modes["M"][s][metric] - modes["S"][s][metric] for s in tested]
        test_cells = (
            f"{sum(test) / len(test):+.4f} ({len(tested)} seeds) | {sum(d < 0 for d in test)} of {len(tested)}"
            if tested
            else "not tested | "
        )
        lines.append(
            f"| {dataset} | {horizon} | {method} | {len(seeds)} | {sum(val) / len(val):+.4f} | "
            f"{sum(d < 0 for d in val)} of {len(seeds)} | {test_cells} |"
        )
    return "\n".join(lines)


def notes(records: list[dict[str, Any]], test_stride: str | None = None, command: str = "") -> str:
    """The markdown the driver appends to the table: the search, then M vs S (``command``: what wrote it)."""
    tested = at_test_stride(records, parse_test_strides(test_stride)) if test_stride else records
    return (
        (f"\nThe sections below: `{command}`\n" if command else "")
        + "\n## The learning-rate search (seed 0, validation only)\n\n"
        "lr_scale 0.3, 1, 3; while the validation choice is an edge of what was tried, one more point a "
        "factor 3 beyond it, at most 2 extensions. `interior`: the choice has a tried point on each side.\n\n"
        + search_table(records)
        + "\n\n## Joint variates (M) against channel independence (S), seed by seed\n\n"
        "Per method, the selected runs of mode M minus those of mode S on the same seed (negative: joint "
        "variates lower = better); `M lower`: on how many seeds M scored lower.\n\n"
        + paired_modes(select(tested))
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m msft_runner.multivariate", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("next", "chosen", "notes"))
    parser.add_argument("root", help="the sweep directory (runs/multivariate_lsf)")
    parser.add_argument("dataset", nargs="?")
    parser.add_argument("method", nargs="?", help="the run's method name, <method>_<mode>")
    parser.add_argument("--test-stride", help="as msft-results --test-stride (notes)")
    parser.add_argument(
        "--keep", help="as msft-results --keep (notes): also the rows of this earlier table whose runs are gone"
    )
    args = parser.parse_args(argv)
    records = collect([Path(args.root)]) if Path(args.root).is_dir() else []
    if args.keep:
        if args.command != "notes":
            parser.error("--keep is for notes only: the lr rule reads the runs on disk")
        try:
            records = keep_earlier(records, read_table_csv(Path(args.keep)))
        except (OSError, ValueError) as error:
            parser.error(f"--keep {args.keep}: {error}")
    if args.command == "notes":
        command = f"python -m msft_runner.multivariate notes {args.root}"
        command += f" --test-stride {args.test_stride}" if args.test_stride else ""
        command += f" --keep {args.keep}" if args.keep else ""
        print(notes(records, args.test_stride, command), end="")
        return
    if not args.dataset or not args.method:
        parser.error(f"{args.command}: DATASET and METHOD are required")
    tried, best = choice(records, args.dataset, args.method)
    if best is None:
        parser.exit(1, f"no finished seed-0 run of {args.method} on {args.dataset} under {args.root}\n")
    if args.command == "chosen":
        print(f"{best:g}")
    else:
        point = next_scale(tried, best)
        if point is not None:
            print(f"{point:g}")


if __name__ == "__main__":
    main()
