"""Pretrain a tiny MOIRAI (uni2ts ``MoiraiModule``) from scratch on synthetic series only.

    nice -n 10 python scripts/pretrain_tiny_moirai.py --out runs/tiny_moirai --seed 0

The objective is MOIRAI's masked-prediction NLL: every training series is patched with one patch
size (drawn per batch), the last 15–50% of its patches are replaced by the mask embedding
(``prediction_mask``) and the loss is the negative log-likelihood of MOIRAI's mixture head
(StudentT / Normal(fixed scale) / NegBin / LogNormal) on the observed points of the masked patches,
averaged per series (uni2ts' ``PackedNLLLoss`` with one series per row). Normalisation is MOIRAI's
own scaler (statistics of the unmasked patches).

Data: never a benchmark dataset. Each series is a random composition of
S2 series (``msft.data.synthetic.s2_series``: mixture draws or stationary ARMA),
seasonal profiles (random Fourier shapes) at periods typical of 10-min / 15-min / hourly / daily data,
weekly modulation, trends (linear, piecewise, random walk), AR(1)/Gaussian/heavy-tailed noise, spikes,
and a random affine scale. The batch for step ``k`` is drawn from ``default_rng([seed, k])``, so a
resumed run sees exactly the batches a straight run would.

Resumable: ``--out`` holds ``state.pt`` (weights, optimiser, step), rewritten every
``--checkpoint-minutes``; rerunning the same command continues from it. At the end the module is
written with ``MoiraiModule.save_pretrained(out/"model")`` (config.json + model.safetensors), the
format every MOIRAI loader reads.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from msft.data.synthetic import s2_series

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
    """S2 series generated once (their ARMA recursion loops over time), cropped at random per batch."""

    def __init__(self, n_series: int, length: int, seed: int):
        self.values = s2_series(n_series, length, seed=seed)  # (pool, length)

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
        active = (rng.uniform(size=(n, 1)) < (0.9 if k == 0 else 0.4))
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
    ar = np.empty_like(eps)
    ar[:, 0] = eps[:, 0]
    for i in range(1, length):  # AR(1) recursion, vectorised over series
        ar[:, i] = phi[:, 0] * ar[:, i - 1] + eps[:, i]
    ar *= np.sqrt(1 - phi ** 2)
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


def synthetic_batch(rng: np.random.Generator, pool: SeriesPool, n: int, length: int, s2_share: float = 0.25,
                    walk_max: float = 0.3, seasonal_share: float = 0.0) -> np.ndarray:
    """(n, length) composed series: ~25% pure S2, else seasonal + trend + noise (+ a share of S2), and
    with ``seasonal_share`` > 0 that share of clean periodic series."""
    s2 = pool.crop(rng, n, length)
    s2 = (s2 - s2.mean(1, keepdims=True)) / (s2.std(1, keepdims=True) + 1e-6)
    composed = seasonal(rng, n, length, max_period=length // 3) + trend(rng, n, length, walk_max) + noise(rng, n, length)
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
def masked_batch(rng: np.random.Generator, pool: SeriesPool, batch_size: int, patch_sizes: tuple[int, ...],
                 max_tokens: int, max_patch: int, patch_weights: tuple[float, ...] | None = None,
                 s2_share: float = 0.25, walk_max: float = 0.3, seasonal_share: float = 0.0) -> dict[str, torch.Tensor]:
    """One batch in MoiraiModule.forward's layout: one patch size, the last 15–50% of patches masked."""
    weights = None if patch_weights is None else np.asarray(patch_weights) / np.sum(patch_weights)
    ps = int(rng.choice(patch_sizes, p=weights))
    tokens = int(rng.integers(min(6, max_tokens), max_tokens + 1))
    horizon_tokens = max(1, int(round(tokens * rng.uniform(0.15, 0.5))))
    values = synthetic_batch(rng, pool, batch_size, tokens * ps, s2_share, walk_max, seasonal_share)  # (batch, tokens * ps)
    observed = np.ones_like(values, dtype=bool)
    # Left padding as MOIRAI sees it when the context is not a multiple of the patch size, and the
    # odd missing value.
    pad = rng.integers(0, ps, batch_size) * (rng.uniform(size=batch_size) < 0.3)
    observed &= np.arange(values.shape[1])[None, :] >= pad[:, None]
    observed &= rng.uniform(size=values.shape) > np.where(rng.uniform(size=(batch_size, 1)) < 0.1, 0.05, 0.0)
    # A partial last horizon patch (a horizon that is not a multiple of the patch size).
    cut = rng.integers(0, ps, batch_size) * (rng.uniform(size=batch_size) < 0.3)
    observed &= np.arange(values.shape[1])[None, ::-1] >= cut[:, None]
    values = np.where(observed, values, 0.0)
    target = torch.zeros(batch_size, tokens, max_patch)
    seen = torch.zeros(batch_size, tokens, max_patch, dtype=torch.bool)
    target[..., :ps] = torch.from_numpy(values.reshape(batch_size, tokens, ps)).float()
    seen[..., :ps] = torch.from_numpy(observed.reshape(batch_size, tokens, ps))
    prediction_mask = torch.zeros(batch_size, tokens, dtype=torch.bool)
    prediction_mask[:, tokens - horizon_tokens:] = True
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
        raise ValueError(f"--init-from {directory}: its config differs from the requested architecture in "
                         f"{different} (saved, requested); pass matching --d-model/--num-layers/--patch-sizes/--max-seq-len")
    module.load_state_dict(load_file(directory / "model.safetensors"))


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--patch-sizes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--patch-weights", type=float, nargs="+", default=[1.0, 2.0, 1.0],
                   help="relative frequency of each patch size in training batches (default: patch 32, the LSF one, twice as often)")
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=24, help="tokens per training series (context + masked)")
    p.add_argument("--s2-share", type=float, default=0.25, help="share of pure S2 series in a batch")
    p.add_argument("--walk-max", type=float, default=0.3, help="largest random-walk step of the trend component")
    p.add_argument("--seasonal-share", type=float, default=0.0,
                   help="share of clean periodic series (on-grid periods, low noise) in a batch")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from this MOIRAI checkpoint's weights (config.json + model.safetensors) with a fresh "
                        "optimiser, when out/ holds no state.pt yet; the architecture flags must match its config")
    p.add_argument("--pool", type=int, default=1024, help="S2 series generated up front")
    p.add_argument("--checkpoint-minutes", type=float, default=2.0)
    p.add_argument("--stop-after", type=int, default=None,
                   help="train at most this many steps in this invocation, then save state.pt and stop")
    p.add_argument("--export-only", action="store_true",
                   help="write out/model from the current state.pt without training (to evaluate a run in progress)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is several times faster than 2 on a contended 2-core machine")
    args = p.parse_args(argv)
    if args.patch_weights is not None and len(args.patch_weights) != len(args.patch_sizes):
        raise ValueError(f"--patch-weights {args.patch_weights}: expected one weight per patch size {args.patch_sizes}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    config = tiny_config(args.d_model, args.num_layers, tuple(args.patch_sizes), args.max_seq_len)
    torch.manual_seed(args.seed)
    module = make_module(config)
    optimizer = torch.optim.AdamW(module.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    state_path = args.out / "state.pt"
    step, elapsed, history = 0, 0.0, []
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        logger.info("resumed at step %d (%.0f s trained)", step, elapsed)
    elif args.init_from is not None:
        init_from_checkpoint(module, config, args.init_from)
        logger.info("initialised from %s", args.init_from)
    pool = SeriesPool(args.pool, 4 * args.max_tokens * max(args.patch_sizes), seed=args.seed)
    max_patch = max(args.patch_sizes)

    def save_state():
        torch.save({"module": module.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "elapsed": elapsed, "history": history, "args": vars(args) | {"out": str(args.out)}},
                   state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)

    module.train()
    last_save, window = time.time(), []
    stop = args.steps if args.stop_after is None else min(args.steps, step + args.stop_after)
    while step < stop and not args.export_only:
        t0 = time.time()
        rng = np.random.default_rng([args.seed, step])
        batch = masked_batch(rng, pool, args.batch_size, tuple(args.patch_sizes), args.max_tokens, max_patch,
                             args.patch_weights, args.s2_share, args.walk_max, args.seasonal_share)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss = masked_nll(module, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        step += 1
        elapsed += time.time() - t0
        window.append(loss.item())
        if step % 10 == 0:
            history.append({"step": step, "loss": float(np.mean(window)), "elapsed_s": round(elapsed, 1)})
            logger.info("step %d loss %.4f lr %.2e %.2f s/step", step, np.mean(window),
                        optimizer.param_groups[0]["lr"], elapsed / step)
            window = []
        if time.time() - last_save > 60 * args.checkpoint_minutes:
            save_state()
            last_save = time.time()
    if not args.export_only:
        save_state()
    if step < args.steps and not args.export_only:
        logger.info("stopped at step %d of %d; rerun the command to continue", step, args.steps)
        return
    module.save_pretrained(args.out / "model")
    (args.out / "model" / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (args.out / "train_log.json").write_text(json.dumps(
        {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "steps": step, "train_seconds": round(elapsed, 1),
         "history": history}, indent=1) + "\n")
    logger.info("done: %d steps in %.0f s -> %s", step, elapsed, args.out / "model")


if __name__ == "__main__":
    main()
