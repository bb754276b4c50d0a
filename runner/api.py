"""One-call finetuning on data frames: ``msft.finetune(...) -> msft.Forecaster``, and ``msft.from_pretrained``.

    forecaster = msft.finetune("tiny_moirai", df, prediction_length=24)   # long, wide or a CSV path
    forecaster.predict_df(df)                 # item_id, timestamp, mean, "0.1", ..., "0.9"
    forecaster.save_pretrained("my-adapter")  # later: msft.from_pretrained("my-adapter")

It lives in the runner (exported lazily as ``msft.finetune``, ``msft.Forecaster`` and
``msft.from_pretrained``) because it turns backbone names into loaders, which the core never imports,
and because it trains with the runner's Lightning loop: `msft_runner.methods.build_model` builds the
method, `msft_runner.module.ForecastModule` trains it and `msft_runner.train._fit` runs the Trainer
with checkpointing and early stopping on validation, exactly as ``msft-train`` does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

import msft
from msft.data.frames import SeriesSet, read_series
from msft_runner.backbones import build_backbone
from msft_runner.data_frames import FrameDataModule
from msft_runner.methods import KINDS, build_model
from msft_runner.module import ForecastModule

logger = logging.getLogger(__name__)

FORECASTER_FILE = "forecaster.json"
TRAINABLE_FILE = "trainable.safetensors"
DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: training options of `finetune` (anything else goes to `msft.wrap` as an `msft.MSFTConfig` field).
TRAINING_OPTIONS = {
    "context_length": None,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "max_epochs": 10,
    "patience": 3,
    "validation_windows": 1,
    "accelerator": "auto",
    "progress": True,
    "run_dir": None,
    "peft": None,
    "gradient_clip_val": 1.0,
    "num_samples": 100,
}


def finetune(
    backbone: str | os.PathLike | nn.Module,
    train_data: Any,
    prediction_length: int,
    *,
    method: str = "msft",
    validation_data: Any = None,
    target: str = "target",
    id_column: str = "item_id",
    timestamp_column: str = "timestamp",
    max_steps: int | None = None,
    time_limit: float | None = None,
    seed: int = 0,
    **options: Any,
) -> Forecaster:
    """Finetune ``backbone`` on ``train_data`` for ``prediction_length`` steps ahead; return a `Forecaster`.

    backbone: a module, a backbone config name (``"tiny_moirai"``, the embedded model; ``"toy"``,
        ``"moirai_1.1_small"``, ...), a MOIRAI/MOMENT hub id or a local checkpoint directory.
    train_data: a long frame (``id_column``, ``timestamp_column``, ``target``), a wide frame with a
        DatetimeIndex (one column per series) or a CSV path. Gaps become missing values.
    method: one of `msft_runner.methods.KINDS` (``"msft"``, ``"lora"``, ``"full"``, ...).
    validation_data: early-stopping data (same formats); by default the last ``validation_windows ×
        prediction_length`` steps of every series are held out of training for it.
    max_steps / time_limit (seconds): stop training earlier than ``max_epochs``.
    options: training options (`TRAINING_OPTIONS`: ``context_length`` (default 512; shorter series are
        left-padded with missing values),
        ``batch_size``, ``lr`` (a number or the runner's dict of ``lr``/``xscale_lr``/``head_lr``/
        ``scale_weight_lr``), ``max_epochs``, ``patience``, ``progress``, ``run_dir`` (checkpoints and
        learning curves; a temporary directory by default), ``peft`` (LoRA settings)) and any
        `msft.MSFTConfig` field (``scales``, ``lora_rank``, ...).
    """
    from msft.config import MSFTConfig
    from msft_runner.train import _fit

    if method not in KINDS:
        raise ValueError(f"method={method!r}: expected one of {KINDS}")
    if isinstance(prediction_length, bool) or not isinstance(prediction_length, int) or prediction_length < 1:
        raise ValueError(f"prediction_length={prediction_length!r}: expected a positive integer")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps={max_steps!r}: expected a positive integer or None")
    train = dict(TRAINING_OPTIONS)
    wrap_options = {}
    fields = set(MSFTConfig.__dataclass_fields__)
    for key, value in options.items():
        if key in train:
            train[key] = value
        elif key in fields:
            wrap_options[key] = value
        else:
            raise ValueError(
                f"unknown option {key!r}: expected a training option {sorted(TRAINING_OPTIONS)} or an "
                f"msft.MSFTConfig field {sorted(fields)}"
            )
    names = dict(target=target, id_column=id_column, timestamp_column=timestamp_column)
    series = read_series(train_data, **names)
    validation = read_series(validation_data, **names) if validation_data is not None else None
    if validation is not None and validation.freq != series.freq:
        raise ValueError(
            f"validation_data has frequency {validation.freq.freqstr}, train_data {series.freq.freqstr}: "
            "expected the same"
        )
    resolve_args = {"horizon": prediction_length, "context_length": train["context_length"] or 512}
    module, base_options, source = resolve_backbone(backbone, freq=series.freq, **resolve_args)
    L.seed_everything(seed, workers=True, verbose=False)
    if method == "msft":
        options_msft = wrap_options
    else:  # the baselines take their fixed options; what the user gave (e.g. patch_size) applies to all
        options_msft = {"prompt_tokens": wrap_options.pop("prompt_tokens", 8)} if method == "prompt_tuning" else {}
        base_options.update(wrap_options)
    data = FrameDataModule(
        series,
        prediction_length,
        train["context_length"],
        train["batch_size"],
        seed,
        validation=validation,
        validation_windows=train["validation_windows"],
    )
    data.setup("fit")
    steps_per_epoch = len(data.train_dataloader())
    total = max(min(max_steps or 10**9, steps_per_epoch * train["max_epochs"]), 2)
    built = build_model(module, method, prediction_length, options_msft, train["peft"], total, base_options)
    try:
        data.check_context(built.model)
    except ValueError:
        msft.unwrap(built.model)  # a module the caller passed is handed back as it came
        raise
    lr = train["lr"] if isinstance(train["lr"], dict) else {"lr": train["lr"], "scale_weight_lr": 1e-2}
    lightning_module = ForecastModule(built.model, lr, train["weight_decay"], built.tuner)
    record: dict[str, Any] = {}
    run_dir = train["run_dir"]
    with tempfile.TemporaryDirectory(prefix="msft-finetune-") as tmp:
        if built.trains:
            cfg = _fit_config(train, seed, max_steps, time_limit, steps_per_epoch)
            record = _fit(cfg, lightning_module, data, Path(run_dir) if run_dir else Path(tmp))
    built.model.eval()
    return Forecaster(
        built.model,
        prediction_length=prediction_length,
        context_length=data.context_length,
        freq=series.freq.freqstr,
        method=method,
        source=source,
        wrap_options=base_options,
        msft_options=options_msft,
        peft=train["peft"],
        names=names,
        training=record,
        num_samples=train["num_samples"],
        total_steps=total,
        resolve_args=resolve_args,
        tuner=built.tuner,
    )


def _fit_config(
    train: dict[str, Any], seed: int, max_steps: int | None, time_limit: float | None, steps_per_epoch: int
):
    from omegaconf import OmegaConf

    accelerator = train["accelerator"]
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    trainer = {
        "accelerator": accelerator,
        "devices": 1,
        "max_epochs": train["max_epochs"],
        "max_steps": max_steps or -1,
        "gradient_clip_val": train["gradient_clip_val"],
        "enable_progress_bar": bool(train["progress"]),
        "log_every_n_steps": 10,
        "patience": train["patience"],
        # validate (and early-stop) at least once even when max_steps ends training mid-epoch
        "val_check_interval": min(steps_per_epoch, max_steps or steps_per_epoch),
    }
    if time_limit is not None:
        if not isinstance(time_limit, (int, float)) or time_limit <= 0:
            raise ValueError(f"time_limit={time_limit!r}: expected a positive number of seconds")
        trainer["max_time"] = {"seconds": float(time_limit)}
    return OmegaConf.create({"trainer": trainer, "seed": seed, "resume": False, "interrupt_at_step": None})


class Forecaster:
    """A finetuned model with the data conventions it was trained with: ``predict_df``, ``plot``,
    ``save_pretrained`` / ``push_to_hub``. Made by `finetune` or `from_pretrained`; ``.model`` is the
    `msft.MSFTModel` (``.model.create_predictor(...)`` gives a GluonTS predictor)."""

    def __init__(
        self,
        model: msft.MSFTModel,
        *,
        prediction_length: int,
        context_length: int,
        freq: str,
        method: str = "msft",
        source: str | None = None,
        wrap_options: dict | None = None,
        msft_options: dict | None = None,
        peft: dict | None = None,
        names: dict | None = None,
        training: dict | None = None,
        num_samples: int = 100,
        total_steps: int = 2,
        resolve_args: dict | None = None,
        tuner: Any = None,
    ):
        self.model = model
        self.prediction_length, self.context_length, self.freq = prediction_length, context_length, freq
        self.method, self.source = method, source
        self.wrap_options, self.msft_options, self.peft = wrap_options or {}, msft_options or {}, peft
        self.names = names or dict(target="target", id_column="item_id", timestamp_column="timestamp")
        self.training, self.num_samples, self.total_steps = training or {}, num_samples, total_steps
        self.tuner = tuner  # peft's AdaLoRA tuner (saving in peft's format needs it)
        # how the base was built from its name (a config may depend on horizon / context length)
        self.resolve_args = resolve_args or {"horizon": prediction_length, "context_length": context_length}

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
        mean, quantiles = self._forecast(series, levels, num_samples or self.num_samples)
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
            quantiles = _sample_quantiles(samples, levels) if levels else samples.new_zeros(len(past), 0, horizon)
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
        model.save_adapter(path)  # msft_config.json: msft options + base identity (also for baselines)
        trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        trained.update({n: b.detach().cpu().contiguous() for n, b in model.named_buffers() if "ranknum" in n})
        save_file(trained, str(path / TRAINABLE_FILE), metadata={"format": "pt"})
        if self.method in ("lora", "adalora"):
            _save_peft(model.backbone, self.tuner, path, self.source)
        meta = {
            "prediction_length": self.prediction_length,
            "context_length": self.context_length,
            "freq": self.freq,
            "method": self.method,
            "source": self.source,
            "wrap_options": self.wrap_options,
            "msft_options": self.msft_options,
            "peft": self.peft,
            "names": self.names,
            "training": self.training,
            "num_samples": self.num_samples,
            "total_steps": self.total_steps,
            "resolve_args": self.resolve_args,
        }
        (path / FORECASTER_FILE).write_text(json.dumps(meta, indent=2, default=str))
        saved = json.loads((path / "msft_config.json").read_text())
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

        from msft.provenance import check_same_base

        path = _local(path)
        meta = json.loads((path / FORECASTER_FILE).read_text())
        saved = json.loads((path / "msft_config.json").read_text())
        module, _, source = resolve_backbone(
            backbone if backbone is not None else _recorded_source(saved, path), freq=None, **meta["resolve_args"]
        )
        built = build_model(
            module,
            meta["method"],
            meta["prediction_length"],
            meta["msft_options"],
            meta["peft"],
            meta["total_steps"],
            meta["wrap_options"],
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
        built.model.requires_grad_(False).eval()
        return cls(
            built.model,
            prediction_length=meta["prediction_length"],
            context_length=meta["context_length"],
            freq=meta["freq"],
            method=meta["method"],
            source=meta["source"] if backbone is None else source,
            wrap_options=meta["wrap_options"],
            msft_options=meta["msft_options"],
            peft=meta["peft"],
            names=meta["names"],
            training=meta["training"],
            num_samples=meta["num_samples"],
            total_steps=meta["total_steps"],
            resolve_args=meta["resolve_args"],
            tuner=built.tuner,
        )


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
    saved = json.loads((path / "msft_config.json").read_text())
    horizon = saved["config"].get("horizon") or 96
    if backbone is None or not isinstance(backbone, nn.Module):
        backbone, _, _ = resolve_backbone(
            backbone or _recorded_source(saved, path), horizon=horizon, freq=None, context_length=512
        )
    return msft.load_adapter(backbone, path, allow_base_mismatch=allow_base_mismatch)


# -- backbones by name ------------------------------------------------------------------------------
def backbone_config_names() -> list[str]:
    import importlib.resources

    folder = importlib.resources.files("msft_runner.configs") / "backbone"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_backbone(backbone: Any, horizon: int, freq: Any, context_length: int) -> tuple[nn.Module, dict, str | None]:
    """``(module, wrap_options, source)`` for a module, a backbone config name, a local directory or a hub id."""
    from msft.provenance import SOURCE_ATTR, record_source

    if isinstance(backbone, nn.Module):
        return backbone, {}, (getattr(backbone, SOURCE_ATTR, None) or {}).get("source")
    if not isinstance(backbone, (str, os.PathLike)):
        raise ValueError(f"backbone={backbone!r}: expected an nn.Module, a backbone name, a hub id or a directory")
    name = str(backbone)
    if name in backbone_config_names():
        import importlib.resources

        from omegaconf import OmegaConf

        file = importlib.resources.files("msft_runner.configs") / "backbone" / f"{name}.yaml"
        cfg = OmegaConf.create(
            {"data": {"horizon": horizon, "context_length": context_length}, "backbone": OmegaConf.load(str(file))}
        )
        module, wrap_options = build_backbone(cfg.backbone)
        record_source(module, name, (getattr(module, SOURCE_ATTR, None) or {}).get("revision"))
        return module, wrap_options, name
    family = _family(name)
    if family == "moirai":
        from msft_backbones.moirai import load_moirai

        options = {"backbone_options": {"freq": freq.freqstr}} if freq is not None else {}
        return load_moirai(name), options, name
    if family == "moment":
        from msft_backbones.moment import load_moment

        return load_moment(name, forecast_horizon=horizon), {}, name
    raise ValueError(
        f"backbone={name!r}: not a backbone name ({', '.join(backbone_config_names())}), nor a "
        "MOIRAI/MOMENT checkpoint directory or hub id (e.g. 'Salesforce/moirai-1.1-R-small', "
        "'AutonLab/MOMENT-1-small')"
    )


def _family(name: str) -> str | None:
    path = Path(name).expanduser()
    if path.is_dir():
        config = path / "config.json"
        values = json.loads(config.read_text()) if config.is_file() else {}
        if "distr_output" in values or "patch_sizes" in values:
            return "moirai"
        if "t5_config" in values or "MOMENT" in json.dumps(values.get("architectures", "")):
            return "moment"
        return None
    lowered = name.lower()
    if name.count("/") == 1 and "moirai" in lowered:
        return "moirai"
    if name.count("/") == 1 and "moment" in lowered:
        return "moment"
    return None


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
        if not (path / "msft_config.json").is_file():
            raise ValueError(f"{path} has no msft_config.json: expected a directory written by save_pretrained")
        return path
    if isinstance(path_or_repo, str) and path_or_repo.count("/") == 1 and not path_or_repo.startswith((".", "/", "~")):
        from msft.hub import download

        return _local(download(path_or_repo))
    raise ValueError(
        f"{str(path_or_repo)!r} is neither a directory written by save_pretrained nor a hub id 'owner/name'"
    )


def _save_peft(backbone: nn.Module, tuner: Any, path: Path, source: str | None) -> None:
    """peft's own format: ``adapter_model.safetensors`` (`get_peft_model_state_dict`, keys as a
    ``PeftModel`` writes them) and ``adapter_config.json`` (`PeftConfig.save_pretrained`), loadable
    with ``peft.PeftModel.from_pretrained(base, path)``. ``tuner``: AdaLoRA's tuner (it resizes the
    ranks it pruned); LoRA was injected into ``backbone`` directly."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    view = _PeftView(backbone, tuner)
    state = get_peft_model_state_dict(view, save_embedding_layers=False)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in state.items()},
        str(path / "adapter_model.safetensors"),
        metadata={"format": "pt"},
    )
    config = view.peft_config["default"]
    config.base_model_name_or_path = source
    config.save_pretrained(str(path))


