"""Load a finished run for inference: the same model, with its trained parameters."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

import msft
from msft_runner.backbones import build_backbone
from msft_runner.methods import build_model
from msft_runner.module import ForecastModule


def load_run(run_dir: str | Path) -> msft.MSFTModel:
    """Rebuild the run's model from its resolved ``config.yaml`` and load its best checkpoint.

    Works for every method (the checkpoint holds whatever trained: LoRA, head, all weights, or
    msft's parameters). For msft runs, ``msft.load_adapter(backbone, run_dir / "adapter")`` is the
    library-only alternative that needs no runner.
    """
    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ValueError(f"run_dir={str(run_dir)!r}: no config.yaml; expected a directory written by msft-train")
    cfg = OmegaConf.load(config_file)
    # The pretrained toy weights come from the cache; everything else trained is in the checkpoint.
    method = OmegaConf.to_container(cfg.method)
    backbone, wrap_options = build_backbone(cfg.backbone)
    built = build_model(
        backbone,
        method["kind"],
        cfg.data.horizon,
        method.get("options"),
        method.get("peft"),
        total_steps=max(cfg.trainer.max_epochs, 2),
        wrap_options=wrap_options,
    )
    best = run_dir / "checkpoints" / "best.ckpt"
    if built.trains:
        if not best.is_file():
            raise ValueError(f"{best} not found: the run has no checkpoint (did it finish training?)")
        ForecastModule(built.model, {"lr": 0.0}).load_trainable(str(best))
    return built.model.eval()
