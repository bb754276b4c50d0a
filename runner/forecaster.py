"""`Forecaster`: a finetuned model with the data conventions it was trained with, and its artifacts.

    forecaster.predict_df(df)                 # item_id, timestamp, mean, "0.1", ..., "0.9"
    forecaster.save_pretrained("my-fc")       # later: msft.from_pretrained("my-fc")

Made by `msft_runner.api.finetune` or `from_pretrained`. Everything `from_pretrained` needs to
rebuild one is its `ForecasterSettings`, saved as one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import msft
from msft.checks import check_levels
from msft.data.frames import SeriesSet, read_series
from msft.hub import (
    FILES_KEY,
    ArtifactError,
    MissingArtifactError,
    file_records,
    read_json,
    read_safetensors,
    verify_files,
)
from msft.model import ADAPTER_CONFIG, check_covariate_names
from msft.sampling import sample_quantiles
from msft_runner.backbones import resolve_backbone
from msft_runner.methods import build_model
from msft_runner.peft_io import save_peft

FORECASTER_FILE = "forecaster.json"
TRAINABLE_FILE = "trainable.safetensors"
DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))
DEFAULT_NAMES = {"target": "target", "id_column": "item_id", "timestamp_column": "timestamp"}
PEFT_FILES = ("adapter_model.safetensors", "adapter_config.json")

logger = logging.getLogger(__name__)


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
    #: validation scores of the finetuned model and its references (`Forecaster.leaderboard`)
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    #: ``guard="naive"`` chose a naive baseline over the finetuned model: ``{"name", "period"}``
    fallback: dict[str, Any] | None = None

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
        fallback = f", fallback={self.settings.fallback['name']!r}" if self.settings.fallback else ""
        return (
            f"Forecaster(backbone={self.source or self.model.spec.name!r}, method={self.method!r}, "
            f"prediction_length={self.prediction_length}, context_length={self.context_length}, freq={self.freq!r}"
            f"{fallback})"
        )

    def leaderboard(self):
        """The validation scores `msft.finetune` measured: one row per model (the finetuned one, the
        zero-shot backbone, the last value, the seasonal naive), best first, as a pandas DataFrame:
        ``model``, ``mse`` and ``mae`` (in units of each validation window's context standard
        deviation), ``windows``; ``used`` marks what ``predict_df`` forecasts with."""
        import pandas as pd

        columns = ["model", "mse", "mae", "windows", "used"]
        frame = pd.DataFrame(self.settings.leaderboard, columns=columns)
        return frame.sort_values("mse", kind="stable").reset_index(drop=True)

    @property
    def past_covariates(self) -> tuple[str, ...]:
        """The past-only covariate columns the model reads (saved with it)."""
        return tuple(self.model.config.past_covariates)

    @property
    def known_covariates(self) -> tuple[str, ...]:
        """The known-future covariate columns the model reads (``predict_df(future_df=...)``)."""
        return tuple(self.model.config.known_covariates)

    # -- forecasting ------------------------------------------------------------------------------
    def predict_df(
        self,
        data: Any,
        quantile_levels: Any = DEFAULT_LEVELS,
        *,
        future_df: Any = None,
        num_samples: int | None = None,
        seed: int | None = 0,
    ):
        """Forecast the ``prediction_length`` steps after each series of ``data`` (same formats as training).

        Returns a long frame: ``item_id``, ``timestamp`` (continuing each series' frequency), ``mean``
        and one column per quantile level named as the level (``"0.1"``, ..., ``"0.9"``). ``mean`` is
        deterministic: the closed-form mean of the fused distribution (MOIRAI) or the point forecast.
        Quantiles come from fused sample paths (MOIRAI; the same for the same ``seed``, drawn without
        touching the global RNG; ``seed=None`` draws fresh paths) or quantile heads (``quantile_levels``
        at finetuning); a point backbone without them gives ``mean`` only (pass ``quantile_levels=None``
        to ask for that). A forecaster whose ``guard="naive"`` chose a naive baseline forecasts with it
        (``mean`` only; quantile columns are NaN).

        Covariates (a forecaster finetuned with them, Chronos-2's conventions): ``data`` holds the
        past-only and known-future covariate columns up to each series' end; ``future_df`` (long: id,
        timestamp and the known-future columns) holds the known-future ones over the
        ``prediction_length`` steps after it, for every item, without missing values.
        """
        import pandas as pd

        series = read_series(data, **self.names)
        if series.freq.freqstr != self.freq:
            raise ValueError(f"data has frequency {series.freq.freqstr}: this forecaster was trained on {self.freq}")
        levels = () if quantile_levels is None else check_levels(quantile_levels)
        self._check_observed(series)
        covariates = self._covariates(data, series, future_df)
        mean, quantiles = self._forecast(series, levels, num_samples or self.settings.num_samples, seed, covariates)
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

    def _check_observed(self, series: SeriesSet) -> None:
        """A clear error naming the items whose context holds no observed value."""
        empty = [item for item, v in zip(series.ids, series.values) if not np.isfinite(v[-self.context_length :]).any()]
        if empty:
            shown = ", ".join(repr(i) for i in empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
            raise ValueError(
                f"item(s) {shown} have no observed values in their last {self.context_length} time steps "
                "(all NaN): nothing to forecast from; drop them or give them history"
            )

    def _covariates(self, data: Any, series: SeriesSet, future_df: Any) -> dict[str, torch.Tensor]:
        """``past_covariates`` ``(items, context, k1)`` from ``data`` and ``known_covariates`` ``(items,
        context + H, k2)`` from ``data`` and ``future_df``, as the model takes them (none without)."""
        from msft_runner.data_frames import read_covariates

        past_names, known_names = self.past_covariates, self.known_covariates
        if not past_names and not known_names:
            if future_df is not None:
                raise ValueError("future_df given, but this forecaster was finetuned without known_covariates")
            return {}
        history = read_covariates(data, series, past_names, known_names, self.names)
        device = next(self.model.parameters()).device

        def tensor(rows: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.stack(rows), dtype=torch.float32, device=device)

        out = {}
        k1 = len(past_names)
        if past_names:
            out["past_covariates"] = tensor([_left_pad(h[:, :k1], self.context_length) for h in history])
        if known_names:
            future = self._known_future(series, future_df)
            out["known_covariates"] = tensor(
                [np.concatenate([_left_pad(h[:, k1:], self.context_length), f]) for h, f in zip(history, future)]
            )
        return out

    def _known_future(self, series: SeriesSet, future_df: Any) -> list[np.ndarray]:
        """Per item ``(prediction_length, k2)``: its known-future covariates over the forecast's timestamps."""
        import pandas as pd

        known, horizon = self.known_covariates, self.prediction_length
        id_col, ts_col = self.names["id_column"], self.names["timestamp_column"]
        if future_df is None:
            raise ValueError(
                f"future_df missing: this forecaster reads known covariates {list(known)}; expected a long frame "
                f"with {id_col!r}, {ts_col!r} and those columns over the {horizon} steps after each series"
            )
        if isinstance(future_df, (str, os.PathLike)):
            future_df = pd.read_csv(future_df)
        if not isinstance(future_df, pd.DataFrame):
            raise ValueError(f"future_df is a {type(future_df).__name__}: expected a pandas DataFrame (long)")
        duplicated = sorted({str(c) for c in future_df.columns[future_df.columns.duplicated()]})
        if duplicated:
            raise ValueError(f"future_df has duplicated column(s) {duplicated}: expected each column once")
        missing = [c for c in (id_col, ts_col, *known) if c not in future_df.columns]
        if missing:
            raise ValueError(f"future_df lacks column(s) {missing}; its columns are {list(future_df.columns)}")
        frame = future_df.assign(**{id_col: future_df[id_col].astype(str), ts_col: pd.to_datetime(future_df[ts_col])})
        frame = frame.drop_duplicates([id_col, ts_col]).set_index([id_col, ts_col])
        out = []
        for i, item in enumerate(series.ids):
            stamps = series.future_index(i, horizon)
            rows = frame.reindex(pd.MultiIndex.from_arrays([[item] * horizon, stamps]))[list(known)]
            values = rows.to_numpy(np.float64)
            if np.isnan(values).any():
                t, k = np.argwhere(np.isnan(values))[0]
                raise ValueError(
                    f"future_df does not cover the horizon: known covariate {known[k]!r} of item {item!r} is "
                    f"missing at {stamps[t]} (expected the {horizon} steps {stamps[0]} .. {stamps[-1]}, no NaN)"
                )
            out.append(values)
        return out

    @torch.no_grad()
    def _forecast(
        self,
        series: SeriesSet,
        levels: tuple[float, ...],
        num_samples: int,
        seed: int | None = 0,
        covariates: dict[str, torch.Tensor] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``mean (items, H)`` and ``quantiles (items, levels, H)``."""
        model, horizon, covariates = self.model, self.prediction_length, covariates or {}
        past = torch.as_tensor(
            np.stack([_left_pad(v, self.context_length) for v in series.values]),
            dtype=torch.float32,
            device=next(model.parameters()).device,
        )[..., None]
        if self.settings.fallback is not None:
            mean = naive_forecaster(self.settings.fallback).predict(fill_missing(past), horizon)[..., 0]
            return mean.cpu().numpy(), np.full((len(past), len(levels), horizon), np.nan)
        model.eval()
        if model.spec.probabilistic:
            mean = model.predict_all(past, horizon, **covariates)["mean"][..., 0]  # closed form: no sampling
            if not levels:
                return mean.cpu().numpy(), np.zeros((len(past), 0, horizon))
            samples = model.predict_samples(past, horizon, num_samples=num_samples, seed=seed, **covariates)
            return mean.cpu().numpy(), sample_quantiles(samples[..., 0], levels).cpu().numpy()  # (items, Q, H)
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
        max_items: int | None = None,
        context_steps: int | None = None,
        future_df: Any = None,
    ):
        """A matplotlib figure with one panel per item of ``data``, titled by its item id: its recent
        context, the ``truth`` when given (a frame holding the steps after ``data``), the mean forecast
        and the 10–90% interval when available; the legend sits outside the panels.

        Every item is drawn unless ``item_ids`` or ``max_items`` pick a subset, which the figure's title
        states ("4 of 8 items"). ``truth`` must share timestamps with the forecast of every drawn item
        that it holds, else a ``ValueError`` names the item and both periods. ``future_df``: the
        known-future covariates over the horizon, for a forecaster that reads them (`predict_df`).
        """
        import matplotlib.pyplot as plt
        import pandas as pd

        series = read_series(data, **self.names)
        if item_ids is not None:
            ids = [str(i) for i in item_ids]
            unknown = sorted(set(ids) - set(series.ids))
            if unknown:
                raise ValueError(f"item_ids {unknown} are not in the data; its items are {series.ids[:10]}...")
        else:
            ids = series.ids[:max_items] if max_items else list(series.ids)
        if not ids:
            raise ValueError("nothing to plot: item_ids is empty")
        probabilistic = self.model.spec.probabilistic or bool(getattr(self.model.config, "quantile_levels", None))
        levels = (0.1, 0.9) if probabilistic else None
        forecast = self.predict_df(data, quantile_levels=levels, future_df=future_df)
        future = read_series(truth, **self.names) if truth is not None else None
        id_col, ts_col = self.names["id_column"], self.names["timestamp_column"]
        if future is not None:
            for item in ids:
                if item not in future.ids:
                    continue
                stamps = pd.DatetimeIndex(forecast.loc[forecast[id_col] == item, ts_col])
                truth_index = pd.DatetimeIndex(future.index(future.ids.index(item)))
                if not len(stamps.intersection(truth_index)):
                    raise ValueError(
                        f"truth for item {item!r} covers {truth_index[0]} .. {truth_index[-1]}, the forecast "
                        f"{stamps[0]} .. {stamps[-1]}: they do not overlap; pass the steps that follow data"
                    )
        fig, axes = plt.subplots(len(ids), 1, figsize=(11, 2.6 * len(ids)), squeeze=False)
        steps = context_steps or 4 * self.prediction_length
        for ax, item in zip(axes[:, 0], ids):
            i = series.ids.index(item)
            index, values = series.index(i)[-steps:], series.values[i][-steps:]
            ax.plot(index, values, color="black", lw=1, label="context")
            if future is not None and item in future.ids:
                j = future.ids.index(item)
                ax.plot(future.index(j), future.values[j], color="tab:green", lw=1, label="truth")
            rows = forecast[forecast[id_col] == item]
            ax.plot(rows[ts_col], rows["mean"], color="tab:blue", lw=1.5, label="mean")
            if "0.1" in rows and rows["0.1"].notna().any():
                ax.fill_between(rows[ts_col], rows["0.1"], rows["0.9"], color="tab:blue", alpha=0.25, label="80%")
            ax.set_title(f"{id_col} = {item}", fontsize=10)
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
        shown = f"{len(ids)} of {len(series.ids)} items" if len(ids) < len(series.ids) else f"all {len(ids)} items"
        fig.suptitle(f"{self.method} forecast, {self.prediction_length} steps ({shown})")
        fig.tight_layout()
        return fig

    # -- artifacts --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, **card: Any) -> Path:
        """Write everything `from_pretrained` needs: ``forecaster.json``, the trained parameters, the msft
        adapter (msft's parameters with the base model's identity), peft's own adapter files for the
        LoRA/AdaLoRA baselines, and a model card. ``forecaster.json`` (written last) records the size
        and SHA-256 of every other file but the card, which `from_pretrained` checks."""
        from safetensors.torch import save_file

        from msft.hub import model_card

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        model.save_adapter(path)  # ADAPTER_CONFIG: msft options + base identity (also for baselines)
        trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        trained.update({n: b.detach().cpu().contiguous() for n, b in model.named_buffers() if "ranknum" in n})
        save_file(trained, str(path / TRAINABLE_FILE), metadata={"format": "pt"})
        peft_files = PEFT_FILES if self.method in ("lora", "adalora") else ()
        if peft_files:
            save_peft(model.backbone, self.tuner, path, self.source)
        else:  # peft files left from an earlier save into the same directory are not this forecaster's
            for name in PEFT_FILES:
                (path / name).unlink(missing_ok=True)
        settings = dataclasses.asdict(self.settings)
        settings[FILES_KEY] = file_records(path, [ADAPTER_CONFIG, TRAINABLE_FILE, *peft_files])
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
        cls,
        path: str | os.PathLike,
        backbone: Any = None,
        *,
        allow_base_mismatch: bool = False,
        past_covariates: Any = None,
        known_covariates: Any = None,
    ) -> Forecaster:
        """Rebuild a saved forecaster on its recorded base model (or ``backbone``) and load its parameters.

        Every file ``forecaster.json`` and ``msft_config.json`` list is checked against its recorded
        SHA-256 before anything is built (`msft.hub.ArtifactError` names a missing, truncated,
        corrupted or unparseable file). ``past_covariates`` / ``known_covariates``: the covariate columns
        the caller will give; a ``ValueError`` when they differ from those the forecaster was trained on."""
        from msft.calibration import ConformalCalibration
        from msft.provenance import check_same_base

        path = _local(path)
        values = read_json(path / FORECASTER_FILE)
        if not isinstance(values, dict):
            raise ArtifactError(f"{path / FORECASTER_FILE} holds {type(values).__name__}: expected a JSON object")
        verify_files(path, values.pop(FILES_KEY, None), FORECASTER_FILE)
        settings = ForecasterSettings.from_dict(values, str(path))
        saved = read_json(path / ADAPTER_CONFIG)
        verify_files(path, saved.get(FILES_KEY), ADAPTER_CONFIG)
        check_covariate_names(saved["config"], str(path), past_covariates, known_covariates)
        tensors = read_safetensors(path / TRAINABLE_FILE)
        try:
            calibration = ConformalCalibration.load(path)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as err:
            raise ArtifactError(f"{path / 'calibration.json'} cannot be read ({err})") from None
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
        _, unexpected = built.model.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ArtifactError(f"{path / TRAINABLE_FILE} has parameters this model lacks: {unexpected[:5]}")
        built.model.calibration = calibration
        built.model.requires_grad_(False).eval()
        if backbone is not None:
            settings.source = source
        return cls(built.model, settings, tuner=built.tuner)


def from_pretrained(
    path_or_repo: str | os.PathLike,
    backbone: Any = None,
    *,
    allow_base_mismatch: bool = False,
    past_covariates: Any = None,
    known_covariates: Any = None,
):
    """Load what ``save_pretrained`` wrote (a directory or a hub repository id).

    A `Forecaster` directory gives a `Forecaster`; a model directory (`msft.MSFTModel.save_pretrained`)
    gives an `msft.MSFTModel`. Without ``backbone`` the base model recorded in the adapter is loaded
    (its source: a backbone config name, a hub id or a directory); with one, its weights must match
    the recorded fingerprint unless ``allow_base_mismatch=True``. ``past_covariates`` /
    ``known_covariates``: the covariate names the caller will give, checked against the saved ones.
    """
    path = _local(path_or_repo)
    names = {"past_covariates": past_covariates, "known_covariates": known_covariates}
    if (path / FORECASTER_FILE).is_file() or (path / TRAINABLE_FILE).is_file():  # a forecaster's (even damaged)
        return Forecaster.from_pretrained(path, backbone, allow_base_mismatch=allow_base_mismatch, **names)
    saved = read_json(path / ADAPTER_CONFIG)
    verify_files(path, saved.get(FILES_KEY), ADAPTER_CONFIG)  # before the base model is loaded
    horizon = saved["config"].get("horizon") or 96
    if backbone is None or not isinstance(backbone, nn.Module):
        backbone, _, _ = resolve_backbone(
            backbone or _recorded_source(saved, path), horizon=horizon, freq=None, context_length=512
        )
    return msft.load_adapter(backbone, path, allow_base_mismatch=allow_base_mismatch, **names)


def _recorded_source(saved: dict[str, Any], path: Path) -> str:
    source = (saved.get("base") or {}).get("source")
    if not source:
        raise ValueError(
            f"{path} does not record its base model's source: pass backbone= (the module it was trained on)"
        )
    return source


def _local(path_or_repo: str | os.PathLike) -> Path:
    """The directory of a saved artifact: ``path_or_repo`` itself, or a hub repository's local copy.
    msft's own errors: `MissingArtifactError` for a path that does not exist or lacks the config,
    `ConnectionError` / `ArtifactError` for a hub id that cannot be fetched (`msft.hub.download`)."""
    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).is_file():
            raise MissingArtifactError(
                f"{path / ADAPTER_CONFIG} is missing: expected a directory written by save_pretrained"
            )
        return path
    text = str(path_or_repo)
    if isinstance(path_or_repo, str) and text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from msft.hub import download

        return _local(download(path_or_repo))
    raise MissingArtifactError(
        f"{text!r} does not exist: expected a directory written by save_pretrained or a hub id 'owner/name'"
    )


def season_of(freq: Any) -> int:
    """The seasonal-naive period of a frequency, in steps: a day for sub-daily data (24 hourly, 96 for
    15 minutes), a week for daily (7) and business-daily (5) data, a year for weekly (52), monthly
    (12) and quarterly (4) data; 1 (no season) otherwise."""
    import pandas as pd

    offset = pd.tseries.frequencies.to_offset(freq)
    name = offset.name.split("-")[0]
    try:
        delta = pd.Timedelta(offset)
    except ValueError:  # calendar offsets (months, quarters, years, business days) have no fixed length
        delta = None
    if delta is not None and delta < pd.Timedelta("1D") and pd.Timedelta("1D") % delta == pd.Timedelta(0):
        return int(pd.Timedelta("1D") / delta)
    per_cycle = {"D": 7, "B": 5, "W": 52, "ME": 12, "MS": 12, "M": 12, "QE": 4, "QS": 4, "Q": 4}
    period = per_cycle.get(name, 1)
    return max(period // offset.n, 1) if period % offset.n == 0 else 1


def naive_forecaster(spec: dict[str, Any]):
    """The `msft.protocols` baseline ``{"name": "last_value"}`` or ``{"name": "seasonal_naive", "period": p}``."""
    from msft.protocols.baselines import LastValue, SeasonalNaive

    if spec["name"] == "last_value":
        return LastValue()
    if spec["name"] == "seasonal_naive":
        return SeasonalNaive(int(spec["period"]))
    raise ValueError(f"naive baseline {spec!r}: expected last_value or seasonal_naive")


def fill_missing(past: torch.Tensor) -> torch.Tensor:
    """``past (batch, time, variate)`` with each missing value replaced by the last observed one before
    it (the first observed one at the start), what the naive baselines read."""
    observed = torch.isfinite(past)
    steps = torch.arange(past.shape[1], device=past.device).view(1, -1, 1).expand_as(past)
    last = torch.where(observed, steps, torch.zeros_like(steps)).cummax(dim=1).values  # (b, t, v)
    first = observed.to(torch.int8).argmax(dim=1, keepdim=True).expand_as(past)  # (b, t, v)
    filled = past.gather(1, torch.where(last < first, first, torch.maximum(last, first)))
    return torch.nan_to_num(filled)  # a series with nothing observed (rejected before) stays finite


def _left_pad(values: np.ndarray, length: int) -> np.ndarray:
    values = np.where(np.isfinite(values), values, np.nan)[-length:]
    return np.concatenate([np.full((length - len(values), *values.shape[1:]), np.nan), values])  # (length, ...)
