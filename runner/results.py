"""Aggregate run directories into paper-style tables: ``msft-results RUN_DIR... --name NAME``.

Rows are (backbone, dataset, horizon), columns each method's MSE and MAE (LSF runs) or CRPS and MASE
(PF runs, in their own table below the LSF one); the best value of a row is bold. The markdown starts
with the command that regenerates it; the CSV is one row per run.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from msft_runner.records import RunRecord, read_record, write_text_atomic

FIELDS = (
    "backbone",
    "dataset",
    "horizon",
    "method",
    "seed",
    "status",
    "mse",
    "mae",
    "windows",
    "val_score",
    "zero_shot_val_score",
    "guard",
    "lr",
    "lr_scale",
    "val_loss",
    "epochs",
    "steps",
    "trainable_params",
    "fit_seconds",
    "eval_seconds",
    "run_dir",
    "error",
    "protocol",
    "crps",
    "mase",
    "msis",
    "smape",
    "nd",
    "nrmse",
    "scoring",
)
PF_FIELDS = ("crps", "mase")  # the PF table's columns per method
# What an LSF test adds to a record; ``record["tests"]`` keeps these per test stride.
TEST_FIELDS = ("mse", "mae", "windows", "scoring", "test_stride", "windows_per_process", "eval_seconds")


def collect(roots: list[Path]) -> list[RunRecord]:
    """Every run record (``metrics.json``) under ``roots`` (recursively), with its ``run_dir``."""
    records = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json")):
            record = read_record(path.parent)
            record["run_dir"] = str(path.parent)
            records.append(record)
    return records


def at_test_stride(records: list[dict[str, Any]], strides: int | dict[str, int]) -> list[dict[str, Any]]:
    """``records`` with each LSF run's test scores on every ``strides``-th test window (an int, or a
    stride per dataset name; datasets not named keep their scores): the latest test when it used that
    stride, else the earlier one kept under ``tests`` (`msft_runner.train.evaluate_run`), else the run
    counts as not tested there (``test: deferred``)."""
    out = []
    for r in records:
        stride = strides if isinstance(strides, int) else strides.get(r.get("dataset"))
        if stride is None or r.get("protocol") == "pf" or r.get("test") != "done" or r.get("test_stride") == stride:
            out.append(r)
        elif str(stride) in r.get("tests", {}):
            out.append({**r, **r["tests"][str(stride)]})
        else:  # not tested on those windows: none of its scores may stand in for that test
            out.append({**{k: v for k, v in r.items() if k not in TEST_FIELDS}, "test": "deferred"})
    return out


def off_protocol_windows(stride: int) -> str:
    """What a test on every ``stride``-th window appends to its ``scoring`` (train.py writes it)."""
    return f"; every {stride}-th test window (off-protocol)"


def describe_scoring(records: list[dict[str, Any]]) -> str:
    """How the tests in ``records`` were scored, each kind of scoring once, then the datasets tested on
    every k-th window only: "MSE ...; every 4-th test window of ETTm1, every 12-th test window of Weather
    (off-protocol)"."""
    kinds, strided = set(), {}
    for r in records:
        if not r.get("scoring"):
            continue
        stride = r.get("test_stride") or 1
        kinds.add(r["scoring"].removesuffix(off_protocol_windows(stride)))
        if stride > 1:
            strided.setdefault(r["dataset"], set()).add(stride)
    text = "; ".join(sorted(kinds))
    if strided:
        parts = [f"{'/'.join(map(str, sorted(k)))}-th test window of {d}" for d, k in sorted(strided.items())]
        text += "; every " + ", every ".join(parts) + " (off-protocol)"
    return text


def needs_test(record: dict[str, Any], test_stride: int | None = None) -> bool:
    """Whether a finished run still lacks a test (on every ``test_stride``-th window, when given)."""
    if record.get("test") == "deferred":
        return True
    return (
        test_stride is not None
        and test_stride != record.get("test_stride")
        and str(test_stride) not in record.get("tests", {})
    )


