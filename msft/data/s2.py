"""S2 series-symbol data (Wang et al., NeurIPS 2025) from the authors' generator, ``s2generator``.

    pip install "msft[pretrain]"      # s2generator and its numpy/scipy/statsmodels/scikit-learn needs

Each draw is ``(symbol, X, Y)``: a random expression tree ``f`` (unary/binary operators, constants,
sometimes a ``rand`` leaf) applied to an excitation series ``X`` (the package's mixture / ARMA /
ForecastPFN / KernelSynth / IMF samplers), giving the response ``Y = f(X)`` that the package then
z-scores and scales by ``U(0, 16)``. The symbol is kept as the package's own string, which its parser
reads back (:func:`evaluate_symbol`).

Draw ``i`` of a pool with seed ``s`` uses ``numpy.random.RandomState([s, i])`` (and numpy's global
generator, which the package also uses, seeded from ``(s, i)``), so a pool is a pure
function of ``(seed, length, params)``: draws are independent and can run in any order or process.
Which draws the pool keeps is decided by work, never by time: the package resamples the excitation
until ``f(X)`` has ``length`` valid points, at most ``SymbolParams.max_trials`` times (64 unless
``symbol_params`` says otherwise; each trial is one excitation of ``length`` points and one
evaluation of the tree); a draw that runs out of trials
(the package returns ``None``), that the package raises on, or that has non-finite values is skipped.
The pool is the first ``n`` draws kept, in draw order, the same on a fast or a slow machine, busy or
idle, in any shard layout, resumed or not (the skipped indices are recorded).

``time_limit`` is only a safety net against a runaway draw: a draw that uses more CPU seconds than
that raises `S2DrawTimeout` naming the draw and the seed (raise the limit and rerun: the shards
already written are kept); it never skips a draw silently. Values are bit for bit the same on the same
numpy/LAPACK kernels; numpy and OpenBLAS dispatch some operations (SVD in KernelSynth, ``exp``/``sin``)
to CPU-specific SIMD kernels, so another CPU can round a value in its last bits.

Pools are cached as compressed shards of ``shard_size`` draws under
``<cache root>/s2/<key>/`` (``MSFT_CACHE_DIR``, default ``~/.cache/msft``); generation resumes from
the shards already written, and :func:`load_pool` reads what is there (``partial=True``) while a
background generation is still running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msft.data.files import cache_root

logger = logging.getLogger(__name__)

#: CPU seconds after which a draw is a runaway and generation stops with `S2DrawTimeout`: far above
#: a completed draw (at most ``max_trials`` excitations of ``length`` points); it never decides what
#: the pool holds.
TIME_LIMIT = 1800.0


@dataclass
class S2Pool:
    """``n`` S2 draws of one length: ``excitation`` and ``response`` ``(n, length)`` float32, their
    ``symbol`` strings, and ``draw`` (the draw index of each row, from which its seed follows)."""

    excitation: np.ndarray
    response: np.ndarray
    symbol: list[str]
    draw: np.ndarray
    skipped: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.symbol)

    def __getitem__(self, rows) -> S2Pool:
        rows = np.arange(len(self))[rows]
        return S2Pool(
            self.excitation[rows], self.response[rows], [self.symbol[i] for i in rows], self.draw[rows], self.skipped
        )


def _require_package():
    try:
        import s2generator  # noqa: F401
    except ImportError as error:  # an optional extra: say how to get it
        raise ImportError(
            "msft.data.s2 needs the authors' generator: pip install 'msft[pretrain]' (or pip install s2generator)"
        ) from error


class S2DrawTimeout(RuntimeError):
    """A draw used more CPU time than the safety limit: generation stops instead of skipping it."""


def _make_generator(series_params: dict, symbol_params: dict):
    from s2generator.symbol import Generator, SeriesParams, SymbolParams

    for name, cls, values in (
        ("series_params", SeriesParams, series_params),
        ("symbol_params", SymbolParams, symbol_params),
    ):
        try:
            cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}={values!r}: rejected by s2generator's {cls.__name__} ({error})") from None
    return Generator(series_params=SeriesParams(**series_params), symbol_params=SymbolParams(**symbol_params))


def _check(n: int, length: int, seed: int, time_limit: float, shard_size: int, workers: int) -> None:
    for name, value, low in (
        ("n", n, 1),
        ("length", length, 16),
        ("shard_size", shard_size, 1),
        ("workers", workers, 1),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r}; expected an int >= {low}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}; expected a non-negative int")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit={time_limit!r}; expected CPU seconds > 0")


class _Timeout(BaseException):  # not an Exception: the package's own ``except Exception`` cannot swallow it
    pass


def _on_alarm(signum, frame):
    raise _Timeout


def _draw_shard(args: tuple) -> dict:
    """Draws ``start .. start + count - 1`` (one process). Whether a draw is kept depends only on its
    seed and the package's ``max_trials``; the CPU-time timer (SIGVTALRM) only stops a runaway, loudly."""
    start, count, seed, length, series_params, symbol_params, time_limit = args
    generator = _make_generator(series_params, symbol_params)
    previous, global_state = signal.signal(signal.SIGVTALRM, _on_alarm), np.random.get_state()
    xs, ys, symbols, draws, skipped = [], [], [], [], []
    try:
        for i in range(start, start + count):
            # The package also draws from numpy's global generator (ForecastPFN, KernelSynth, the
            # ``rand`` leaf): seed it per draw too, and give the caller's state back afterwards.
            np.random.seed(np.random.SeedSequence([seed, i, 1]).generate_state(1)[0])
            signal.setitimer(signal.ITIMER_VIRTUAL, time_limit)
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")  # the package's overflow/domain warnings on rejected points
                    symbol, x, y = generator.run(
                        np.random.RandomState([seed, i]), seq_length=length, input_dimension=1, output_dimension=1
                    )
            except _Timeout:
                raise S2DrawTimeout(
                    f"S2 draw {i} of seed {seed} (length {length}) used more than time_limit={time_limit} CPU "
                    "seconds: a runaway, not skipped (skipping by time would make the pool depend on the "
                    "machine). Rerun with a larger time_limit; the shards already written are kept."
                ) from None
            except Exception as error:  # the package raises on some degenerate draws: skip them, as it does
                logger.debug("S2 draw %d failed: %r", i, error)
                symbol = None
            finally:
                signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            if (
                symbol is None
                or x.shape != (length, 1)
                or y.shape != (length, 1)
                or not (np.isfinite(x).all() and np.isfinite(y).all())
            ):
                skipped.append(i)
                continue
            xs.append(x[:, 0])
            ys.append(y[:, 0])
            symbols.append(str(symbol))
            draws.append(i)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
        np.random.set_state(global_state)
    empty = np.zeros((0, length), dtype=np.float32)
    return {
        "excitation": np.asarray(xs, dtype=np.float32) if xs else empty,
        "response": np.asarray(ys, dtype=np.float32) if ys else empty,
        "symbol": np.asarray(symbols, dtype=str),
        "draw": np.asarray(draws, dtype=np.int64),
        "skipped": np.asarray(skipped, dtype=np.int64),
    }


