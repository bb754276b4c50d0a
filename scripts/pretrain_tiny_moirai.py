"""Pretrain a tiny MOIRAI (uni2ts ``MoiraiModule``) on synthetic series only.

    python scripts/pretrain_tiny_moirai.py --out runs/tiny_moirai --seed 0   # needs msft[pretrain]

The objective is MOIRAI's masked-prediction NLL: every training series is patched with one patch
size (drawn per batch), the last 15–50% of its patches are replaced by the mask embedding
(``prediction_mask``) and the loss is the negative log-likelihood of MOIRAI's mixture head
(StudentT / Normal(fixed scale) / NegBin / LogNormal) on the observed points of the masked patches,
averaged per series (uni2ts' ``PackedNLLLoss`` with one series per row). Normalisation is MOIRAI's
own scaler (statistics of the unmasked patches).

Data: never a benchmark dataset. Each series is S2 series-symbol data (excitations X and responses
Y = f(X) from the authors' ``s2generator``, a seeded pool cached by ``msft.data.s2``), or a random
composition of seasonal profiles (random Fourier shapes) at periods typical of 10-min / 15-min /
hourly / daily data, weekly modulation, trends (linear, piecewise, random walk),
AR(1)/Gaussian/heavy-tailed noise, spikes and sometimes an S2 component, or (``--seasonal-share``) a
clean periodic series; then a random affine scale. ``--scales 1 2 4 8`` generates a batch's series
``s`` times longer and average-pools them by ``s``: the same processes seen at coarser resolutions,
as MSFT's down-sampling builds them. ``--max-tokens 128 --token-sampling log --tokens-per-batch T``
draws contexts up to 128 patches (L = 2048-8192 at patch 16-64) log-uniformly, with fewer series per
batch when they are long. The batch for step ``k`` is drawn from ``default_rng([seed, k])``, so a
resumed run sees exactly the batches a straight run would (with the same ``--pool``).

Resumable: ``--out`` holds ``state.pt`` (weights, optimiser, step), rewritten every
``--checkpoint-minutes``; rerunning the same command continues from it. ``--val-batches N`` scores
N held-out synthetic batches at every checkpoint and keeps that checkpoint's weights under
``out/snapshots/`` (for choosing between them). At the end the module is written with
``MoiraiModule.save_pretrained(out/"model")`` (config.json + model.safetensors), the format every
MOIRAI loader reads.

Broader mix (issue 33): ``--mix p`` replaces a share p of each batch's series by draws of
``msft.data.pretrain_mix.PretrainMix`` (KernelSynth kernel compositions, random walks and integrated
processes, multiplicative seasonality, intermittent and count series; ``--mix-weights kernel=2 ...``
reweights its families; the held-out families are refused), seeded from the batch's generator.
``--horizon-sampling lsf`` draws each batch's horizon H from the LSF horizons (96/192/336/720, divided
by the pooling scale) and a context of up to ``--max-context`` steps, so the masked share is what the LSF
protocol creates (H=96 after L=4096: 2%; H=720 after L=512: 58%).

GPU stage: ``--device cuda --bf16`` (bfloat16 autocast for the forward pass; weights, optimiser and
loss stay float32), large ``--tokens-per-batch`` and ``--workers N`` processes generating the batches
(each batch is still a pure function of ``(seed, step)``, so workers change nothing but speed).
``--dry-run`` runs the same command for 2 steps on the CPU with a tiny batch (4 series), without
the S2 pool, in a temporary directory: it checks the flags, the data path, the autocast path, the
checkpoint and the export, and writes nothing under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import lfilter

from msft.data.pretrain_mix import HELDOUT_FAMILIES, INTEGER_FAMILIES, TRAIN_WEIGHTS, PretrainMix
from msft.data.s2 import TIME_LIMIT as S2_TIME_LIMIT

logger = logging.getLogger("pretrain_tiny_moirai")

MIXTURE = {
    "_target_": "uni2ts.distribution.mixture.MixtureOutput",
    "components": [
        {"_target_": "uni2ts.distribution.student_t.StudentTOutput"},
        {"_target_": "uni2ts.distribution.normal.NormalFixedScaleOutput", "scale": 0.001},
        {"_target_": "uni2ts.distribution.negative_binomial.NegativeBinomialOutput"},
        {"_target_": "uni2ts.distribution.log_normal.LogNormalOutput"},
    ],
}
#: Periods (in steps) of the seasonal components: 10-min/15-min/hourly daily cycles, weekly cycles,
#: daily data's week/month/year, and short cycles.
PERIODS = (4, 7, 12, 24, 30, 48, 52, 96, 144, 168, 288, 365, 672, 1008)
#: The LSF protocol's horizons (steps) for ``--horizon-sampling lsf``.
LSF_HORIZONS = (96, 192, 336, 720)


def tiny_config(d_model: int, num_layers: int, patch_sizes: tuple[int, ...], max_seq_len: int) -> dict:
    """A MoiraiModule config in the format of Salesforce's config.json, with a smaller model."""
    return {
        "attn_dropout_p": 0.0,
        "d_model": d_model,
        "distr_output": MIXTURE,
        "dropout_p": 0.0,
        "max_seq_len": max_seq_len,
        "num_layers": num_layers,
        "patch_sizes": list(patch_sizes),
        "scaling": True,
    }


