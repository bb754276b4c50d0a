"""Shared pieces of the tiny-MOIRAI benchmarks: a direct MOIRAI forecaster, baselines, table writing.

`MoiraiForecaster` runs ``MoiraiModule.forward`` on one univariate series per row exactly as
MOIRAI's own predictor lays it out (context patches, then masked horizon patches, sample id 1 (0 is padding),
time ids 0..n) and takes the point forecast as the **median of ``num_samples`` sample paths** of
the mixture. It is what ``msft.wrap(module, scales=[1], adapters=False, lora=False, ...)``
computes for the MOIRAI spec; it exists so the zero-shot numbers do not depend on another branch.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from uni2ts.common.torch_util import packed_attention_mask

DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather")
#: Default data location on the build machines; override with MSFT_DATA_DIR.
DATA_DIR = os.environ.get("MSFT_DATA_DIR", "/work/shared/data")


class MoiraiForecaster:
    """``predict(past (batch, L, V), horizon) -> (batch, horizon, V)``, per channel.

    ``point="median"``: the median of ``num_samples`` sampled paths (uni2ts' and msft's MOIRAI point
    forecast); ``point="mean"``: the mixture's closed-form mean (no sampling, much cheaper).
    """

    def __init__(self, module, patch_size: int, num_samples: int = 100, seed: int = 0, point: str = "median"):
        if patch_size not in tuple(module.patch_sizes):
            raise ValueError(f"patch_size={patch_size}: the module supports {list(module.patch_sizes)}")
        if point not in ("median", "mean"):
            raise ValueError(f"point={point!r}: expected 'median' or 'mean'")
        self.module, self.patch_size, self.num_samples, self.seed = module, patch_size, num_samples, seed
        self.point = point

    @torch.no_grad()
    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        batch, length, variates = past_target.shape
        series = past_target.permute(0, 2, 1).reshape(batch * variates, length).float()  # (series, L)
        ps, max_patch = self.patch_size, max(self.module.patch_sizes)
        pad_left, pad_right = -length % ps, -horizon % ps
        n_ctx, n_hor = math.ceil(length / ps), math.ceil(horizon / ps)
        observed = torch.isfinite(series)
        values = F.pad(torch.nan_to_num(series), (pad_left, horizon + pad_right))  # (series, tokens * ps)
        seen = F.pad(observed, (pad_left, horizon + pad_right))
        tokens = n_ctx + n_hor
        target = F.pad(values.reshape(-1, tokens, ps), (0, max_patch - ps))  # (series, tokens, max_patch)
        seen = F.pad(seen.reshape(-1, tokens, ps), (0, max_patch - ps))
        n = target.shape[0]
        prediction_mask = torch.zeros(n, tokens, dtype=torch.bool)
        prediction_mask[:, n_ctx:] = True
        m = self.module
        sample_id = torch.ones(n, tokens, dtype=torch.long)  # uni2ts: sample id 0 means padding
        variate_id = torch.zeros(n, tokens, dtype=torch.long)
        patch_size = torch.full((n, tokens), ps, dtype=torch.long)
        # MoiraiModule.forward, with the head applied to the horizon tokens only (as msft's spec does).
        loc, scale = m.scaler(target, seen & ~prediction_mask.unsqueeze(-1), sample_id, variate_id)
        reprs = m.in_proj((target - loc) / scale, patch_size)  # (series, tokens, d_model)
        reprs = torch.where(prediction_mask.unsqueeze(-1), m.mask_encoding.weight, reprs)
        reprs = m.encoder(reprs, packed_attention_mask(sample_id), time_id=torch.arange(tokens).expand(n, tokens),
                          var_id=variate_id)
        params = m.param_proj(reprs[:, n_ctx:], patch_size[:, n_ctx:])
        distr = m.distr_output.distribution(params, loc=loc[:, n_ctx:], scale=scale[:, n_ctx:])
        if self.point == "mean":
            point = distr.mean[..., :ps].reshape(n, n_hor * ps)[:, :horizon]  # (series, horizon)
        else:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(self.seed)
            draws = distr.sample(torch.Size([self.num_samples]))  # (samples, series, n_hor, max_patch)
            torch.random.set_rng_state(generator_state)
            paths = draws[..., :ps].reshape(self.num_samples, n, n_hor * ps)[..., :horizon]
            point = paths.median(dim=0).values  # (series, horizon)
        return point.reshape(batch, variates, horizon).permute(0, 2, 1)  # (batch, horizon, V)


def machine_line() -> str:
    return (f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
            f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")


def write_table(path: Path, title: str, command: str, header: list[str], rows: list[list[str]],
                notes: list[str], extra: list[str] = ()) -> None:
    lines = [f"# {title}", "", f"Regenerate: `{command}`", "", machine_line(), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes] + [""] + list(extra) + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
