"""The students of TimeDistill: small channel-independent forecasters that a teacher is distilled into.

Each variate is its own series, z-scored over its observed context points and mapped by a RevIN
with a learnable scalar affine that is exactly inverted on the output. Two bodies (``arch``):

- ``"dmlp"`` (default): TimeDistill's ``DMLP``. A moving average (kernel ``moving_avg``, 25; the
  series replicated at both ends) splits the context into trend and seasonal parts; each part goes
  through ``Linear(L, hidden) -> BatchNorm -> ReLU -> Linear(hidden, H)`` and the two forecasts are
  added. The BatchNorm normalises each of ``channels`` channels over the batch and the hidden units
  (the reference's ``BatchNorm1d(enc_in)``; with ``channels=1`` every series shares one channel, as
  the reference in univariate mode). Features: the sum of the two branches' first Linear outputs,
  before the BatchNorm, ``(series, hidden)`` (the reference's ``features[-2]``).
- ``"mlp"``: ``Linear(L, hidden) -> GELU -> [Linear(hidden, hidden) -> GELU] * (num_layers - 1) ->
  Linear(hidden, H)``; features: the last hidden activation.

It saves and loads like an msft adapter: safetensors weights + a JSON config in one directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from msft.ops import masked_mean_var

STUDENT_WEIGHTS = "student.safetensors"
STUDENT_CONFIG = "student_config.json"
_KIND = "msft.distill.MLPStudent"
ARCHS = ("dmlp", "mlp")


@dataclass(frozen=True)
class StudentConfig:
    """context_length L and horizon H the student maps between; ``arch`` "dmlp" (TimeDistill's, default)
    or "mlp"; hidden width; moving_avg (odd) and channels (BatchNorm channels) of "dmlp"; num_layers
    of "mlp"; dropout before the output layer; affine: a learnable RevIN affine."""

    context_length: int
    horizon: int
    hidden: int = 512
    num_layers: int = 1
    dropout: float = 0.0
    affine: bool = True
    arch: str = "dmlp"
    moving_avg: int = 25
    channels: int = 1

    def __post_init__(self) -> None:
        for name in ("context_length", "horizon", "hidden", "num_layers", "moving_avg", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r}: expected a number in [0, 1)")
        if not isinstance(self.affine, bool):
            raise ValueError(f"affine={self.affine!r}: expected True or False")
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r}: expected one of {ARCHS}")
        if self.moving_avg % 2 == 0:
            raise ValueError(
                f"moving_avg={self.moving_avg}: expected an odd kernel (the trend keeps the context length)"
            )


def moving_average(x: Tensor, kernel: int) -> Tensor:
    """``(series, time)`` -> its centred moving average, the ends replicated ``(kernel - 1) / 2`` times."""
    half = (kernel - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, half), x, x[:, -1:].expand(-1, half)], dim=1)
    return nn.functional.avg_pool1d(padded[:, None], kernel, stride=1)[:, 0]


class MLPStudent(nn.Module):
    """``forward(series (n, L), observed) -> (forecast (n, H), features (n, hidden))``; see `predict`."""

    def __init__(self, config: StudentConfig | None = None, **options: Any):
        super().__init__()
        self.config = cfg = config or StudentConfig(**options)
        if cfg.arch == "dmlp":
            self.seasonal = nn.ModuleList(
                [nn.Linear(cfg.context_length, cfg.hidden), nn.Linear(cfg.hidden, cfg.horizon)]
            )
            self.trend = nn.ModuleList([nn.Linear(cfg.context_length, cfg.hidden), nn.Linear(cfg.hidden, cfg.horizon)])
            self.seasonal_norm = nn.BatchNorm1d(cfg.channels)
            self.trend_norm = nn.BatchNorm1d(cfg.channels)
        else:
            widths = [cfg.context_length] + [cfg.hidden] * cfg.num_layers
            self.body = nn.Sequential(*(nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in zip(widths, widths[1:])))
            self.head = nn.Linear(cfg.hidden, cfg.horizon)
        self.dropout = nn.Dropout(cfg.dropout)
        self.affine_weight = nn.Parameter(torch.ones(()), requires_grad=cfg.affine)
        self.affine_bias = nn.Parameter(torch.zeros(()), requires_grad=cfg.affine)

    def forward(self, series: Tensor, observed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """series: (n, L) with NaN or ``observed=False`` where missing -> ((n, H), (n, hidden))."""
        observed = ~torch.isnan(series) if observed is None else observed & ~torch.isnan(series)
        loc, var = masked_mean_var(series, observed)  # (n, 1) each
        scale = (var + 1e-5).sqrt()
        normed = torch.where(observed, (series - loc) / scale, torch.zeros_like(series))
        x = normed * self.affine_weight + self.affine_bias  # (n, L)
        out, features = self._dmlp(x) if self.config.arch == "dmlp" else self._mlp(x)
        out = (out - self.affine_bias) / (self.affine_weight + 1e-8)
        return out * scale + loc, features

    def _mlp(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)  # (n, hidden)
        return self.head(self.dropout(features)), features

    def _dmlp(self, x: Tensor) -> tuple[Tensor, Tensor]:
        trend = moving_average(x, self.config.moving_avg)  # (n, L)
        seasonal = self.seasonal[0](x - trend)  # (n, hidden)
        trend = self.trend[0](trend)
        features = seasonal + trend
        seasonal = torch.relu(self._batch_norm(self.seasonal_norm, seasonal))
        trend = torch.relu(self._batch_norm(self.trend_norm, trend))
        return self.seasonal[1](self.dropout(seasonal)) + self.trend[1](self.dropout(trend)), features

    def _batch_norm(self, norm: nn.BatchNorm1d, h: Tensor) -> Tensor:
        """BatchNorm over ``channels`` channels: ``(b * channels, hidden)`` seen as ``(b, channels, hidden)``."""
        channels = self.config.channels
        if h.shape[0] % channels:
            raise ValueError(
                f"{h.shape[0]} series: expected a multiple of channels={channels} (batch * variate series, "
                "variates = the student's channels)"
            )
        return rearrange(norm(rearrange(h, "(b c) d -> b c d", c=channels)), "b c d -> (b c) d")

    def predict(self, past_target: Tensor, horizon: int, past_observed: Tensor | None = None) -> Tensor:
        """Channel-independent forecast ``(batch, time, variate) -> (batch, horizon, variate)``.

        Uses the last ``context_length`` steps; ``horizon`` may be at most the trained horizon.
        """
        series, observed = self._series(past_target, past_observed)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= self.config.horizon:
            raise ValueError(f"horizon={horizon!r}: expected an integer in [1, {self.config.horizon}]")
        out, _ = self(series, observed)
        return rearrange(out[:, :horizon], "(b v) t -> b t v", v=past_target.shape[2])

    def features(self, past_target: Tensor, past_observed: Tensor | None = None) -> Tensor:
        """Hidden features ``(batch, variate, hidden)``."""
        series, observed = self._series(past_target, past_observed)
        _, feats = self(series, observed)
        return rearrange(feats, "(b v) d -> b v d", v=past_target.shape[2])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path) -> Path:
        """Write weights (safetensors) and config (JSON) into directory ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.detach().cpu().contiguous() for n, t in self.state_dict().items()}
        save_file(tensors, str(path / STUDENT_WEIGHTS), metadata={"format": "pt", "kind": _KIND})
        (path / STUDENT_CONFIG).write_text(json.dumps({"kind": _KIND, "config": asdict(self.config)}, indent=2))
        return path

    def _series(self, past_target: Any, past_observed: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(past_target, Tensor) or past_target.dim() != 3:
            shape = tuple(past_target.shape) if isinstance(past_target, Tensor) else type(past_target).__name__
            raise ValueError(f"past_target has shape {shape}: expected a (batch, time, variate) tensor")
        length = self.config.context_length
        if past_target.shape[1] < length:
            raise ValueError(f"past_target has {past_target.shape[1]} time steps: expected at least {length}")
        if past_observed is not None and (
            not isinstance(past_observed, Tensor) or past_observed.shape != past_target.shape
        ):
            raise ValueError(f"past_observed must be a bool tensor of shape {tuple(past_target.shape)}")
        series = rearrange(past_target[:, -length:], "b t v -> (b v) t")
        observed = None if past_observed is None else rearrange(past_observed[:, -length:].bool(), "b t v -> (b v) t")
        return series, (~torch.isnan(series) if observed is None else observed)


def load_student(path: str | Path) -> MLPStudent:
    """The student saved by `MLPStudent.save` in directory ``path``."""
    from safetensors.torch import load_file

    path = Path(path)
    weights, config_file = path / STUDENT_WEIGHTS, path / STUDENT_CONFIG
    for file in (weights, config_file):
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found: expected a directory written by MLPStudent.save")
    meta = json.loads(config_file.read_text())
    if meta.get("kind") != _KIND:
        raise ValueError(f"{config_file} describes {meta.get('kind')!r}, expected {_KIND!r}")
    # Students saved before "arch" existed are MLPs.
    student = MLPStudent(StudentConfig(**{"arch": "mlp", **meta["config"]}))
    student.load_state_dict(load_file(str(weights)))
    return student.eval()
