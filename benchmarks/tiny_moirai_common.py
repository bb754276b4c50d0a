"""Shared pieces of the tiny-MOIRAI benchmarks: the MOIRAI point forecasters, table writing."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
from torch import Tensor

import msft
import msft_backbones.moirai  # noqa: F401  (registers the MOIRAI spec even where the entry point is not installed)

DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather")
#: The data directory: $MSFT_DATA_DIR, else ../shared/data beside the checkout (as the tests).
DATA_DIR = os.environ.get("MSFT_DATA_DIR") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data")


def moirai_forecaster(module, patch_size: int, point: str = "mean", num_samples: int = 100, seed: int = 0):
    """The module's own forecast through msft's identity wrap (``scales=[1]``, nothing injected; tested
    bit-exact against ``MoiraiModule.forward``): the mixture mean (``point="mean"``) or the median of
    ``num_samples`` sample paths (``point="median"``)."""
    model = msft.wrap(
        module,
        scales=[1],
        adapters=False,
        lora=False,
        c2f=False,
        f2c=False,
        learned_fusion=False,
        patch_size=patch_size,
        point_forecast="mean",
    )
    return model if point == "mean" else SampleMedian(model, num_samples, seed)


class SampleMedian:
    """``predict(past, horizon)``: median of ``num_samples`` fused sample paths (msft's ``predict``)."""

    def __init__(self, model, num_samples: int, seed: int = 0):
        self.model, self.num_samples, self.seed = model, num_samples, seed

    @torch.no_grad()
    def predict(self, past_target: Tensor, horizon: int) -> Tensor:
        torch.manual_seed(self.seed)
        return self.model.predict_samples(past_target, horizon, num_samples=self.num_samples).median(dim=1).values


def machine_line() -> str:
    return (
        f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}"
    )


def write_table(
    path: Path,
    title: str,
    command: str,
    header: list[str],
    rows: list[list[str]],
    notes: list[str],
    extra: list[str] = (),
) -> None:
    lines = [f"# {title}", "", f"Regenerate: `{command}`", "", machine_line(), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes] + [""] + list(extra) + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