def make_module(config: dict):
    from uni2ts.model.moirai.module import MoiraiModule, decode_distr_output

    values = dict(config)
    values["distr_output"] = decode_distr_output(values["distr_output"])
    values["patch_sizes"] = tuple(values["patch_sizes"])
    return MoiraiModule(**values)


# -- synthetic series -------------------------------------------------------------------------------
class SeriesPool:
    """Finished series ``(rows, length)`` (S2 excitations and responses), cropped at random per batch."""

    def __init__(self, values: np.ndarray):
        self.values = np.asarray(values, dtype=np.float64)  # (rows, length)

    @classmethod
    def from_s2(cls, n: int, length: int, seed: int, time_limit: float = S2_TIME_LIMIT) -> SeriesPool:
        """The first ``n`` draws of the cached S2 pool (generated first if missing, see msft.data.s2):
        their excitations X and responses Y = f(X) as ``2n`` rows. ``time_limit`` (CPU seconds) only
        stops a runaway draw; which draws the pool holds depends on the seed alone."""
        from msft.data.s2 import generate_pool

        pool = generate_pool(n, length, seed, time_limit=time_limit)
        return cls(np.concatenate([pool.excitation, pool.response]))

    @property
    def length(self) -> int:
        return self.values.shape[1]

    def crop(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        rows = rng.integers(0, len(self.values), n)
        starts = rng.integers(0, self.values.shape[1] - length + 1, n)
        idx = starts[:, None] + np.arange(length)  # (n, length)
        return self.values[rows[:, None], idx]


def seasonal(rng: np.random.Generator, n: int, length: int, max_period: int) -> np.ndarray:
    """Sum of 1–2 periodic profiles (random Fourier shapes, up to 4 harmonics), optionally weekly-modulated."""
    t = np.arange(length)
    out = np.zeros((n, length))
    candidates = np.array([p for p in PERIODS if p <= max_period] or [min(PERIODS)])
    for k in range(2):
        period = rng.choice(candidates, n).astype(float)[:, None]  # (n, 1)
        period *= np.where(rng.uniform(size=(n, 1)) < 0.2, np.exp(rng.normal(0, 0.05, (n, 1))), 1.0)  # off-grid
        active = rng.uniform(size=(n, 1)) < (0.9 if k == 0 else 0.4)
        phase = rng.uniform(0, 2 * np.pi, (n, 1))
        profile = np.zeros((n, length))
        for h in range(1, 5):
            amp = rng.normal(0, 1, (n, 1)) / h ** rng.uniform(0.5, 2.0, (n, 1))
            profile += amp * np.sin(2 * np.pi * h * t / period + h * phase + rng.uniform(0, 2 * np.pi, (n, 1)))
        weekly = rng.uniform(size=(n, 1)) < 0.3  # multiplicative 7-cycle modulation (weekday / weekend)
        week = 1 + 0.5 * rng.uniform(0, 1, (n, 1)) * np.sin(2 * np.pi * t / (7 * period) + phase)
        profile = np.where(weekly, profile * week, profile)
        out += active * profile * rng.uniform(0.3, 2.0, (n, 1))
    return out


def trend(rng: np.random.Generator, n: int, length: int, walk_max: float = 0.3) -> np.ndarray:
    """Linear, piecewise-linear or random-walk level, scaled to a few units over the series."""
    t = np.arange(length) / length
    kind = rng.integers(0, 4, (n, 1))
    linear = rng.normal(0, 1.5, (n, 1)) * t
    knot = rng.uniform(0.2, 0.9, (n, 1))
    piecewise = linear + rng.normal(0, 2, (n, 1)) * np.maximum(t - knot, 0)
    walk = np.cumsum(rng.normal(0, 1, (n, length)), axis=1) * rng.uniform(0.1 * walk_max, walk_max, (n, 1))
    return np.select([kind == 0, kind == 1, kind == 2], [np.zeros((n, length)), linear, piecewise], walk)


def noise(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """Gaussian, AR(1) or Student-t noise with a random level, plus rare spikes."""
    sigma = rng.uniform(0.02, 1.0, (n, 1)) ** 1.5
    white = rng.standard_normal((n, length))
    heavy = rng.standard_t(3, (n, length)) / 1.7
    eps = np.where(rng.uniform(size=(n, 1)) < 0.2, heavy, white)
    phi = np.where(rng.uniform(size=(n, 1)) < 0.5, rng.uniform(0.3, 0.97, (n, 1)), 0.0)
    ar = np.stack([lfilter([1.0], [1.0, -f], row) for f, row in zip(phi[:, 0], eps)])  # AR(1) per series
    ar *= np.sqrt(1 - phi**2)
    spikes = (rng.uniform(size=(n, length)) < 0.002) * rng.normal(0, 4, (n, length)) * (rng.uniform(size=(n, 1)) < 0.2)
    return sigma * ar + spikes


def clean_seasonal(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """Strongly periodic series: on-grid periods, low noise, at most a gentle linear trend. These teach
    the model to continue a cycle from the patch one period back, which the noisier compositions alone
    did not (a pure sine was forecast as its mean)."""
    t = np.arange(length) / length
    x = seasonal(rng, n, length, max_period=length // 3)
    x += (rng.uniform(size=(n, 1)) < 0.3) * rng.normal(0, 1.0, (n, 1)) * t
    return x + rng.uniform(0.02, 0.3, (n, 1)) * rng.standard_normal((n, length))


def synthetic_batch(
    rng: np.random.Generator,
    pool: SeriesPool,
    n: int,
    length: int,
    s2_share: float = 0.25,
    walk_max: float = 0.3,
    seasonal_share: float = 0.0,
) -> np.ndarray:
    """(n, length) composed series: ~25% pure S2, else seasonal + trend + noise (+ a share of S2), and
    with ``seasonal_share`` > 0 that share of clean periodic series. S2 series longer than the pool's
    are not available: such a batch is all compositions."""
    if pool.length >= length:
        s2 = pool.crop(rng, n, length)
        s2 = (s2 - s2.mean(1, keepdims=True)) / (s2.std(1, keepdims=True) + 1e-6)
    else:
        s2, s2_share = np.zeros((n, length)), 0.0
    composed = (
        seasonal(rng, n, length, max_period=length // 3) + trend(rng, n, length, walk_max) + noise(rng, n, length)
    )
    composed += (rng.uniform(size=(n, 1)) < 0.3) * rng.uniform(0.1, 0.8, (n, 1)) * s2
    x = np.where(rng.uniform(size=(n, 1)) < s2_share, s2, composed)
    if seasonal_share > 0:  # drawn only when asked, so earlier recipes keep their exact batches
        x = np.where(rng.uniform(size=(n, 1)) < seasonal_share, clean_seasonal(rng, n, length), x)
    positive = rng.uniform(size=(n, 1)) < 0.1  # count-like / non-negative series for the NegBin/LogNormal parts
    x = np.where(positive, np.maximum(x - x.min(1, keepdims=True), 0) * rng.uniform(1, 20, (n, 1)), x)
    x = np.where(positive & (rng.uniform(size=(n, 1)) < 0.5), np.round(x), x)
    scale = 10 ** rng.uniform(-2, 3, (n, 1))
    offset = rng.normal(0, 1, (n, 1)) * scale * (rng.uniform(size=(n, 1)) < 0.5) * 5
    return x * scale + offset


# -- MOIRAI's masked-prediction inputs ---------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """What one training batch is drawn from (the command-line flags of a stage)."""

    batch_size: int
    patch_sizes: tuple[int, ...]
    max_tokens: int
    max_patch: int
    patch_weights: tuple[float, ...] | None = None
    s2_share: float = 0.25
    walk_max: float = 0.3
    seasonal_share: float = 0.0
    #: Average-pooling factors of the generated series (multi-scale copies of the same processes) and
    #: their relative frequency.
    scales: tuple[int, ...] = (1,)
    scale_weights: tuple[float, ...] | None = None
    min_tokens: int = 6
    #: "uniform" over [min_tokens, max_tokens], or "log" (log-uniform: long contexts without making
    #: every batch long).
    token_sampling: str = "uniform"
    #: If set, a batch holds about this many tokens: fewer series when they are long.
    tokens_per_batch: int | None = None
    #: Longest series generated before pooling; a larger scale is lowered to fit.
    max_raw_length: int = 16384
    #: Share of batches whose masked horizon is only 1-3 patches (H=96 after a long context is 2-3
    #: patches, 2-6% of the tokens, far below the 15-50% masked otherwise).
    short_horizon_share: float = 0.0
    #: Share of each batch's series drawn from the broader mix (msft.data.pretrain_mix) instead.
    mix_share: float = 0.0
    #: ``((family, weight), ...)`` of that mix (None: its training weights).
    mix_weights: tuple[tuple[str, float], ...] | None = None
    #: "share": the last 15-50% of the tokens masked (and ``short_horizon_share``); "lsf": a horizon from
    #: LSF_HORIZONS / scale after a context of up to ``max_context`` steps (before pooling).
    horizon_sampling: str = "share"
    max_context: int = 4096


def _choice(rng: np.random.Generator, values: tuple, weights: tuple[float, ...] | None):
    p = None if weights is None else np.asarray(weights) / np.sum(weights)
    return values[int(rng.choice(len(values), p=p))]


def _tokens(rng: np.random.Generator, recipe: Recipe, low: int, high: int) -> int:
    if recipe.token_sampling == "log":
        return int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))
    return int(rng.integers(low, high + 1))


def lsf_layout(rng: np.random.Generator, recipe: Recipe) -> tuple[int, int, int, int, int]:
    """(patch size, scale, tokens, horizon tokens, horizon steps) of an LSF-like batch: H from
    LSF_HORIZONS divided by the pooling scale, a context of ``min_tokens`` up to ``max_context / scale``
    steps (log-uniform with ``token_sampling="log"``), within ``max_tokens`` and ``max_raw_length``."""
    ps = int(_choice(rng, recipe.patch_sizes, recipe.patch_weights))
    scale = int(_choice(rng, recipe.scales, recipe.scale_weights)) if len(recipe.scales) > 1 else recipe.scales[0]
    horizon = math.ceil(int(rng.choice(LSF_HORIZONS)) / scale)  # steps after pooling
    horizon_tokens = math.ceil(horizon / ps)
    high = min(
        recipe.max_tokens - horizon_tokens,
        recipe.max_context // (scale * ps),
        recipe.max_raw_length // (scale * ps) - horizon_tokens,
    )
    context_tokens = _tokens(rng, recipe, min(recipe.min_tokens, max(high, 1)), max(high, 1))
    return ps, scale, context_tokens + horizon_tokens, horizon_tokens, horizon


def with_mix(rng: np.random.Generator, values: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Replace a share ``mix_share`` of the rows by PretrainMix draws (seeded from ``rng``); the
    continuous families get a random scale, the count families stay non-negative integers."""
    rows = np.flatnonzero(rng.uniform(size=len(values)) < recipe.mix_share)
    seed = int(rng.integers(2**62))
    if rows.size:
        mix = PretrainMix(dict(recipe.mix_weights)) if recipe.mix_weights else PretrainMix()
        sample = mix.sample(rows.size, values.shape[1], seed)
        scale = np.where(np.isin(sample.family, INTEGER_FAMILIES), 1.0, 10 ** rng.uniform(-2, 3, rows.size))
        values = values.copy()
        values[rows] = sample.values * scale[:, None]
    return values


def masked_batch(rng: np.random.Generator, pool: SeriesPool, recipe: Recipe) -> dict[str, torch.Tensor]:
    """One batch in MoiraiModule.forward's layout: one patch size, one pooling scale, the last 15–50%
    of patches masked (or an LSF horizon, ``recipe.horizon_sampling == "lsf"``)."""
    lsf_horizon = None
    if recipe.horizon_sampling == "lsf":
        ps, scale, tokens, horizon_tokens, lsf_horizon = lsf_layout(rng, recipe)
        batch_size = recipe.batch_size
        if recipe.tokens_per_batch is not None:
            batch_size = int(np.clip(recipe.tokens_per_batch // tokens, 4, recipe.batch_size))
    else:  # the draws of stages 1-4, in their order, so their batches stay exactly the same
        ps = int(_choice(rng, recipe.patch_sizes, recipe.patch_weights))
        tokens = _tokens(rng, recipe, min(recipe.min_tokens, recipe.max_tokens), recipe.max_tokens)
        horizon_tokens = max(1, int(round(tokens * rng.uniform(0.15, 0.5))))
        if recipe.short_horizon_share > 0 and rng.uniform() < recipe.short_horizon_share:  # drawn only when asked
            horizon_tokens = min(horizon_tokens, int(rng.integers(1, 4)), tokens - 1)
        batch_size = recipe.batch_size
        if recipe.tokens_per_batch is not None:
            batch_size = int(np.clip(recipe.tokens_per_batch // tokens, 4, recipe.batch_size))
        scale = int(_choice(rng, recipe.scales, recipe.scale_weights)) if len(recipe.scales) > 1 else recipe.scales[0]
        while scale > 1 and tokens * ps * scale > recipe.max_raw_length:
            scale //= 2
    values = synthetic_batch(
        rng, pool, batch_size, tokens * ps * scale, recipe.s2_share, recipe.walk_max, recipe.seasonal_share
    )  # (batch, tokens * ps * scale)
    if recipe.mix_share > 0:  # drawn only when asked, so earlier recipes keep their exact batches
        values = with_mix(rng, values, recipe)
    # The coarse view of the same process: non-overlapping means, as msft's down-sampling.
    values = values.reshape(batch_size, tokens * ps, scale).mean(-1)  # (batch, tokens * ps)
    observed = np.ones_like(values, dtype=bool)
    # Left padding as MOIRAI sees it when the context is not a multiple of the patch size, and the
    # odd missing value.
    pad = rng.integers(0, ps, batch_size) * (rng.uniform(size=batch_size) < 0.3)
    observed &= np.arange(values.shape[1])[None, :] >= pad[:, None]
    observed &= rng.uniform(size=values.shape) > np.where(rng.uniform(size=(batch_size, 1)) < 0.1, 0.05, 0.0)
    # A partial last horizon patch (a horizon that is not a multiple of the patch size).
    cut = rng.integers(0, ps, batch_size) * (rng.uniform(size=batch_size) < 0.3)
    if lsf_horizon is not None:  # exactly the LSF horizon: the points past it in the last patch are unobserved
        cut = np.full(batch_size, horizon_tokens * ps - lsf_horizon)
    observed &= np.arange(values.shape[1])[None, ::-1] >= cut[:, None]
    values = np.where(observed, values, 0.0)
    target = torch.zeros(batch_size, tokens, recipe.max_patch)
    seen = torch.zeros(batch_size, tokens, recipe.max_patch, dtype=torch.bool)
    target[..., :ps] = torch.from_numpy(values.reshape(batch_size, tokens, ps)).float()
    seen[..., :ps] = torch.from_numpy(observed.reshape(batch_size, tokens, ps))
    prediction_mask = torch.zeros(batch_size, tokens, dtype=torch.bool)
    prediction_mask[:, tokens - horizon_tokens :] = True
    return {
        "target": target,  # (batch, tokens, max_patch)
        "observed_mask": seen,
        # uni2ts treats sample_id 0 as packing padding (its scaler then returns loc 0, scale 1).
        "sample_id": torch.ones(batch_size, tokens, dtype=torch.long),
        "time_id": torch.arange(tokens).expand(batch_size, tokens).clone(),
        "variate_id": torch.zeros(batch_size, tokens, dtype=torch.long),
        "prediction_mask": prediction_mask,
        "patch_size": torch.full((batch_size, tokens), ps, dtype=torch.long),
    }


def masked_nll(module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """uni2ts PackedNLLLoss for one series per row: mean NLL over each series' masked observed points."""
    distr = module(**batch)
    nll = -distr.log_prob(batch["target"])  # (batch, tokens, max_patch)
    mask = batch["prediction_mask"].unsqueeze(-1) & batch["observed_mask"]
    per_series = torch.where(mask, nll, 0.0).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)
    return per_series[mask.any(2).any(1)].mean()


def init_from_checkpoint(module, config: dict, directory: Path) -> None:
    """Copy a saved MOIRAI's weights into ``module``; its config must describe the same architecture."""
    from safetensors.torch import load_file

    saved = json.loads((directory / "config.json").read_text())
    different = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
    if different:
        raise ValueError(
            f"--init-from {directory}: its config differs from the requested architecture in "
            f"{different} (saved, requested); pass matching --d-model/--num-layers/--patch-sizes/--max-seq-len"
        )
    module.load_state_dict(load_file(directory / "model.safetensors"))


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="series per batch (the most, with --tokens-per-batch)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--patch-sizes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument(
        "--patch-weights",
        type=float,
        nargs="+",
        default=[1.0, 2.0, 1.0],
        help="relative frequency of each patch size in training batches (default: patch 32, the LSF one, twice as often)",
    )
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--min-tokens", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=24, help="tokens per training series (context + masked)")
    p.add_argument(
        "--token-sampling",
        choices=("uniform", "log"),
        default="uniform",
        help="tokens per series uniform or log-uniform in [min-tokens, max-tokens]",
    )
    p.add_argument(
        "--tokens-per-batch",
        type=int,
        default=None,
        help="about this many tokens per batch: batch size = tokens-per-batch // tokens, within [4, --batch-size]",
    )
    p.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=[1],
        help="average-pooling factors of the generated series (multi-scale copies), one per batch",
    )
    p.add_argument("--scale-weights", type=float, nargs="+", default=None, help="relative frequency of each scale")
    p.add_argument("--max-raw-length", type=int, default=16384, help="longest series generated before pooling")
    p.add_argument(
        "--short-horizon-share",
        type=float,
        default=0.0,
        help="share of batches whose masked horizon is only 1-3 patches (long context, short horizon)",
    )
    p.add_argument(
        "--horizon-sampling",
        choices=("share", "lsf"),
        default="share",
        help="share: the last 15-50%% of the tokens masked; lsf: an LSF horizon (96/192/336/720 / scale) "
        "after a context of up to --max-context steps",
    )
    p.add_argument("--max-context", type=int, default=4096, help="longest context (steps before pooling), lsf")
    p.add_argument(
        "--mix",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of each batch drawn from msft.data.pretrain_mix (kernel compositions, walks, "
        "multiplicative seasonality, intermittent and count series) instead",
    )
    p.add_argument(
        "--mix-weights",
        nargs="+",
        default=None,
        metavar="FAMILY=WEIGHT",
        help=f"relative weights of the mix's families (default {TRAIN_WEIGHTS})",
    )
    p.add_argument("--s2-share", type=float, default=0.25, help="share of pure S2 series in a batch")
    p.add_argument("--walk-max", type=float, default=0.3, help="largest random-walk step of the trend component")
    p.add_argument(
        "--seasonal-share",
        type=float,
        default=0.0,
        help="share of clean periodic series (on-grid periods, low noise) in a batch",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from this MOIRAI checkpoint's weights (config.json + model.safetensors) with a fresh "
        "optimiser, when out/ holds no state.pt yet; the architecture flags must match its config",
    )
    p.add_argument(
        "--pool",
        type=int,
        default=1024,
        help="S2 draws (s2generator, msft.data.s2; cached) whose excitations and responses are cropped "
        "(0: no S2 series)",
    )
    p.add_argument("--s2-length", type=int, default=2048, help="length of each S2 draw")
    p.add_argument("--s2-seed", type=int, default=0, help="seed of the S2 pool (the same for every stage)")
    p.add_argument(
        "--s2-time-limit",
        type=float,
        default=S2_TIME_LIMIT,
        help="CPU seconds after which a runaway S2 draw stops generation (a safety net: it never changes "
        "which draws the pool holds)",
    )
    p.add_argument("--checkpoint-minutes", type=float, default=2.0)
    p.add_argument(
        "--val-batches",
        type=int,
        default=0,
        help="held-out synthetic batches (their own seed) scored at every checkpoint; the scores are in "
        "the log and train_log.json, the weights of each scored checkpoint in out/snapshots/",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="train at most this many steps in this invocation, then save state.pt and stop",
    )
    p.add_argument(
        "--export-only",
        action="store_true",
        help="write out/model from the current state.pt without training (to evaluate a run in progress)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is several times faster than 2 on a contended 2-core machine",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass (GPU stages)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes generating batches ahead of the training step (0: in this process); the "
        "batches are the same either way",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run this command for 2 steps on the CPU with 4 series per batch and no S2 pool, in a "
        "temporary directory (nothing is written under --out), and report the step time",
    )
    p.add_argument(
        "--dry-run-report",
        type=Path,
        default=None,
        help="with --dry-run: also write its report (JSON, with this command line) to this file",
    )
    p.add_argument(
        "--dry-run-batches",
        type=int,
        default=3,
        help="with --dry-run: full-size batches of the command's recipe generated (not trained) to time "
        "the data path, in CPU seconds per batch",
    )
    args = p.parse_args(argv)
    if args.mix_weights is not None:
        raw, weights = " ".join(args.mix_weights), {}
        for item in args.mix_weights:
            name, sep, weight = item.partition("=")
            try:
                weights[name] = float(weight)
            except ValueError:
                sep = ""
            if not sep:
                raise ValueError(f"--mix-weights {raw}: expected FAMILY=WEIGHT pairs, got {item!r}")
        args.mix_weights = weights
        held_out = sorted(set(args.mix_weights) & set(HELDOUT_FAMILIES))
        if held_out:
            raise ValueError(f"--mix-weights: {held_out} are held out for the zero-shot report, not for training")
        PretrainMix(args.mix_weights)  # names and weights validated here
    if not 0 <= args.mix <= 1:
        raise ValueError(f"--mix {args.mix}: expected a share in [0, 1]")
    if args.horizon_sampling == "lsf":
        longest = math.ceil(max(LSF_HORIZONS) / min(args.scales) / min(args.patch_sizes))
        if args.max_tokens < longest + 1:
            raise ValueError(
                f"--max-tokens {args.max_tokens}: --horizon-sampling lsf needs at least {longest + 1} (H=720 at "
                f"patch {min(args.patch_sizes)} and scale {min(args.scales)} is {longest} tokens, plus a context)"
            )
    for flag, weights, values in (
        ("--patch-weights", args.patch_weights, args.patch_sizes),
        ("--scale-weights", args.scale_weights, args.scales),
    ):
        if weights is not None and len(weights) != len(values):
            raise ValueError(f"{flag} {weights}: expected one weight per value {values}")
    if any(s < 1 for s in args.scales):
        raise ValueError(f"--scales {args.scales}: expected pooling factors >= 1")
    if not 1 <= args.min_tokens <= args.max_tokens:
        raise ValueError(f"--min-tokens {args.min_tokens} / --max-tokens {args.max_tokens}: expected 1 <= min <= max")
    if args.max_tokens > args.max_seq_len:
        raise ValueError(f"--max-tokens {args.max_tokens} exceeds --max-seq-len {args.max_seq_len}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available() and not args.dry_run:
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
    return args


def recipe_of(args: argparse.Namespace) -> Recipe:
    return Recipe(
        args.batch_size,
        tuple(args.patch_sizes),
        args.max_tokens,
        max(args.patch_sizes),
        None if args.patch_weights is None else tuple(args.patch_weights),
        args.s2_share,
        args.walk_max,
        args.seasonal_share,
        tuple(args.scales),
        None if args.scale_weights is None else tuple(args.scale_weights),
        args.min_tokens,
        args.token_sampling,
        args.tokens_per_batch,
        args.max_raw_length,
        args.short_horizon_share,
        args.mix,
        None if args.mix_weights is None else tuple(args.mix_weights.items()),
        args.horizon_sampling,
        args.max_context,
    )


# -- batches, in this process or in workers ----------------------------------------------------------
_WORKER: dict = {}


def _init_worker(seed: int, pool: SeriesPool, recipe: Recipe) -> None:
    torch.set_num_threads(1)
    _WORKER.update(seed=seed, pool=pool, recipe=recipe)


def _worker_batch(step: int) -> dict[str, np.ndarray]:
    batch = masked_batch(np.random.default_rng([_WORKER["seed"], step]), _WORKER["pool"], _WORKER["recipe"])
    return {k: v.numpy() for k, v in batch.items()}  # plain arrays through the pipe (no shared-memory tensors)


def batches(seed: int, pool: SeriesPool, recipe: Recipe, steps: range, workers: int = 0):
    """The batch of each step, ``masked_batch(default_rng([seed, step]))``: with ``workers`` > 0
    generated by that many forked processes, at most 2 per worker ahead of the consumer."""
    if workers <= 0:
        for step in steps:
            yield masked_batch(np.random.default_rng([seed, step]), pool, recipe)
        return
    # fork, as torch's DataLoader on Linux: the children use numpy and CPU torch only, never CUDA.
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(seed, pool, recipe)) as procs:
        ahead: deque = deque()
        todo = iter(steps)
        for step in todo:
            ahead.append(procs.apply_async(_worker_batch, (step,)))
            if len(ahead) >= 2 * workers:
                break
        while ahead:
            batch = ahead.popleft().get()
            step = next(todo, None)
            if step is not None:
                ahead.append(procs.apply_async(_worker_batch, (step,)))
            yield {k: torch.from_numpy(v) for k, v in batch.items()}


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.dry_run:
        return dry_run(args, list(sys.argv[1:] if argv is None else argv))
    train(args)
    return None


def dry_run(args: argparse.Namespace, argv: list[str]) -> dict:
    """The command's recipe, model, autocast, checkpoint and export for 2 steps on the CPU with 4
    series per batch and no S2 pool, in a temporary directory; then the CPU time to generate
    ``--dry-run-batches`` full-size batches of the command's own recipe (what a GPU stage's
    ``--workers`` must keep up with). Returns what it measured."""
    with tempfile.TemporaryDirectory(prefix="pretrain_dry_run_") as tmp:
        tiny = argparse.Namespace(**vars(args))
        tiny.out, tiny.device, tiny.pool = Path(tmp), "cpu", 0
        tiny.batch_size, tiny.tokens_per_batch = min(args.batch_size, 4), None
        tiny.stop_after, tiny.val_batches, tiny.checkpoint_minutes = 2, min(args.val_batches, 1), 1e9
        tiny.workers = min(args.workers, 2)
        state = train(tiny)
        export(state["module"], state["config"], Path(tmp) / "model")
        report = {
            "steps": state["step"],
            "losses": [round(x, 4) for x in state["losses"]],
            "seconds_per_step": round(state["elapsed"] / max(state["step"], 1), 3),
            "tokens": state["tokens"],
            "device_asked": args.device,
            "bf16": args.bf16,
            "written": sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*") if p.is_file()),
        }
    recipe, cpu, sizes = recipe_of(args), [], []
    for k in range(args.dry_run_batches):  # the full recipe, without S2 series (cropping them is cheap)
        t0 = time.process_time()
        batch = masked_batch(np.random.default_rng([args.seed, k]), SeriesPool(np.zeros((0, 0))), recipe)
        cpu.append(time.process_time() - t0)
        sizes.append(int(batch["prediction_mask"].numel()))
    report["full_batches"] = {
        "count": len(cpu),
        "cpu_seconds_per_batch": round(float(np.mean(cpu)), 3) if cpu else None,
        "tokens_per_batch": round(float(np.mean(sizes))) if sizes else None,
    }
    logger.info("dry run (nothing kept): %s", json.dumps(report))
    if args.dry_run_report is not None:
        command = "python scripts/pretrain_tiny_moirai.py " + " ".join(argv)
        report_file = {"command": command, "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}"}
        args.dry_run_report.parent.mkdir(parents=True, exist_ok=True)
        args.dry_run_report.write_text(json.dumps(report_file | report, indent=1) + "\n")
    return report


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)

    config = tiny_config(args.d_model, args.num_layers, tuple(args.patch_sizes), args.max_seq_len)
    torch.manual_seed(args.seed)
    module = make_module(config).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    state_path = args.out / "state.pt"
    step, elapsed, history, validation = 0, 0.0, [], []
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location=device)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        validation = state.get("validation", [])
        logger.info("resumed at step %d (%.0f s trained)", step, elapsed)
    elif args.init_from is not None:
        init_from_checkpoint(module, config, args.init_from)
        logger.info("initialised from %s", args.init_from)
    if args.pool > 0:
        pool = SeriesPool.from_s2(args.pool, args.s2_length, args.s2_seed, args.s2_time_limit)
    else:  # no S2 series: every batch is compositions (and the mix)
        pool = SeriesPool(np.zeros((0, 0)))
    recipe = recipe_of(args)
    logger.info(
        "S2 pool: %d draws of length %d (excitations and responses); recipe %s", args.pool, args.s2_length, recipe
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def to_device(batch):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def validate() -> float:
        """Mean masked NLL on fixed held-out batches (seeded apart from every training batch)."""
        module.eval()
        with torch.no_grad(), autocast:
            losses = [
                masked_nll(
                    module, to_device(masked_batch(np.random.default_rng([10**6 + args.seed, j]), pool, recipe))
                ).item()
                for j in range(args.val_batches)
            ]
        module.train()
        return float(np.mean(losses))

    def save_state():
        if args.val_batches and (not validation or validation[-1]["step"] != step):
            validation.append({"step": step, "val_loss": round(validate(), 5), "elapsed_s": round(elapsed, 1)})
            logger.info("step %d held-out synthetic loss %.4f", step, validation[-1]["val_loss"])
            export(module, config, args.out / "snapshots" / f"step_{step:06d}")
        torch.save(
            {
                "module": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "history": history,
                "validation": validation,
                "args": vars(args) | {"out": str(args.out)},
            },
            state_path.with_suffix(".tmp"),
        )
        state_path.with_suffix(".tmp").replace(state_path)

    module.train()
    last_save, window, losses, tokens = time.time(), [], [], []
    stop = args.steps if args.stop_after is None else min(args.steps, step + args.stop_after)
    stream = batches(args.seed, pool, recipe, range(step, stop), args.workers)
    while step < stop and not args.export_only:
        t0 = time.time()
        batch = to_device(next(stream))
        tokens.append(int(batch["prediction_mask"].numel()))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        with autocast:
            loss = masked_nll(module, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        step += 1
        elapsed += time.time() - t0
        window.append(loss.item())
        losses.append(window[-1])
        if step % 10 == 0:
            history.append({"step": step, "loss": float(np.mean(window)), "elapsed_s": round(elapsed, 1)})
            logger.info(
                "step %d loss %.4f lr %.2e %.2f s/step",
                step,
                np.mean(window),
                optimizer.param_groups[0]["lr"],
                elapsed / step,
            )
            window = []
        if time.time() - last_save > 60 * args.checkpoint_minutes:
            save_state()
            last_save = time.time()
    stream.close()  # stops the workers, if any
    if not args.export_only:
        save_state()
    result = {"module": module, "config": config, "step": step, "elapsed": elapsed, "losses": losses, "tokens": tokens}
    if step < args.steps and not args.export_only:
        logger.info("stopped at step %d of %d; rerun the command to continue", step, args.steps)
        return result
    export(module, config, args.out / "model")
    (args.out / "train_log.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "steps": step,
                "train_seconds": round(elapsed, 1),
                "history": history,
                "validation": validation,
            },
            indent=1,
        )
        + "\n"
    )
    logger.info("done: %d steps in %.0f s -> %s", step, elapsed, args.out / "model")
    return result


def export(module, config: dict, directory: Path) -> None:
    """An ordinary MOIRAI checkpoint directory (config.json + model.safetensors, float32 on CPU)."""
    cpu = make_module(config)
    cpu.load_state_dict({k: v.detach().float().cpu() for k, v in module.state_dict().items()})
    cpu.save_pretrained(directory)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