def pool_dir(
    length: int,
    seed: int,
    series_params: dict | None = None,
    symbol_params: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Where the shards of a pool live: one folder per (seed, length, params, package version, keep rule).
    ``time_limit`` is not part of it: it never changes what a pool holds."""
    from importlib.metadata import version

    key = json.dumps(
        {
            "seed": seed,
            "length": length,
            "series": series_params or {},
            "symbol": symbol_params or {},
            "keep": "max_trials",  # draws kept by the package's trial budget (before: by a CPU-time limit)
            "s2generator": version("s2generator"),
        },
        sort_keys=True,
    )
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "s2"
    return root / f"seed{seed}_len{length}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def generate_pool(
    n: int,
    length: int = 1024,
    seed: int = 0,
    *,
    series_params: dict | None = None,
    symbol_params: dict | None = None,
    time_limit: float = TIME_LIMIT,
    shard_size: int = 16,
    workers: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> S2Pool:
    """The first ``n`` successful univariate S2 draws of ``length`` points, generated (in ``workers``
    processes) into the cache if not there yet, resuming from the shards already written.

    ``series_params`` / ``symbol_params`` are keyword arguments of ``s2generator``'s ``SeriesParams`` /
    ``SymbolParams`` (the package's defaults when omitted; ``SymbolParams.max_trials`` is the work
    budget that decides which draws are kept). ``time_limit``: CPU seconds after which a draw raises
    `S2DrawTimeout` (a safety net; it never changes the pool)."""
    _check(n, length, seed, time_limit, shard_size, workers)
    _require_package()
    series_params, symbol_params = dict(series_params or {}), dict(symbol_params or {})
    _make_generator(series_params, symbol_params)  # validate the parameters before any work
    folder = pool_dir(length, seed, series_params, symbol_params, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "params.json").exists():  # shards already written fix the layout; the draws do not depend on it
        shard_size = json.loads((folder / "params.json").read_text())["shard_size"]
    (folder / "params.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "length": length,
                "series_params": series_params,
                "symbol_params": symbol_params,
                "shard_size": shard_size,
                "keep": "max_trials",
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    done = _count(folder)
    shard, t0 = 0, time.time()
    with ProcessPoolExecutor(workers) if workers > 1 else _Inline() as executor:
        while done < n:
            todo = [k for k in range(shard, shard + workers) if not _shard_path(folder, k).exists()]
            jobs = [(k * shard_size, shard_size, seed, length, series_params, symbol_params, time_limit) for k in todo]
            for k, result in zip(todo, executor.map(_draw_shard, jobs)):
                _write_shard(folder, k, result)
            shard += workers
            done = _count(folder)
            logger.info(
                "S2 pool %s: %d/%d draws after %d shards (%.0f s)", folder.name, done, n, shard, time.time() - t0
            )
    return load_pool(
        n,
        length,
        seed,
        series_params=series_params,
        symbol_params=symbol_params,
        cache_dir=cache_dir,
    )


class _Inline:
    """``ProcessPoolExecutor``'s ``map`` in this process (one worker: no pickling, same results)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)


def _shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard_{k:05d}.npz"


def _write_shard(folder: Path, k: int, result: dict) -> None:
    tmp = folder / f".shard_{k:05d}.tmp.npz"
    np.savez_compressed(tmp, **result)
    tmp.replace(_shard_path(folder, k))  # atomic: a reader never sees half a shard


def _shards(folder: Path) -> list[Path]:
    """The consecutive shards 0, 1, 2, ... present (a gap ends the pool: draw order must be kept)."""
    out, k = [], 0
    while _shard_path(folder, k).exists():
        out.append(_shard_path(folder, k))
        k += 1
    return out


def _count(folder: Path) -> int:
    return sum(len(np.load(path)["draw"]) for path in _shards(folder))


def load_pool(
    n: int | None,
    length: int = 1024,
    seed: int = 0,
    *,
    series_params: dict | None = None,
    symbol_params: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    partial: bool = False,
) -> S2Pool:
    """The cached pool: its first ``n`` draws (all with ``n=None``). Raises ``FileNotFoundError`` if
    fewer are cached, unless ``partial`` (then whatever is there, e.g. while generation runs)."""
    folder = pool_dir(length, seed, series_params, symbol_params, cache_dir)
    parts = [dict(np.load(path)) for path in _shards(folder)]
    have = sum(len(p["draw"]) for p in parts)
    if not partial and (have == 0 or (n is not None and have < n)):
        raise FileNotFoundError(
            f"S2 pool {folder} holds {have} draws, {n} asked: run generate_pool first (python -m msft.data.s2 --help)"
        )
    if have == 0:
        empty = np.zeros((0, length), dtype=np.float32)
        return S2Pool(empty, empty.copy(), [], np.zeros(0, dtype=np.int64))
    pool = S2Pool(
        np.concatenate([p["excitation"] for p in parts]),
        np.concatenate([p["response"] for p in parts]),
        [str(s) for p in parts for s in p["symbol"]],
        np.concatenate([p["draw"] for p in parts]),
        [int(i) for p in parts for i in p["skipped"]],
    )
    return pool if n is None else pool[:n]


def evaluate_symbol(symbol: str, x: np.ndarray) -> np.ndarray:
    """``f(x)`` for a recorded symbol string, with the package's own parser and evaluator: ``x`` is
    ``(length,)``, the result ``(length,)`` before the package's z-scoring and random scale (a ``rand``
    leaf draws fresh noise, so only ``rand``-free symbols reproduce their response)."""
    _require_package()
    from s2generator.symbol import Generator

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        tree = Generator().parse_symbol(symbol)
        return np.asarray(tree.val_router(np.asarray(x, dtype=np.float64).reshape(-1, 1)))[:, 0]


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Generate (or extend) a cached S2 pool with s2generator.")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT,
        help="CPU seconds after which a runaway draw stops generation (never skips it: the pool does not depend on it)",
    )
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pool = generate_pool(
        args.n,
        args.length,
        args.seed,
        time_limit=args.time_limit,
        shard_size=args.shard_size,
        workers=args.workers,
        cache_dir=args.cache_dir,
    )
    print(
        f"{len(pool)} draws ({len(pool.skipped)} skipped) in "
        f"{pool_dir(args.length, args.seed, None, None, args.cache_dir)}"
    )


if __name__ == "__main__":
    main()
