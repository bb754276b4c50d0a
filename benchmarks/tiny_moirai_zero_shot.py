"""Zero-shot LSF numbers of tiny MOIRAI checkpoints against last-value and seasonal-naive baselines,
at several contexts and, for the multi-scale probe, on each dataset's series pooled by 2 and 4.

    MSFT_DATA_DIR=../shared/data python -m benchmarks.tiny_moirai_zero_shot \\
        --checkpoint new=DIR --checkpoint current=DIR --contexts 512 2048 --patch-sizes 32 64

LSF protocol (as msft.protocols.evaluate_lsf): S mode (each channel its own series), H=96, the whole
split with stride 1 (``--max-windows`` subsamples with a stride, for validation-split selection only),
MSE/MAE on the train-split z-scored scale. The MOIRAI point forecast is the mixture mean through
msft's identity wrap (tested bit-exact against ``MoiraiModule.forward``).

``--scales 2 4`` is the multi-scale probe: each dataset's z-scored series is average-pooled by s
(non-overlapping, from the first row, as msft's down-sampling), the split borders divided by s, and
the model forecasts H/s steps from a context of L/s: the coarse views MSFT builds from the same
(L, H). Seasonal naive then uses the daily period / s.

``--mix-families kernel_heldout walk_heldout`` scores the held-out families of the pretraining mix
(``msft.data.pretrain_mix``, never trained on) instead of (or besides, with ``--datasets``) the LSF
datasets: ``--mix-series`` generated series per family of the longest context + H steps, each z-scored
with its longest context's mean and std, so every context forecasts the same future; seasonal naive
takes each series' period from its context's differenced autocorrelation (there is no calendar).

Results go to ``--out``/``--name``.{json,md} after every evaluation, and a rerun skips what the JSON
already holds, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.tiny_moirai_common import DATA_DIR, DATASETS, machine_line, moirai_forecaster, write_table
from msft.data import LSFSplit, prepare_lsf
from msft.data.pretrain_mix import FAMILIES, PretrainMix
from msft.protocols._forecasters import check_shape, point_forecaster
from msft.protocols.baselines import default_period, last_value, seasonal_naive


def pooled(split: LSFSplit, scale: int, context: int) -> LSFSplit:
    """The split's series average-pooled by ``scale`` (NaN-aware), with borders and context divided by it."""
    if scale == 1:
        return split
    n = len(split.values) // scale
    values = np.nanmean(split.values[: n * scale].reshape(n, scale, -1), axis=1)  # (time / scale, variate)
    borders = {k: (a // scale, b // scale) for k, (a, b) in split.borders.items()}
    return dataclasses.replace(
        split,
        values=values.astype(np.float32),
        dates=split.dates[: n * scale : scale],
        borders=borders,
        context_length=context,
    )


def evaluate(forecaster, split: LSFSplit, which: str, horizon: int, max_windows: int | None, batch_size: int) -> dict:
    """MSE/MAE over the split's windows (stride 1, or the stride that keeps about ``max_windows``)."""
    time_windows = split.windows(which, horizon, "M").__len__()
    stride = 1 if not max_windows else max(1, math.ceil(time_windows / max_windows))
    windows = split.windows(which, horizon, "S", stride=stride)
    predict = point_forecaster(forecaster)
    squared = absolute = 0.0
    with torch.no_grad():
        for batch in windows.batches(batch_size):
            past, future = batch["past_target"], batch["future_target"]  # (batch, L, 1), (batch, H, 1)
            pred = check_shape(predict(past, horizon), tuple(future.shape), "forecaster")
            error = (pred.to(future.dtype) - future).double()
            squared += float(torch.nan_to_num(error).square().sum())
            absolute += float(torch.nan_to_num(error).abs().sum())
    count = horizon * len(windows)
    return {"mse": squared / count, "mae": absolute / count, "windows": len(windows), "stride": stride}


def mix_series(
    family: str, n: int, context: int, longest: int, horizon: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(past (n, context), future (n, horizon)) of ``n`` series of ``family``, z-scored with the mean and
    std of their ``longest`` context: every context ends where the same future starts."""
    x = PretrainMix({family: 1.0}).sample(n, longest + horizon, (seed, list(FAMILIES).index(family))).values
    mean, std = x[:, :longest].mean(1, keepdims=True), x[:, :longest].std(1, keepdims=True)
    z = (x - mean) / np.maximum(std, 1e-8)
    return z[:, longest - context : longest], z[:, longest:]


def acf_period(past: np.ndarray, max_lag: int) -> np.ndarray:
    """(n,) each row's period: the lag >= 2 of the highest local maximum of the autocorrelation of its
    first differences (differences, so a trend or a random walk shows no period), if that maximum is
    clear (above 0.2 and 3 / sqrt(length): with ~L/2 lags, 3 sd alone lets noise through); else 1, i.e. the last value."""
    x = np.diff(past, axis=1)
    x = x - x.mean(1, keepdims=True)
    n, length = x.shape
    power = np.abs(np.fft.rfft(x, 2 * length, axis=1)) ** 2
    ac = np.fft.irfft(power, axis=1)[:, : max_lag + 2]
    ac = ac / np.maximum(ac[:, :1], 1e-300)
    inner = ac[:, 2:-1]  # lags 2..max_lag
    peak = (inner > ac[:, 1:-2]) & (inner >= ac[:, 3:]) & (inner > max(0.2, 3 / np.sqrt(length)))
    best = np.where(peak, inner, -np.inf)
    return np.where(peak.any(1), 2 + best.argmax(1), 1)


def seasonal_naive_acf(past: np.ndarray, horizon: int) -> np.ndarray:
    """Seasonal naive with each row's `acf_period` (at most half its context)."""
    period = acf_period(past, max(2, past.shape[1] // 2))
    steps = np.arange(horizon)
    index = past.shape[1] - period[:, None] + steps[None, :] % period[:, None]  # (n, horizon)
    return np.take_along_axis(past, index, axis=1)


def evaluate_family(forecasts: dict, past: np.ndarray, future: np.ndarray, batch_size: int) -> dict:
    """MSE/MAE of each forecaster (name -> (past (n, L) -> (n, H)) on one family's series."""
    out = {}
    for method, predict in forecasts.items():
        t0 = time.time()
        pred = np.concatenate([predict(past[i : i + batch_size]) for i in range(0, len(past), batch_size)])
        check_shape(torch.from_numpy(pred), tuple(future.shape), method)
        error = pred.astype(np.float64) - future
        out[method] = {
            "mse": float(np.mean(error**2)),
            "mae": float(np.mean(np.abs(error))),
            "windows": len(past),
            "seconds": round(time.time() - t0, 1),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        metavar="NAME=DIR",
        help="a MOIRAI directory to score, repeatable (default: current=the shipped one)",
    )
    p.add_argument(
        "--datasets", nargs="*", default=None, help="LSF datasets (default: all five, none with --mix-families)"
    )
    p.add_argument(
        "--mix-families",
        nargs="*",
        default=[],
        choices=sorted(FAMILIES),
        help="families of msft.data.pretrain_mix to score (the held-out ones: kernel_heldout walk_heldout)",
    )
    p.add_argument("--mix-series", type=int, default=256, help="generated series per family")
    p.add_argument("--mix-seed", type=int, default=0)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--contexts", type=int, nargs="+", default=[512])
    p.add_argument(
        "--patch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="MOIRAI patch size per context (default 32 for every context)",
    )
    p.add_argument("--scales", type=int, nargs="+", default=[1], help="pool the series by these factors (probe)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument(
        "--max-windows",
        type=int,
        default=None,
        help="subsample each split to about this many time windows (validation selection only)",
    )
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="result JSONs of runs of the same settings (e.g. one per checkpoint, run in parallel) whose "
        "evaluations are taken instead of recomputed",
    )
    p.add_argument("--name", default="zero_shot")
    p.add_argument("--out", type=Path, default=Path("results/pretrained"))
    args = p.parse_args(argv)
    args.patch_sizes = args.patch_sizes or [32] * len(args.contexts)
    if args.datasets is None:
        args.datasets = [] if args.mix_families else list(DATASETS)
    if len(args.patch_sizes) != len(args.contexts):
        raise ValueError(f"--patch-sizes {args.patch_sizes}: expected one per context {args.contexts}")
    torch.set_num_threads(args.threads)

    from msft_backbones.moirai import TINY_MOIRAI_DIR, load_moirai

    checkpoints = dict(item.split("=", 1) for item in (args.checkpoint or [f"current={TINY_MOIRAI_DIR}"]))
    digests = {name: weights_digest(directory) for name, directory in checkpoints.items()}
    path = args.out / f"{args.name}.json"
    results = reusable(json.loads(path.read_text()), digests) if path.exists() else {}
    for other in args.merge:
        for key, row in reusable(json.loads(other.read_text()), digests).items():
            for method, value in row.items():
                results.setdefault(key, {}).setdefault(method, value)
    modules = {}
    for name in args.datasets:
        for context, patch in zip(args.contexts, args.patch_sizes):
            base = prepare_lsf(name, context, data_dir=DATA_DIR)
            for scale in args.scales:
                split, horizon = pooled(base, scale, context // scale), args.horizon // scale
                key = f"{name}|L{context}|s{scale}"
                row = results.setdefault(key, {})
                period = max(1, default_period(name) // scale)
                forecasters = {
                    "last_value": lambda: last_value(),
                    "seasonal_naive": lambda period=period: seasonal_naive(period),
                }
                for model, directory in checkpoints.items():

                    def make(directory=directory, patch=patch):  # one wrapped module per (checkpoint, patch)
                        if (directory, patch) not in modules:
                            modules[directory, patch] = moirai_forecaster(load_moirai(directory), patch)
                        return modules[directory, patch]

                    forecasters[model] = make
                for method, make in forecasters.items():
                    if method in row:
                        continue
                    t0 = time.time()
                    row[method] = evaluate(make(), split, args.split, horizon, args.max_windows, args.batch_size)
                    row[method]["seconds"] = round(time.time() - t0, 1)
                    print(key, method, row[method], flush=True)
                    write_results(args, argv, checkpoints, results)
    for family in args.mix_families:
        for context, patch in zip(args.contexts, args.patch_sizes):
            key = f"{family}|L{context}|s1"
            if set(results.get(key, {})) >= {"last_value", "seasonal_naive", *checkpoints}:
                continue
            past, future = mix_series(family, args.mix_series, context, max(args.contexts), args.horizon, args.mix_seed)
            forecasts = {
                "last_value": lambda x: np.repeat(x[:, -1:], args.horizon, axis=1),
                "seasonal_naive": lambda x: seasonal_naive_acf(x, args.horizon),
            }
            for model, directory in checkpoints.items():
                if (directory, patch) not in modules:
                    modules[directory, patch] = moirai_forecaster(load_moirai(directory), patch)
                predict = point_forecaster(modules[directory, patch])

                def forecast(x, predict=predict):
                    with torch.no_grad():
                        past_target = torch.from_numpy(x.astype(np.float32))[..., None]  # (n, L, 1)
                        return predict(past_target, args.horizon)[..., 0].double().numpy()

                forecasts[model] = forecast
            results[key] = evaluate_family(forecasts, past, future, args.batch_size)
            print(key, results[key], flush=True)
            write_results(args, argv, checkpoints, results)
    write_results(args, argv, checkpoints, results)  # also when everything came from --merge
    return results


def weights_digest(directory: str | Path) -> str:
    """SHA-256 of a checkpoint's ``model.safetensors``: what a stored evaluation was made with."""
    import hashlib

    digest = hashlib.sha256()
    with open(Path(directory) / "model.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reusable(saved: dict, digests: dict[str, str]) -> dict:
    """The stored results a rerun may keep: the baselines, and each checkpoint's rows only when the
    file recorded the same weights under that name (a resumed run never mixes two checkpoints that
    share a name, e.g. ``new`` before and after a checkpoint is shipped)."""
    stored = saved.get("checkpoint_sha256", {})
    stale = {name for name, digest in digests.items() if stored.get(name) != digest}
    known = set(saved.get("checkpoints", {}))
    results = {}
    for key, row in saved.get("results", {}).items():
        if "|" in key and key.split("|")[0] in FAMILIES:  # a family row is scored as a whole
            results[key] = {} if stale & set(row) else row
            continue
        results[key] = {m: v for m, v in row.items() if m not in stale and (m not in known or m in digests)}
    if stale:
        print(f"not reusing stored results of {sorted(stale)}: other weights than the stored ones", flush=True)
    return results


def write_results(args, argv, checkpoints: dict, results: dict) -> None:
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--merge" in argv:  # the merged runs are parts of this same command: regenerating needs no merge
        start = argv.index("--merge")
        end = next((i for i in range(start + 1, len(argv)) if argv[i].startswith("--")), len(argv))
        argv = argv[:start] + argv[end:]
    command = "MSFT_DATA_DIR=../shared/data python -m benchmarks.tiny_moirai_zero_shot " + " ".join(argv)
    models = list(checkpoints)
    header = (
        ["dataset", "context", "scale", "H"]
        + [f"{m} MSE" for m in models]
        + ["last value MSE", "seasonal naive MSE"]
        + [f"{m} MAE" for m in models]
        + ["windows"]
    )
    rows = []
    for key, row in results.items():
        name, context, scale = key.split("|")
        scale_value = int(scale[1:])
        mse = [f"{row[m]['mse']:.4f}" if m in row else "" for m in models + ["last_value", "seasonal_naive"]]
        mae = [f"{row[m]['mae']:.4f}" if m in row else "" for m in models]
        windows = next((str(r["windows"]) for r in row.values()), "")
        rows.append([name, context[1:], str(scale_value), str(args.horizon // scale_value)] + mse + mae + [windows])
    lsf_notes = [
        f"LSF protocol, S mode, {args.split} split, "
        + (
            "stride 1 (every window)"
            if not args.max_windows
            else f"subsampled to about {args.max_windows} time windows per dataset"
        )
        + "; z-scored with train-split statistics; H = 96 / scale.",
        "Scale s: the series average-pooled by s, context L/s, horizon 96/s (the coarse views MSFT builds); "
        "seasonal naive period = one day / s (ETTh 24, ETTm 96, Weather 144 at scale 1).",
    ]
    notes = (lsf_notes[:1] if args.datasets else []) + [
        "MOIRAI point forecast = the mixture mean; patch size per context: "
        + ", ".join(f"{c}: {p}" for c, p in zip(args.contexts, args.patch_sizes))
        + ".",
        "Checkpoints: " + ", ".join(f"{m} = `{Path(d).as_posix()}`" for m, d in checkpoints.items()) + ".",
    ]
    notes += lsf_notes[1:] if args.datasets else []
    if args.mix_families:
        notes.append(
            f"Mix families (msft.data.pretrain_mix; kernel_heldout and walk_heldout are never trained on): "
            f"{args.mix_series} generated series per family (seed {args.mix_seed}) of {max(args.contexts)} + "
            f"{args.horizon} steps, z-scored with the mean/std of that longest context, one window per series "
            "(the same future for every context); their seasonal naive takes each series' period from its "
            "context's differenced autocorrelation (its highest local maximum at lag >= 2 if above max(0.2, 3/sqrt(L)), else "
            "the last value)."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(args.out / f"{args.name}.md", f"Tiny MOIRAI zero-shot ({args.name})", command, header, rows, notes)
    (args.out / f"{args.name}.json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": machine_line(),
                "settings": vars(args) | {"out": str(args.out), "merge": [str(m) for m in args.merge]},
                "checkpoints": checkpoints,
                "checkpoint_sha256": {name: weights_digest(d) for name, d in checkpoints.items()},
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
