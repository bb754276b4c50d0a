"""The rules of the evidence suites (issue 31), as pure functions `scripts/evidence.py` drives.

Every method gets the same search on seed 0, judged on validation only:

1. **Learning rate**: ``lr_scale`` over `GRID`; while the best point is an edge of what was tried, one
   more point a factor `EXTENSION` beyond it (`next_lr_scale`), at most `MAX_EXTENSIONS` times. A
   choice still at an edge after that is flagged in the tables.
2. **One other knob**: at the chosen rate, the method's `KNOBS` entry, three values of the one
   setting a practitioner would tune for it (the first is the method config's default, so the rate
   search already trained it).
3. The other seeds train at the chosen (rate, knob); `paired_difference` compares two methods seed by
   seed (a paired t interval over seeds), and a difference whose interval covers 0 is a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
EXTENSION = 3.0
MAX_EXTENSIONS = 2


@dataclass(frozen=True)
class Knob:
    """One value of a method's second knob: ``tag`` names its runs' directories (``lr1_<tag>``; the
    default value has the empty tag), ``overrides`` are its msft-train overrides."""

    tag: str
    value: str
    overrides: tuple[str, ...] = ()


def _knob(setting: str, default: str, *values: tuple[str, str, tuple[str, ...]]) -> tuple[str, tuple[Knob, ...]]:
    return setting, (Knob("", default), *(Knob(tag, value, overrides) for tag, value, overrides in values))


#: method -> (the knob's name, its values; the first is the method config's default)
KnobTable = dict[str, tuple[str, tuple[Knob, ...]]]

KNOBS: KnobTable = {
    "linear_probe": _knob(
        "weight decay", "0", ("wd0.01", "0.01", ("weight_decay=0.01",)), ("wd0.1", "0.1", ("weight_decay=0.1",))
    ),
    "full": _knob(
        "weight decay", "0", ("wd0.01", "0.01", ("weight_decay=0.01",)), ("wd0.1", "0.1", ("weight_decay=0.1",))
    ),
    "prompt_tuning": _knob(
        "prompt length",
        "8",
        ("p4", "4", ("method.options.prompt_tokens=4",)),
        ("p32", "32", ("method.options.prompt_tokens=32",)),
    ),
    "lora": _knob(
        "rank (alpha = 2 rank)",
        "16",
        ("r8", "8", ("method.peft.r=8", "method.peft.alpha=16")),
        ("r64", "64", ("method.peft.r=64", "method.peft.alpha=128")),
    ),
    "lora_matched": _knob(
        "alpha (rank 47 fixed by capacity)",
        "94",
        ("a47", "47", ("method.peft.alpha=47",)),
        ("a188", "188", ("method.peft.alpha=188",)),
    ),
    "adalora": _knob(
        "final fixed-rank share of the budget (tfinal)",
        "0.2",
        ("tf0.05", "0.05", ("method.peft.tfinal=0.05",)),
        ("tf0.5", "0.5", ("method.peft.tfinal=0.5",)),
    ),
    "msft": _knob(
        "scale set",
        "[1, 2, 4]",
        ("s12", "[1, 2]", ("method.options.scales=[1,2]",)),
        ("s1248", "[1, 2, 4, 8]", ("method.options.scales=[1,2,4,8]",)),
    ),
}


KNOBS["msft_full_backbone_crps"] = KNOBS["msft"]  # the PF recipe: msft's knob

#: the long-context suite (issue 30): LoRA and full finetuning at the better of 512 and 2048 past
#: steps on validation; the msft variants fix their contexts in their method configs, so no knob
CONTEXT_KNOB = _knob("context length", "512", ("L2048", "2048", ("data.context_length=2048",)))
LONG_CONTEXT_KNOBS: KnobTable = {"lora": CONTEXT_KNOB, "full": CONTEXT_KNOB}


def knob_values(method: str, knobs: KnobTable | None = None) -> tuple[Knob, ...]:
    """The knob values ``method`` is searched over in a suite whose knobs are ``knobs`` (default
    `KNOBS`); only the default for a method without a knob there."""
    knobs = KNOBS if knobs is None else knobs
    return knobs[method][1] if method in knobs else (Knob("", "default"),)


def run_tag(run_dir: str | Path) -> tuple[float, str]:
    """(lr_scale, knob tag) of a run directory ``.../lr<scale>[_<tag>]/seed<k>``."""
    name = Path(run_dir).parent.name
    if not name.startswith("lr"):
        raise ValueError(f"run directory {run_dir}: expected .../lr<scale>[_<tag>]/seed<k>")
    scale, _, tag = name[2:].partition("_")
    return float(scale), tag


def lr_dir(scale: float, tag: str = "") -> str:
    """The directory name `run_tag` reads back: ``lr<scale>`` or ``lr<scale>_<tag>``."""
    return f"lr{scale:g}" + (f"_{tag}" if tag else "")


def next_lr_scale(tried: list[float], best: float, grid: tuple[float, ...] = GRID) -> float | None:
    """The next grid point when ``best`` (the validation choice among ``tried``) is an edge of it and
    fewer than `MAX_EXTENSIONS` points beyond ``grid`` were tried; None when the choice is interior or
    the extensions are used up."""
    extensions = sum(1 for s in tried if not any(math.isclose(s, g) for g in grid))
    if extensions >= MAX_EXTENSIONS:
        return None
    if math.isclose(best, min(tried)):
        return _round(best / EXTENSION)
    if math.isclose(best, max(tried)):
        return _round(best * EXTENSION)
    return None


def _round(scale: float) -> float:
    return float(f"{scale:.4g}")


def at_edge(tried: list[float], chosen: float) -> bool:
    return math.isclose(chosen, min(tried)) or math.isclose(chosen, max(tried))


@dataclass(frozen=True)
class Paired:
    """``a - b`` over seeds both have: mean, 95% t interval, paired t-test p (two-sided)."""

    seeds: int
    mean: float
    low: float
    high: float
    p: float

    @property
    def verdict(self) -> str:
        if self.seeds < 2 or math.isnan(self.low):
            return "n/a"
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "tie"


def paired_difference(a: dict[int, float], b: dict[int, float]) -> Paired:
    """Per-seed scores ``a`` and ``b`` (seed -> score) compared on their common seeds."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(n, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    p = (
        1.0
        if sd == 0 and mean == 0
        else (0.0 if sd == 0 else float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1)))
    )
    return Paired(n, mean, mean - half, mean + half, p)


