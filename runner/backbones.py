"""Backbone builders for the ``backbone`` config group: functions returning an ``nn.Module``.

A builder's arguments are the keys of its yaml file (``_target_`` names the builder), so adding a
backbone family is adding one yaml file (and, when its constructor does not already fit, a builder).

The toy backbone has no published weights. So that "zero-shot" and "finetuning" mean what they mean
for a real foundation model, `toy` can pretrain it on S2 synthetic series (docs/design.md §5) — data that
share nothing with the benchmark — and caches the result under ``<MSFT_CACHE_DIR>/pretrained``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msft_backbones.toy import ToyForecaster

logger = logging.getLogger(__name__)


def toy(
    patch_size: int = 8,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_ratio: int = 2,
    dropout: float = 0.0,
    pretrain_steps: int = 0,
    pretrain_context: int = 256,
    pretrain_horizon: int = 96,
    pretrain_batch_size: int = 64,
    pretrain_lr: float = 1e-3,
    seed: int = 0,
) -> ToyForecaster:
    """A `ToyForecaster`; with ``pretrain_steps > 0`` pretrained on S2 series (cached by its arguments)."""
    arch = dict(
        patch_size=patch_size,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
    )
    torch.manual_seed(seed)
    model = ToyForecaster(**arch)
    if pretrain_steps <= 0:
        return model
    recipe = dict(
        arch,
        steps=pretrain_steps,
        context=pretrain_context,
        horizon=pretrain_horizon,
        batch_size=pretrain_batch_size,
        lr=pretrain_lr,
        seed=seed,
    )
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = _cache_dir() / f"toy-s2-{key}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("toy backbone: loaded S2-pretrained weights %s", path)
        return model
    logger.info("toy backbone: pretraining on S2 synthetic series for %d steps (cached at %s)", pretrain_steps, path)
    _pretrain_s2(model, recipe)
    _save_atomic(model.state_dict(), path)
    return model


def _pretrain_s2(model: ToyForecaster, recipe: dict) -> None:
    """Plain MSE training on random windows of S2 series with trend and seasonality."""
    from msft.data.synthetic import add_trend_seasonality, s2_series

    context, horizon, batch = recipe["context"], recipe["horizon"], recipe["batch_size"]
    length = 4 * (context + horizon)
    series = add_trend_seasonality(s2_series(512, length, seed=recipe["seed"]), recipe["seed"] + 1)
    series = torch.as_tensor(series, dtype=torch.float32)  # (series, time)
    rng = np.random.default_rng(recipe["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe["steps"])
    model.train()
    for _ in range(recipe["steps"]):
        rows = torch.as_tensor(rng.integers(0, series.shape[0], batch))
        starts = torch.as_tensor(rng.integers(0, length - context - horizon + 1, batch))
        index = starts[:, None] + torch.arange(context + horizon)  # (batch, context + horizon)
        window = series[rows[:, None], index]
        past, future = window[:, :context], window[:, context:]
        # Targets on the context's own scale, as the benchmark's z-scored data are.
        loc, scale = past.mean(-1, keepdim=True), past.std(-1, keepdim=True) + 1e-5
        pred = model((past - loc) / scale, horizon)
        loss = torch.nn.functional.mse_loss(pred, (future - loc) / scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


def _cache_dir() -> Path:
    from msft.data.files import cache_root

    return cache_root() / "pretrained"


def _save_atomic(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def build_backbone(cfg: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Instantiate a ``backbone`` config; return the module and its ``wrap_options`` (the `msft.wrap`
    options every method on this backbone needs, e.g. MOIRAI's ``patch_size``), which are not
    arguments of the builder."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    wrap_options = values.pop("wrap_options", None) or {}
    return instantiate(values), dict(wrap_options)


def moirai(source: str | None = None, config: str | None = None, seed: int = 0) -> torch.nn.Module:
    """A uni2ts `MoiraiModule`: pretrained from ``source`` (hub id or local directory), or with random
    weights and the geometry of ``config`` (a config.json or its directory)."""
    from msft_backbones.moirai import load_moirai, moirai_from_config

    if (source is None) == (config is None):
        raise ValueError(f"moirai: give exactly one of source={source!r} (pretrained) or config={config!r} (random)")
    return load_moirai(source) if source is not None else moirai_from_config(config, seed=seed)


def moment(
    source: str | None = None, t5_config: str | dict | None = None, forecast_horizon: int = 96, seed: int = 0
) -> torch.nn.Module:
    """A momentfm MOMENT: pretrained from ``source`` (hub id, size name or local directory), or with
    random weights from a T5 geometry ``t5_config`` ("small", "base", "large" or a dict)."""
    from msft_backbones.moment import build_moment, load_moment

    if (source is None) == (t5_config is None):
        raise ValueError(f"moment: give exactly one of source={source!r} or t5_config={t5_config!r}")
    torch.manual_seed(seed)
    if source is not None:
        return load_moment(source, forecast_horizon=forecast_horizon)
    return build_moment(t5_config, forecast_horizon=forecast_horizon)


def time_dpd(tiny_llm: str | None = None, seed: int = 1, **config: Any) -> torch.nn.Module:
    """Time-DPD: its LLM from ``config["llm"]`` (hub id or local directory), or, with ``tiny_llm`` set
    to "qwen2", "llama" or "gpt2", a tiny random decoder built offline (smoke runs and tests)."""
    from msft_backbones.time_dpd import TimeDPD, TimeDPDConfig
    from msft_backbones.time_dpd.tiny import tiny_time_dpd

    if tiny_llm is not None:
        return tiny_time_dpd(tiny_llm, seed=seed, **config)
    torch.manual_seed(seed)
    return TimeDPD(TimeDPDConfig(**config))


def tiny_moirai() -> torch.nn.Module:
    """msft's embedded pretrained MOIRAI (``backbones/moirai/tiny_moirai``, synthetic data only), loaded
    through the same path as any MOIRAI checkpoint directory."""
    from msft_backbones.moirai import load_tiny_moirai

    return load_tiny_moirai()