def parse_test_strides(text: str) -> int | dict[str, int]:
    """``"1"`` -> 1 (every dataset); ``"ETTm1=4,Weather=12"`` -> a stride per dataset."""
    try:
        if "=" not in text:
            strides: int | dict[str, int] = int(text)
            values = [strides]
        else:
            strides = {name.strip(): int(value) for name, value in (item.split("=") for item in text.split(","))}
            values = list(strides.values())
    except ValueError:
        raise ValueError(f"test stride {text!r}: expected N or DATASET=N,DATASET=N with positive integers") from None
    if min(values) < 1:
        raise ValueError(f"test stride {text!r}: strides must be positive integers (1 scores every test window)")
    return strides


def collect_or_exit(parser: argparse.ArgumentParser, runs: list[str]) -> list[dict[str, Any]]:
    """`collect` for a command line: a missing directory, or none holding a run, is a usage error."""
    roots = [Path(r) for r in runs]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        parser.error(f"no such run directory: {', '.join(missing)}")
    records = collect(roots)
    if not records:
        parser.error(f"no metrics.json under {', '.join(map(str, roots))}")
    return records


def _method_order(records: list[dict[str, Any]]) -> list[str]:
    preferred = ["zero_shot", "linear_probe", "prompt_tuning", "lora", "adalora", "full", "msft"]
    seen = list(dict.fromkeys(r["method"] for r in records))
    return sorted(seen, key=lambda m: (preferred.index(m) if m in preferred else len(preferred), m))


def _is_pf(record: dict[str, Any]) -> bool:
    return record.get("protocol") == "pf"


def markdown_table(records: list[dict[str, Any]]) -> str:
    """Backbone × dataset × horizon rows, method columns (MSE, MAE for LSF runs; CRPS, MASE for PF runs,
    in a second table); mean over seeds; best in bold."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("test") != "deferred"]
    lsf, pf = [r for r in ok if not _is_pf(r)], [r for r in ok if _is_pf(r)]
    lines = _metric_table(lsf, ("mse", "mae")) if lsf or not pf else []
    if pf:
        lines += ([""] if lines else []) + ["PF protocol (raw scale, sample paths):", ""] + _metric_table(pf, PF_FIELDS)
    kept = [r for r in ok if r.get("guard") == "zero_shot_kept"]
    if kept:
        lines += ["", f"{len(kept)} run(s) kept the zero-shot weights (guard: finetuned validation score worse):"]
        lines += [
            f"- {r['backbone']} {r['dataset']} H={r['horizon']} {r['method']} seed {r['seed']}: finetuned "
            f"{r['finetuned_val_score']:.4f} vs zero-shot {r['zero_shot_val_score']:.4f}"
            for r in kept
        ]
    deferred = sum(r.get("status") == "ok" and r.get("test") == "deferred" for r in records)
    if deferred:
        lines += ["", f"{deferred} run(s) not tested yet (defer_test): `msft-evaluate RUN_DIR` tests them."]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["", f"{len(failed)} failed run(s):"]
        lines += [f"- {r['backbone']} {r['dataset']} H={r['horizon']} {r['method']}: {r.get('error')}" for r in failed]
    return "\n".join(lines)


def _metric_table(ok: list[dict[str, Any]], fields: tuple[str, str]) -> list[str]:
    methods = _method_order(ok)
    cells: dict[tuple, dict[str, list[tuple[float, float]]]] = {}
    for r in ok:
        cells.setdefault((r["backbone"], r["dataset"], r["horizon"]), {}).setdefault(r["method"], []).append(
            tuple(r[f] for f in fields)
        )
    names = [f.upper() for f in fields]
    header = "| backbone | dataset | H | " + " | ".join(f"{m} {names[0]} | {m} {names[1]}" for m in methods) + " |"
    lines = [header, "|" + "---|" * (3 + 2 * len(methods))]
    for key in sorted(cells, key=lambda k: (k[0], k[1], int(k[2]))):
        means = {m: tuple(sum(v[i] for v in vals) / len(vals) for i in range(2)) for m, vals in cells[key].items()}
        best = [min((v[i] for v in means.values()), default=None) for i in range(2)]
        row = [str(k) for k in key]
        for m in methods:
            for i in range(2):
                if m not in means:
                    row.append("–")
                    continue
                text = f"{means[m][i]:.4f}"
                row.append(f"**{text}**" if len(means) > 1 and means[m][i] == best[i] else text)
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_tables(
    records: list[dict[str, Any]],
    out_dir: Path,
    name: str,
    command: str,
    trained_by: str | None = None,
    notes: str = "",
) -> str:
    """Write ``<out_dir>/<name>.md`` and ``.csv`` (atomically); return the markdown table.
    ``trained_by``: the command that produced the runs, when known; ``notes``: text above the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(records)
    runs = f"Runs made by: `{trained_by}`\n\n" if trained_by else ""
    protocol = "LSF protocol, test split, z-scored"
    scoring = describe_scoring(records)
    if scoring:
        protocol += f" ({scoring})"
    if any(_is_pf(r) for r in records):
        protocol += " (MSE, MAE); PF protocol, rolling test windows, raw scale (CRPS, MASE)"
    text = (
        f"<!-- Generated by: {command} -->\n\n# {name}\n\n{runs}Regenerate: `{command}`\n\n{protocol}; "
        f"mean over seeds; best per row in bold.\n\n{notes}{table}\n"
    )
    _write_table_files(out_dir, name, text, records, command)
    return table