def search_rows(
    records: list[dict[str, Any]], selection_seed: int = 0, knobs: KnobTable | None = None
) -> list[dict[str, Any]]:
    """Per (dataset, horizon, method): the rate grid seed ``selection_seed`` tried at the default
    knob, the extensions, the chosen rate (flagged at an edge), the knob values tried at it, the
    chosen knob, candidates and the chosen run's trainable parameters. ``knobs``: the suite's
    (default `KNOBS`)."""
    knobs = KNOBS if knobs is None else knobs
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("val_score") is not None and r["seed"] == selection_seed:
            groups.setdefault((r["dataset"], int(r["horizon"]), r["method"]), []).append(r)
    rows = []
    for (dataset, horizon, method), runs in sorted(groups.items()):
        tagged = [(run_tag(r["run_dir"]), r) for r in runs]
        grid = {s: r for (s, tag), r in tagged if tag == ""}
        tried = sorted(grid)
        chosen = min(runs, key=lambda r: r["val_score"])
        lr, tag = run_tag(chosen["run_dir"])
        tags = {t for (s, t), _ in tagged if math.isclose(s, lr)}
        values = {k.tag: k.value for k in knob_values(method, knobs)}
        rows.append(
            dict(
                dataset=dataset,
                horizon=horizon,
                method=method,
                grid=tried,
                extensions=[s for s in tried if not any(math.isclose(s, g) for g in GRID)],
                lr_scale=lr,
                edge=bool(tried) and len(tried) > 1 and at_edge(tried, lr),
                knob=knobs[method][0] if method in knobs else "",
                knob_values=[
                    values.get(t, t) for t in sorted(tags, key=lambda t: list(values).index(t) if t in values else 99)
                ],
                knob_chosen=values.get(tag, tag),
                candidates=len(runs),
                trainable_params=chosen.get("trainable_params"),
            )
        )
    return rows


