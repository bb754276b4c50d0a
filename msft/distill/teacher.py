"""Teachers: what distillation needs from a forecaster, a hook for features, and the output cache.

A teacher is anything `msft.protocols.evaluate_lsf` accepts (an object with
``.predict(past_target, horizon)`` or a callable ``f(past_target)``). The feature term additionally
needs features, from (first match wins):

1. ``teacher.predict_with_features(past_target, horizon) -> (forecast, features)`` (one pass), or
2. ``teacher.features(past_target) -> features``, or
3. an `msft.MSFTModel`, handled by `msft_teacher`: `MSFTModel.forward_features` gives the forecast
   and the last layer's hidden states in one pass; the features are the **finest scale's** hidden
   states averaged over its real data tokens only (context tokens that hold observed steps and
   horizon tokens; no prompt or soft-prompt prefix, no left padding), so they do not change with the
   batch a series is in, with the padding of its context or with the length of a prompt.

`HookTeacher` (a forward hook on any module, mean over all its tokens) remains for other forecasters.

Features are ``(batch, variate, width)``, or ``(batch * variate, width)`` for channel-independent
teachers. A teacher with none of these gives no features and is distilled with ``beta=0``.

Teacher outputs over the training windows are computed once (`cache_teacher`) and kept in memory or
in a safetensors file named by `cache_name` (dataset, context length, horizon, mode, stride, teacher
tag), so every distillation epoch costs only student time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

logger = logging.getLogger(__name__)


class HookTeacher:
    """A forecaster plus the module whose output serves as its features (mean-pooled over tokens)."""

    def __init__(self, forecaster: Any, layer: nn.Module):
        if not isinstance(layer, nn.Module):
            raise ValueError(f"layer must be a torch.nn.Module, got {type(layer).__name__}")
        self.forecaster, self.layer = forecaster, layer

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        return _point(self.forecaster)(past_target, horizon)

    def predict_with_features(self, past_target: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        captured: list[Tensor] = []

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not captured:  # the first call: the scale-1 block of a blocked msft model
                captured.append(output if isinstance(output, Tensor) else output[0])

        handle = self.layer.register_forward_hook(hook)
        try:
            forecast = self.predict(past_target, horizon)
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"the feature layer {type(self.layer).__name__} did not run during predict")
        hidden = captured[0]  # (series, tokens, width) or (series, width)
        return forecast, hidden.mean(dim=1) if hidden.dim() == 3 else hidden


class MSFTTeacher:
    """An `msft.MSFTModel` as a teacher; features: the finest scale's last hidden states averaged over
    its real data tokens (`msft.features.ScaleFeatures.pooled`), ``(batch * variate, d_model)``."""

    def __init__(self, model: nn.Module):
        self.model = model

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        return self.model.predict(past_target, horizon)

    def predict_with_features(self, past_target: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        out = self.model.forward_features(past_target, horizon)
        return out.forecast, out.scales[0].pooled()


class ChannelIndependent:
    """A univariate teacher (trained on one series per window, as msft's mode "S" runs) served
    multivariate windows: ``(batch, time, variate)`` is fed as ``(batch * variate, time, 1)`` and
    the forecast folded back, so a student trained on all channels of a window at once (TimeDistill's
    batches) is distilled from exactly the forecasts the teacher was scored on. Features:
    ``(batch * variate, width)``."""

    def __init__(self, teacher: Any):
        self.teacher = msft_teacher(teacher) if _is_msft(teacher) else teacher

    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        forecast = _point(self.teacher)(_unfold(past_target), horizon)  # (batch * variate, horizon, 1)
        return _fold(forecast, past_target.shape[2])

    def predict_with_features(self, past_target: Tensor, horizon: int) -> tuple[Tensor, Tensor | None]:
        """Features ``(batch * variate, width)``, or None when the teacher gives none."""
        forecast, feats = teacher_outputs(self.teacher, _unfold(past_target), horizon)
        return _fold(forecast, past_target.shape[2]), None if feats is None else feats.flatten(0, 1)


def _unfold(past_target: Tensor) -> Tensor:
    return rearrange(past_target, "b t v -> (b v) t 1")


def _fold(forecast: Tensor, variates: int) -> Tensor:
    return rearrange(forecast, "(b v) t 1 -> b t v", v=variates)


def _is_msft(model: Any) -> bool:
    from msft.model import MSFTModel

    return isinstance(model, MSFTModel)


def msft_teacher(model: nn.Module) -> MSFTTeacher:
    """An `msft.MSFTModel` as a teacher (forecast and features from one `forward_features` pass)."""
    from msft.model import MSFTModel

    if not isinstance(model, MSFTModel):
        raise ValueError(f"msft_teacher expects an msft.MSFTModel, got {type(model).__name__}")
    return MSFTTeacher(model)


def teacher_outputs(
    teacher: Any, past_target: Tensor, horizon: int, features: bool = True
) -> tuple[Tensor, Tensor | None]:
    """``(forecast (batch, horizon, variate), features (batch, variate, width) or None)``."""
    from msft.model import MSFTModel

    feats = None
    if features and isinstance(teacher, MSFTModel):
        teacher = msft_teacher(teacher)
    if features and hasattr(teacher, "predict_with_features"):
        forecast, feats = teacher.predict_with_features(past_target, horizon)
    else:
        forecast = _point(teacher)(past_target, horizon)
        if features and hasattr(teacher, "features"):
            feats = teacher.features(past_target)
    batch, _, variates = past_target.shape
    expected = (batch, horizon, variates)
    if not isinstance(forecast, Tensor) or tuple(forecast.shape) != expected:
        got = tuple(forecast.shape) if isinstance(forecast, Tensor) else type(forecast).__name__
        raise ValueError(f"teacher returned a forecast of shape {got}; expected {expected}")
    if feats is not None:
        if feats.dim() == 2 and feats.shape[0] == batch * variates:
            feats = feats.reshape(batch, variates, -1)
        if feats.dim() != 3 or feats.shape[:2] != (batch, variates):
            raise ValueError(
                f"teacher features have shape {tuple(feats.shape)}; expected ({batch}, {variates}, width) "
                f"or ({batch * variates}, width)"
            )
    return forecast, feats


@dataclass
class TeacherCache:
    """Teacher outputs aligned with a `Windows` object: ``forecast[i]`` belongs to window ``i``.

    forecast: (windows, horizon, variate); features: (windows, variate, width) or None.
    """

    forecast: Tensor
    features: Tensor | None = None

    def __len__(self) -> int:
        return self.forecast.shape[0]

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"forecast": self.forecast.contiguous()}
        if self.features is not None:
            tensors["features"] = self.features.contiguous()
        save_file(tensors, str(path))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TeacherCache:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        return cls(tensors["forecast"], tensors.get("features"))


def cache_name(dataset: str, context_length: int, horizon: int, mode: str, stride: int, tag: str) -> str:
    """File name of a cache: one per dataset × context × horizon × mode × window stride × teacher."""
    return f"{dataset}_L{context_length}_H{horizon}_{mode}_stride{stride}_{tag}.safetensors"


def cache_teacher(
    teacher: Any,
    windows: Any,
    horizon: int,
    batch_size: int = 256,
    features: bool = True,
    path: str | Path | None = None,
) -> TeacherCache:
    """Run ``teacher`` once over every window (index order) and return its outputs.

    With ``path``: load the cache from that file if it exists (its length must equal the number of
    windows), else compute it and write it there.
    """
    if path is not None and Path(path).is_file():
        cache = TeacherCache.load(path)
        if len(cache) != len(windows) or cache.forecast.shape[1] != horizon:
            raise ValueError(
                f"cache {path} holds {len(cache)} windows of horizon {cache.forecast.shape[1]}; expected "
                f"{len(windows)} of horizon {horizon}: delete it or change the cache directory"
            )
        logger.info("teacher cache loaded from %s", path)
        return cache
    if isinstance(teacher, nn.Module):
        teacher.eval()
    forecasts, feats = [], []
    with torch.no_grad():
        for number, start in enumerate(range(0, len(windows), batch_size)):
            if number % 50 == 0:
                logger.info("teacher cache: window %d of %d", start, len(windows))
            batch = windows[start : start + batch_size]
            forecast, feat = teacher_outputs(teacher, batch["past_target"], horizon, features)
            forecasts.append(forecast.float().cpu())
            if feat is not None:
                feats.append(feat.float().cpu())
    if feats and len(feats) != len(forecasts):
        raise ValueError("the teacher gave features for some batches only")
    cache = TeacherCache(torch.cat(forecasts), torch.cat(feats) if feats else None)
    if path is not None:
        cache.save(path)
        logger.info("teacher cache written to %s", path)
    return cache


def _point(forecaster: Any):
    """``f(past, horizon)`` as `msft.protocols.evaluate_lsf` calls a forecaster."""
    if hasattr(forecaster, "predict"):
        return forecaster.predict
    if callable(forecaster):
        return lambda past, horizon: forecaster(past)
    raise ValueError(f"teacher {forecaster!r} is neither callable nor has .predict(past_target, horizon)")


TEACHER_BACKBONE = "backbone.safetensors"
TEACHER_CONFIG = "teacher.json"
TEACHER_ADAPTER = "adapter"


def save_teacher(model: nn.Module, path: str | Path) -> Path:
    """Write an `msft.MSFTModel` whose backbone is built as ``cls(**dataclasses.asdict(backbone.config))``
    (the toy backbone; HF-style backbones load their own weights and need only `save_adapter`).

    Layout: ``teacher.json`` (backbone class and config), ``backbone.safetensors`` (the unwrapped
    backbone's own weights), ``adapter/`` (`MSFTModel.save_adapter`).
    """
    import dataclasses
    import json

    from safetensors.torch import save_file

    from msft.model import MSFTModel

    if not isinstance(model, MSFTModel):
        raise ValueError(f"save_teacher expects an msft.MSFTModel, got {type(model).__name__}")
    backbone = model.backbone
    if not dataclasses.is_dataclass(getattr(backbone, "config", None)):
        raise ValueError(f"{type(backbone).__name__} has no dataclass .config: save_teacher cannot rebuild it")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    msft_names = model.msft_state_names()
    own = {n: t.detach().cpu().contiguous() for n, t in model.state_dict().items() if n not in msft_names}
    save_file(own, str(path / TEACHER_BACKBONE))
    meta = {
        "class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "config": dataclasses.asdict(backbone.config),
    }
    (path / TEACHER_CONFIG).write_text(json.dumps(meta, indent=2))
    model.save_adapter(path / TEACHER_ADAPTER)
    return path


def load_teacher(path: str | Path) -> nn.Module:
    """The `msft.MSFTModel` written by `save_teacher`, in eval mode."""
    import importlib
    import json

    from safetensors.torch import load_file

    from msft.model import load_adapter

    path = Path(path)
    for file in (path / TEACHER_CONFIG, path / TEACHER_BACKBONE):
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found: expected a directory written by save_teacher")
    meta = json.loads((path / TEACHER_CONFIG).read_text())
    module_name, _, class_name = meta["class"].rpartition(".")
    backbone = getattr(importlib.import_module(module_name), class_name)(**meta["config"])
    # the backbone is built with fresh weights; the teacher's own are loaded right below
    model = load_adapter(backbone, path / TEACHER_ADAPTER, allow_base_mismatch=True)
    missing, unexpected = model.load_state_dict(load_file(str(path / TEACHER_BACKBONE)), strict=False)
    missing = [n for n in missing if n not in model.msft_state_names()]
    if missing or unexpected:
        raise ValueError(f"teacher weights in {path} do not fit: missing {missing}, unexpected {unexpected}")
    return model.eval()