def select(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (backbone, dataset, horizon, method, seed), the finished run with the lowest validation
    score (``val_score``: the fused forecast's, never a test score); ties go to the first found."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r.get("status") != "ok" or r.get("val_score") is None:
            continue
        key = (r["backbone"], r["dataset"], r["horizon"], r["method"], r["seed"])
        if key not in best or r["val_score"] < best[key]["val_score"]:
            best[key] = r
    return list(best.values())


def selection_table(records: list[dict[str, Any]]) -> str:
    """Rows (backbone, dataset, H, method): mean ± std over seeds of the selected runs' validation
    score and test scores (the lowest of each column per dataset in bold), the selected ``lr_scale`` per seed and the number of candidates."""
    chosen = select(records)
    candidates: dict[tuple, int] = {}
    for r in records:
        if r.get("status") == "ok":
            key = (r["backbone"], r["dataset"], r["horizon"], r["method"])
            candidates[key] = candidates.get(key, 0) + 1
    pf = any(_is_pf(r) for r in chosen)
    tests = ("crps", "msis", "mase") if pf else ("mse", "mae")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in chosen:
        groups.setdefault((r["backbone"], r["dataset"], r["horizon"], r["method"]), []).append(r)
    order = {m: i for i, m in enumerate(_method_order(chosen))}
    names = [t.upper() for t in tests]
    lines = [
        "| backbone | dataset | H | method | seeds | val score | test "
        + " | test ".join(names)
        + " | selected lr_scale (per seed) | zero-shot kept | runs |",
        "|" + "---|" * (9 + len(tests)),
    ]
    best: dict[tuple, float] = {}  # (backbone, dataset, H, column) -> the lowest mean among the methods
    for key, rows in groups.items():
        for column in ("val_score", *tests):
            if column == "val_score" or not any(r.get("test") == "deferred" for r in rows):
                mean = mean_std([r[column] for r in rows])[0]
                best[(*key[:3], column)] = min(best.get((*key[:3], column), mean), mean)
    for key in sorted(groups, key=lambda k: (k[0], k[1], int(k[2]), order.get(k[3], 99))):
        rows = sorted(groups[key], key=lambda r: r["seed"])
        val = mean_std([r["val_score"] for r in rows])
        cells = [fmt(val, bold=val[0] == best[(*key[:3], "val_score")])]
        untested = sum(r.get("test") == "deferred" for r in rows)
        if untested:  # defer_test: msft-evaluate --select has not tested these selected runs yet
            cells += [f"deferred ({untested} of {len(rows)})"] * len(tests)
        else:
            for t in tests:
                score = mean_std([r[t] for r in rows])
                cells.append(fmt(score, bold=score[0] == best[(*key[:3], t)]))
        scales = ", ".join(f"{r.get('lr_scale', 1.0):g}" for r in rows)
        kept = sum(r.get("guard") == "zero_shot_kept" for r in rows)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {len(rows)} | "
            + " | ".join(cells)
            + f" | {scales} | {kept} | {candidates[key]} |"
        )
    return "\n".join(lines)


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var**0.5


def fmt(value: tuple[float, float], bold: bool = False) -> str:
    text = f"{value[0]:.4f} ± {value[1]:.4f}"
    return f"**{text}**" if bold else text


def write_selection(
    records: list[dict[str, Any]],
    out_dir: Path,
    name: str,
    command: str,
    trained_by: str | None = None,
    notes: str = "",
) -> str:
    """Write ``<out_dir>/<name>.md`` (the selection table) and ``.csv`` (every run); return the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = selection_table(records)
    scoring = describe_scoring(records)
    runs = f"Runs made by: `{trained_by}`\n\n" if trained_by else ""
    if any(_is_pf(r) for r in records):
        test = "PF protocol, rolling test windows, raw scale (CRPS, MSIS, MASE)"
    else:
        test = f"LSF protocol, test split, z-scored ({scoring or 'point forecasts'})"
    text = (
        f"<!-- Generated by: {command} -->\n\n# {name}\n\n{runs}Regenerate the table: `{command}`\n\n"
        "Selection: per (method, dataset, seed) the run with the lowest **validation** score of the fused "
        "forecast (LSF: MSE of the point forecast; PF: CRPS) among its candidates (`runs`: e.g. the "
        "learning-rate grid); early stopping and checkpoint choice inside each run use the same score. "
        "Then mean ± std over seeds; per dataset the lowest mean of each column in bold. Test: "
        f"{test}.\n\n{notes}{table}\n"
    )
    _write_table_files(out_dir, name, text, records, command)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="msft-results", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=["runs"], help="run or sweep directories to scan")
    parser.add_argument("--name", default="results", help="table name: writes <out>/<name>.md and .csv")
    parser.add_argument("--out", default="results", help="output directory")
    parser.add_argument("--trained-by", help="the command that made the runs (shown in the table)")
    parser.add_argument("--note", default="", help="a paragraph shown above the table")
    parser.add_argument(
        "--select",
        action="store_true",
        help="per (method, dataset, seed) keep the run with the best validation score (a sweep), "
        "and report validation and test as mean ± std over seeds",
    )
    parser.add_argument(
        "--test-stride",
        metavar="N|DATASET=N,...",
        help="report each LSF run's test on every N-th window (tested there by msft-evaluate --test-stride); "
        "runs without such a test count as not tested",
    )
    args = parser.parse_args(argv)
    records = collect_or_exit(parser, args.runs)
    command = "msft-results " + " ".join(args.runs) + f" --name {args.name} --out {args.out}"
    if args.test_stride is not None:
        try:
            records = at_test_stride(records, parse_test_strides(args.test_stride))
        except ValueError as error:
            parser.error(str(error))
        command += f" --test-stride {args.test_stride}"
    notes = f"{args.note}\n\n" if args.note else ""
    if args.select:
        print(write_selection(records, Path(args.out), args.name, command + " --select", args.trained_by, notes))
        return
    print(write_tables(records, Path(args.out), args.name, command, args.trained_by, notes))


if __name__ == "__main__":
    main()


def _write_table_files(out_dir: Path, name: str, markdown: str, records: list[dict], command: str) -> None:
    """``<out_dir>/<name>.md`` (the table) and ``.csv`` (one row per run), each written atomically."""
    write_text_atomic(out_dir / f"{name}.md", markdown)
    buffer = io.StringIO()
    buffer.write(f"# Generated by: {command}\n")
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    write_text_atomic(out_dir / f"{name}.csv", buffer.getvalue())
