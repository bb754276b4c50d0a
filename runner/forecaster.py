"""`Forecaster`: a finetuned model with the data conventions it was trained with, and its artifacts.

    forecaster.predict_df(df)                 # item_id, timestamp, mean, "0.1", ..., "0.9"
    forecaster.save_pretrained("my-fc")       # later: msft.from_pretrained("my-fc")

Made by `msft_runner.api.finetune` or `from_pretrained`. Everything `from_pretrained` needs to
rebuild one is its `ForecasterSettings`, saved as one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import msft
from msft.data.frames import SeriesSet, read_series
from msft.model import ADAPTER_CONFIG
from msft.sampling import sample_quantiles
from msft_runner.backbones import resolve_backbone
from msft_runner.methods import build_model
from msft_runner.peft_io import save_peft

FORECASTER_FILE = "forecaster.json"
TRAINABLE_FILE = "trainable.safetensors"
DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))
DEFAULT_NAMES = {"target": "target", "id_column": "item_id", "timestamp_column": "timestamp"}


@dataclass
class ForecasterSettings:
    """How a forecaster was built and trained: what `save_pretrained` writes and `from_pretrained`
    rebuilds it from."""

    prediction_length: int
    context_length: int
    freq: str
    method: str = "msft"
    source: str | None = None  # the base model: a backbone config name, a hub id or a directory
    wrap_options: dict[str, Any] = field(default_factory=dict)  # msft.wrap options of every method
    msft_options: dict[str, Any] = field(default_factory=dict)  # the method's own msft.wrap options
    peft: dict[str, Any] | None = None
    names: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_NAMES))  # data-frame columns
    training: dict[str, Any] = field(default_factory=dict)  # the training record (val_loss, steps, ...)
    num_samples: int = 100
    total_steps: int = 2
    #: how the base was built from its name (a config may depend on horizon / context length)
    resolve_args: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.resolve_args is None:
            self.resolve_args = {"horizon": self.prediction_length, "context_length": self.context_length}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> ForecasterSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown forecaster settings {unknown}; expected keys among {sorted(known)}")
        return cls(**values)


class Forecaster:
    """A finetuned model with the data conventions it was trained with: ``predict_df``, ``plot``,
    ``save_pretrained`` / ``push_to_hub``. ``.model`` is the `msft.MSFTModel`
    (``.model.create_predictor(...)`` gives a GluonTS predictor); ``.settings`` how it was made."""

    def __init__(self, model: msft.MSFTModel, settings: ForecasterSettings, tuner: Any = None):
        self.model = model
        self.settings = settings
        self.tuner = tuner  # peft's AdaLoRA tuner (saving in peft's format needs it)

    @property
    def prediction_length(self) -> int:
        return self.settings.prediction_length

    @property
    def context_length(self) -> int:
        return self.settings.context_length

    @property
    def freq(self) -> str:
        return self.settings.freq

    @property
    def method(self) -> str:
        return self.settings.method

    @property
    def source(self) -> str | None:
        return self.settings.source

    @property
    def names(self) -> dict[str, str]:
        return self.settings.names

    @property
    def training(self) -> dict[str, Any]:
        return self.settings.training

    def __repr__(self) -> str:
        return (
            f"Forecaster(backbone={self.source or self.model.spec.name!r}, method={self.method!r}, "
            f"prediction_length={self.prediction_length}, context_length={self.context_length}, freq={self.freq!r})"
        )

    # -- forecasting ------------------------------------------------------------------------------
    def predict_df(self, data: Any, quantile_levels: Any = DEFAULT_LEVELS, *, num_samples: int | None = None):
        """Forecast the ``prediction_length`` steps after each series of ``data`` (same formats as training).

        Returns a long frame: ``item_id``, ``timestamp`` (continuing each series' frequency), ``mean``
        and one column per quantile level named as the level (``"0.1"``, ..., ``"0.9"``). Quantiles
        come from fused sample paths (MOIRAI) or quantile heads (``quantile_levels`` at finetuning);
        a point backbone without them gives ``mean`` only (pass ``quantile_levels=None`` to ask for that).
        """
        import pandas as pd

        series = read_series(data, **self.names)
        if series.freq.freqstr != self.freq:
            raise ValueError(f"data has frequency {series.freq.freqstr}: this forecaster was trained on {self.freq}")
        levels = _check_levels(quantile_levels)
        mean, quantiles = self._forecast(series, levels, num_samples or self.settings.num_samples)
        frames = []
        for i, item in enumerate(series.ids):
            frame = {
                self.names["id_column"]: item,
                self.names["timestamp_column"]: series.future_index(i, self.prediction_length),
                "mean": mean[i],
            }
            for j, q in enumerate(levels):
                frame[str(q)] = quantiles[i, j]
            frames.append(pd.DataFrame(frame))
        return pd.concat(frames, ignore_index=True)

    @torch.no_grad()
    def _forecast(
        self, series: SeriesSet, levels: tuple[float, ...], num_samples: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``mean (items, H)`` and ``quantiles (items, levels, H)``."""
        model, horizon = self.model, self.prediction_length
        past = torch.as_tensor(
            np.stack([_left_pad(v, self.context_length) for v in series.values]),
            dtype=torch.float32,
            device=next(model.parameters()).device,
        )[..., None]
        model.eval()
        if model.spec.probabilistic:
            samples = model.predict_samples(past, horizon, num_samples=num_samples)[..., 0]  # (items, S, H)
            quantiles = sample_quantiles(samples, levels) if levels else samples.new_zeros(len(past), 0, horizon)
            return samples.mean(1).cpu().numpy(), quantiles.cpu().numpy()
        mean = model.predict(past, horizon)[..., 0]
        if not levels:
            return mean.cpu().numpy(), np.zeros((len(past), 0, horizon))
        if not getattr(model.config, "quantile_levels", None):
            raise ValueError(
                f"quantile_levels={list(levels)}: this forecaster's {model.spec.name} backbone gives point "
                "forecasts only; pass quantile_levels=None for the mean alone, or finetune with "
                "quantile_levels=(0.1, ..., 0.9) to train quantile heads"
            )
        quantiles = model.predict_quantiles(past, horizon, levels)[..., 0]  # (items, Q, H)
        return mean.cpu().numpy(), quantiles.cpu().numpy()

    def plot(
        self,
        data: Any,
        truth: Any = None,
        *,
        item_ids: list[str] | None = None,
        max_items: int = 4,
        context_steps: int | None = None,
    ):
        """A matplotlib figure per item of ``data``: its recent context, the ``truth`` when given (a frame
        holding the steps after ``data``), the mean forecast and the 10–90% interval when available."""
        import matplotlib.pyplot as plt

        series = read_series(data, **self.names)
        probabilistic = self.model.spec.probabilistic or bool(getattr(self.model.config, "quantile_levels", None))
        forecast = self.predict_df(data, quantile_levels=(0.1, 0.9) if probabilistic else None)
        future = read_series(truth, **self.names) if truth is not None else None
        ids = item_ids or series.ids[:max_items]
        unknown = sorted(set(ids) - set(series.ids))
        if unknown:
            raise ValueError(f"item_ids {unknown} are not in the data; items are {series.ids[:10]}...")
        fig, axes = plt.subplots(len(ids), 1, figsize=(10, 2.6 * len(ids)), squeeze=False)
        steps = context_steps or 4 * self.prediction_length
        id_col, ts_col = self.names["id_column"], self.names["timestamp_column"]
        for ax, item in zip(axes[:, 0], ids):
            i = series.ids.index(item)
            index, values = series.index(i)[-steps:], series.values[i][-steps:]
            ax.plot(index, values, color="black", lw=1, label="context")
            if future is not None and item in future.ids:
                j = future.ids.index(item)
                ax.plot(future.index(j), future.values[j], color="tab:green", lw=1, label="truth")
            rows = forecast[forecast[id_col] == item]
            ax.plot(rows[ts_col], rows["mean"], color="tab:blue", lw=1.5, label="mean")
            if "0.1" in rows:
                ax.fill_between(rows[ts_col], rows["0.1"], rows["0.9"], color="tab:blue", alpha=0.25, label="80%")
            ax.set_title(str(item))
            ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        return fig

    # -- artifacts --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, **card: Any) -> Path:
        """Write everything `from_pretrained` needs: ``forecaster.json``, the trained parameters, the msft
        adapter (msft's parameters with the base model's identity), peft's own adapter files for the
        LoRA/AdaLoRA baselines, and a model card."""
        from safetensors.torch import save_file

        from msft.hub import model_card

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        model.save_adapter(path)  # ADAPTER_CONFIG: msft options + base identity (also for baselines)
        trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        trained.update({n: b.detach().cpu().contiguous() for n, b in model.named_buffers() if "ranknum" in n})
        save_file(trained, str(path / TRAINABLE_FILE), metadata={"format": "pt"})
        if self.method in ("lora", "adalora"):
            save_peft(model.backbone, self.tuner, path, self.source)
        settings = dataclasses.asdict(self.settings)
        (path / FORECASTER_FILE).write_text(json.dumps(settings, indent=2, default=str))
        saved = json.loads((path / ADAPTER_CONFIG).read_text())
        card.setdefault("method", self.method)
        if self.training.get("val_loss") is not None:
            card.setdefault("metrics", {"val_loss": self.training["val_loss"]})
        card.setdefault(
            "command",
            f"msft.finetune({self.source!r}, data, prediction_length={self.prediction_length}, method={self.method!r})",
        )
        (path / "README.md").write_text(model_card(saved, **card))
        return path

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None, **card: Any) -> str:
        """`save_pretrained` into a temporary directory and upload it to ``repo_id``; fails fast offline."""
        from msft.hub import upload_folder

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, **card)
            return upload_folder(tmp, repo_id, token=token, private=private)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, backbone: Any = None, *, allow_base_mismatch: bool = False
    ) -> Forecaster:
        """Rebuild a saved forecaster on its recorded base model (or ``backbone``) and load its parameters."""
        from safetensors.torch import load_file

        from msft.calibration import ConformalCalibration
        from msft.provenance import check_same_base

        path = _local(path)
        settings = ForecasterSettings.from_dict(json.loads((path / FORECASTER_FILE).read_text()), str(path))
        saved = json.loads((path / ADAPTER_CONFIG).read_text())
        module, _, source = resolve_backbone(
            backbone if backbone is not None else _recorded_source(saved, path), freq=None, **settings.resolve_args
        )
        built = build_model(
            module,
            settings.method,
            settings.prediction_length,
            settings.msft_options,
            settings.peft,
            settings.total_steps,
            settings.wrap_options,
        )
        if not allow_base_mismatch:
            try:
                check_same_base(saved.get("base"), built.model.base_identity, f"forecaster {path}")
            except ValueError:
                msft.unwrap(built.model)
                raise
        tensors = load_file(str(path / TRAINABLE_FILE))
        _, unexpected = built.model.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ValueError(f"{path / TRAINABLE_FILE} has parameters this model lacks: {unexpected[:5]}")
        built.model.calibration = ConformalCalibration.load(path)  # None when the forecaster was not calibrated
        built.model.requires_grad_(False).eval()
        if backbone is not None:
            settings.source = source
        return cls(built.model, settings, tuner=built.tuner)