def search_table(records: list[dict[str, Any]], selection_seed: int = 0, knobs: KnobTable | None = None) -> str:
    lines = [
        "| dataset | H | method | lr_scale grid (seed 0) | chosen lr_scale | knob | values tried | chosen | candidates | trainable parameters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in search_rows(records, selection_seed, knobs):
        grid = ", ".join(f"{s:g}" for s in row["grid"])
        if row["extensions"]:
            grid += f" (extended: {', '.join(f'{s:g}' for s in row['extensions'])})"
        chosen = f"{row['lr_scale']:g}" + (" **(edge)**" if row["edge"] else "")
        params = f"{row['trainable_params']:,}" if row["trainable_params"] is not None else ""
        lines.append(
            f"| {row['dataset']} | {row['horizon']} | {row['method']} | {grid} | {chosen} | {row['knob']} | "
            f"{', '.join(row['knob_values'])} | {row['knob_chosen']} | {row['candidates']} | {params} |"
        )
    return "\n".join(lines)


def _by_dataset(chosen: list[dict[str, Any]], metric: str, reference: str):
    """Per (dataset, horizon) where ``reference`` ran: its per-seed scores, the other trained methods'
    runs by seed, and the one of them with the best mean *validation* score (never chosen on test)."""
    by_key: dict[tuple, dict[str, dict[int, dict[str, Any]]]] = {}
    for r in chosen:
        if r.get(metric) is None:
            continue
        by_key.setdefault((r["dataset"], int(r["horizon"])), {}).setdefault(r["method"], {})[r["seed"]] = r
    for (dataset, horizon), methods in sorted(by_key.items()):
        if reference not in methods:
            continue
        baselines = {m: runs for m, runs in methods.items() if m not in (reference, "zero_shot")}
        if not baselines:
            continue
        best = min(baselines, key=lambda m: sum(r["val_score"] for r in baselines[m].values()) / len(baselines[m]))
        yield dataset, horizon, methods[reference], baselines, best


def _scores(runs: dict[int, dict[str, Any]], metric: str) -> dict[int, float]:
    return {seed: r[metric] for seed, r in runs.items()}


def _verdict_words(verdict: str, reference: str) -> str:
    return {"lower": f"{reference} lower", "higher": f"{reference} higher"}.get(verdict, verdict)


def paired_table(chosen: list[dict[str, Any]], metric: str, reference: str = "msft") -> str:
    """``reference`` against every other trained method, per (dataset, horizon), on the selected runs'
    test ``metric``; the baseline with the best mean *validation* score is marked (never chosen on test)."""
    lines = [
        f"| dataset | H | {reference} vs | seeds | mean {metric.upper()} difference | 95% CI | paired t p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, horizon, ref, baselines, best in _by_dataset(chosen, metric, reference):
        for method in sorted(baselines, key=lambda m: (m != best, m)):
            d = paired_difference(_scores(ref, metric), _scores(baselines[method], metric))
            name = f"{method} (best on validation)" if method == best else method
            lines.append(
                f"| {dataset} | {horizon} | {name} | {d.seeds} | {d.mean:+.4f} | [{d.low:+.4f}, {d.high:+.4f}] | "
                f"{d.p:.3f} | {_verdict_words(d.verdict, reference)} |"
            )
    return "\n".join(lines)


def verdict_table(chosen: list[dict[str, Any]], metric: str, reference: str = "msft") -> str:
    """One row per (dataset, horizon): ``reference``'s test ``metric`` (mean ± std over seeds), the
    baseline best on validation with its score, their paired difference (95% interval, p) and
    verdict, and how many of the other trained methods ``reference`` is below, tied with, above."""
    from msft_runner.results import fmt, mean_std

    lines = [
        f"| dataset | H | seeds | {reference} | best baseline on validation | its {metric.upper()} | difference [95% CI] | "
        f"p | verdict | {reference} lower / tie / higher (vs every other trained method) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, horizon, ref, baselines, best in _by_dataset(chosen, metric, reference):
        ref_scores = _scores(ref, metric)
        verdicts = {m: paired_difference(ref_scores, _scores(runs, metric)) for m, runs in baselines.items()}
        counts = [sum(d.verdict == v for d in verdicts.values()) for v in ("lower", "tie", "higher")]
        d = verdicts[best]
        lines.append(
            f"| {dataset} | {horizon} | {len(ref_scores)} | {fmt(mean_std(list(ref_scores.values())))} | {best} | "
            f"{fmt(mean_std(list(_scores(baselines[best], metric).values())))} | "
            f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] | "
            f"{d.p:.3f} | {_verdict_words(d.verdict, reference)} | {' / '.join(map(str, counts))} |"
        )
    return "\n".join(lines)


#: the covariate suite (issue 28): msft's rate search only (its scale set stays the default), so the
#: three data variants get the same search
COVARIATE_KNOBS: KnobTable = {}


def variants_table(chosen: list[dict[str, Any]], metric: str, reference: str) -> str:
    """Each data variant (a dataset name other than ``reference``) against ``reference`` for the same
    method, paired over seeds on the selected runs' test ``metric``: both means ± std, their mean
    validation scores, the difference (variant minus reference), its 95% interval, p and verdict."""
    from msft_runner.results import fmt, mean_std

    runs: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in chosen:
        if r.get(metric) is not None:
            runs.setdefault((r["method"], r["dataset"]), {})[r["seed"]] = r
    lines = [
        f"| method | data | seeds | val score | test {metric.upper()} | {reference}: val score | {reference}: test "
        f"{metric.upper()} | difference [95% CI] | p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, dataset), variant in sorted(runs.items()):
        base = runs.get((method, reference))
        if dataset == reference or not base:
            continue
        ours, theirs = _scores(variant, metric), _scores(base, metric)
        d = paired_difference(ours, theirs)
        val, base_val = (mean_std([r["val_score"] for r in rs.values()])[0] for rs in (variant, base))
        lines.append(
            f"| {method} | {dataset} | {d.seeds} | {val:.4f} | {fmt(mean_std(list(ours.values())))} | "
            f"{base_val:.4f} | {fmt(mean_std(list(theirs.values())))} | "
            f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] | {d.p:.3f} | {_verdict_words(d.verdict, dataset)} |"
        )
    return "\n".join(lines)