class _PeftView(nn.Module):
    """The backbone under the names a ``PeftModel`` gives it (``base_model.model.<name>``), so peft's
    own `get_peft_model_state_dict` writes keys that ``PeftModel.from_pretrained`` reads back."""

    def __init__(self, backbone: nn.Module, tuner: Any):
        super().__init__()
        if tuner is None:  # LoRA was injected into the backbone itself: give it a tuner-like parent
            tuner = nn.Module()
            tuner.model = backbone
            tuner.peft_config = backbone.peft_config
        self.base_model = tuner
        self.peft_config = tuner.peft_config

    def resize_state_dict_by_rank_pattern(self, *args: Any) -> dict:  # AdaLoRA: drop the pruned ranks
        return self.base_model.resize_state_dict_by_rank_pattern(*args)


def _left_pad(values: np.ndarray, length: int) -> np.ndarray:
    values = np.where(np.isfinite(values), values, np.nan)[-length:]
    return np.concatenate([np.full(length - len(values), np.nan), values])


def _sample_quantiles(samples: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
    """GluonTS's sample quantile (the ``round((S-1) q)``-th order statistic): ``(n, S, H) -> (n, Q, H)``."""
    ordered = samples.sort(dim=1).values
    index = torch.tensor([round((samples.shape[1] - 1) * q) for q in levels], device=samples.device)
    return ordered.index_select(1, index)


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