def from_pretrained(path_or_repo: str | os.PathLike, backbone: Any = None, *, allow_base_mismatch: bool = False):
    """Load what ``save_pretrained`` wrote (a directory or a hub repository id).

    A `Forecaster` directory gives a `Forecaster`; a model directory (`msft.MSFTModel.save_pretrained`)
    gives an `msft.MSFTModel`. Without ``backbone`` the base model recorded in the adapter is loaded
    (its source: a backbone config name, a hub id or a directory); with one, its weights must match
    the recorded fingerprint unless ``allow_base_mismatch=True``.
    """
    path = _local(path_or_repo)
    if (path / FORECASTER_FILE).is_file():
        return Forecaster.from_pretrained(path, backbone, allow_base_mismatch=allow_base_mismatch)
    saved = json.loads((path / ADAPTER_CONFIG).read_text())
    horizon = saved["config"].get("horizon") or 96
    if backbone is None or not isinstance(backbone, nn.Module):
        backbone, _, _ = resolve_backbone(
            backbone or _recorded_source(saved, path), horizon=horizon, freq=None, context_length=512
        )
    return msft.load_adapter(backbone, path, allow_base_mismatch=allow_base_mismatch)


def _recorded_source(saved: dict[str, Any], path: Path) -> str:
    source = (saved.get("base") or {}).get("source")
    if not source:
        raise ValueError(
            f"{path} does not record its base model's source: pass backbone= (the module it was trained on)"
        )
    return source


def _local(path_or_repo: str | os.PathLike) -> Path:
    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).is_file():
            raise ValueError(f"{path} has no {ADAPTER_CONFIG}: expected a directory written by save_pretrained")
        return path
    if isinstance(path_or_repo, str) and path_or_repo.count("/") == 1 and not path_or_repo.startswith((".", "/", "~")):
        from msft.hub import download

        return _local(download(path_or_repo))
    raise ValueError(
        f"{str(path_or_repo)!r} is neither a directory written by save_pretrained nor a hub id 'owner/name'"
    )


def _left_pad(values: np.ndarray, length: int) -> np.ndarray:
    values = np.where(np.isfinite(values), values, np.nan)[-length:]
    return np.concatenate([np.full(length - len(values), np.nan), values])


def _check_levels(levels: Any) -> tuple[float, ...]:
    if levels is None:
        return ()
    try:
        levels = tuple(float(q) for q in levels)
    except TypeError:
        raise ValueError(f"quantile_levels={levels!r}: expected a sequence of numbers in (0, 1)") from None
    if not all(0 < q < 1 for q in levels):
        raise ValueError(f"quantile_levels={levels!r}: expected numbers in (0, 1)")
    return levels
