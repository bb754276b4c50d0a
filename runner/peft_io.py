"""The LoRA / AdaLoRA baselines saved in peft's own format, loadable with ``peft.PeftModel.from_pretrained``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


def save_peft(backbone: nn.Module, tuner: Any, path: Path, source: str | None) -> None:
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
