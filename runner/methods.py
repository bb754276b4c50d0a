"""Finetuning methods as ways of building one `msft.MSFTModel`, so every method runs through msft's
generic forward and works for every registered backbone.

``wrap(backbone, scales=[1], adapters=False, lora=False, c2f=False, f2c=False, learned_fusion=False)``
is exactly the backbone (tested identity in the core), so the baselines differ only in what trains:

- ``zero_shot``: nothing; ``full``: every backbone parameter; ``linear_probe``: the backbone's head
  (``spec.output_head``; msft's own heads when the backbone has none);
- ``lora`` / ``adalora``: peft LoRA / AdaLoRA injected before wrapping into exactly the modules
  msft's per-scale LoRA would take (``spec.lora_targets()``, the attention q/k/v);
- ``msft``: the multi-scale model, with `msft.MSFTConfig` options from the method config;
- ``prompt_tuning``: the identity wrap plus ``prompt_tokens`` learnable soft-prompt vectors per
  scale (``msft_prompt``, Lester et al. 2021) in front of the encoder's tokens; only they (and msft's
  own heads, if the backbone has them) train. msft's own implementation through the spec's
  ``add_prefix`` (toy, MOIRAI): peft's prompt tuning needs a transformers model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from torch import nn

import msft
from msft.registry import build_spec

logger = logging.getLogger(__name__)

KINDS = ("zero_shot", "full", "linear_probe", "lora", "adalora", "msft", "prompt_tuning")
IDENTITY = dict(scales=[1], adapters=False, lora=False, c2f=False, f2c=False, learned_fusion=False)


@dataclass
class Built:
    model: msft.MSFTModel
    trains: bool
    tuner: Any = None  # peft's AdaLoraModel, whose rank allocation must be stepped during training


def build_model(
    backbone: nn.Module,
    kind: str,
    horizon: int,
    options: dict[str, Any] | None = None,
    peft: dict[str, Any] | None = None,
    total_steps: int | None = None,
    wrap_options: dict[str, Any] | None = None,
    backbone_trainable: str | None = None,
) -> Built:
    """Apply method ``kind`` to ``backbone`` (in place) and return the wrapped model.

    ``options``: `msft.wrap` options (for ``msft``; ``prompt_tokens`` only for ``prompt_tuning``); ``peft``: LoRA/AdaLoRA settings
    (``r``, ``alpha``, ``dropout`` and, for AdaLoRA, ``target_r``); ``total_steps``: AdaLoRA's budget;
    ``wrap_options``: `msft.wrap` options every method of this backbone needs (e.g. MOIRAI's
    ``patch_size``), from the backbone config's ``wrap_options`` key; ``backbone_trainable``: backbone
    parameters that train besides the method's own, resolved by the spec's `trainable_parameters`
    ("none", "all", or a spec's pattern such as MOIRAI's "freeze_ffn").
    """
    if kind not in KINDS:
        raise ValueError(f"method kind={kind!r}: expected one of {KINDS}")
    options = dict(options or {})
    if kind == "prompt_tuning":
        if set(options) != {"prompt_tokens"}:
            raise ValueError(f"method 'prompt_tuning' takes exactly the option prompt_tokens, got {sorted(options)}")
    elif kind != "msft" and options:
        raise ValueError(f"method {kind!r} takes no msft options, got {sorted(options)}")
    tuner = None
    base = dict(wrap_options or {})
    if kind in ("lora", "adalora"):
        spec = build_spec(backbone, msft.MSFTConfig.from_dict({**base, **IDENTITY, "horizon": horizon}))
        settings = dict(peft or {})
        targets = settings.pop("targets", None)
        if targets is not None and (isinstance(targets, str) or not all(isinstance(t, str) and t for t in targets)):
            raise ValueError(f"peft.targets={targets!r}: expected a list of module names or patterns")
        try:
            modules = spec.lora_modules(tuple(targets) if targets else None)
        except ValueError as error:
            raise ValueError(f"peft.targets={targets!r} match no module of the {spec.name} backbone: {error}") from None
        tuner = _inject_peft(backbone, modules, kind, settings, total_steps)
    if kind == "msft":
        model = msft.wrap(backbone, horizon=horizon, **{**base, **options})
    elif kind == "prompt_tuning":
        model = msft.wrap(backbone, horizon=horizon, **{**base, **IDENTITY}, prompt_tokens=options["prompt_tokens"])
    else:
        model = msft.wrap(backbone, horizon=horizon, **{**base, **IDENTITY})
    if kind == "full":  # every backbone parameter the forward uses (`BackboneSpec.own_parameters`)
        params = dict(model.backbone.named_parameters())
        for name in model.spec.trainable_parameters("all"):
            params[name].requires_grad_(True)
    elif kind == "linear_probe":
        head = model.spec.output_head
        if head is not None:
            model.backbone.get_submodule(head).requires_grad_(True)
        elif model.msft_heads is None:
            raise ValueError(f"linear_probe: the {model.spec.name} backbone names no output_head and has no msft heads")
    elif kind in ("lora", "adalora"):
        for name, p in model.backbone.named_parameters():
            if "lora_" in name:  # wrap froze them with the rest of the backbone
                p.requires_grad_(True)
    if backbone_trainable not in (None, "none"):
        if kind == "zero_shot":
            raise ValueError(
                f"method 'zero_shot' trains nothing: backbone_trainable={backbone_trainable!r} "
                "expects a finetuning method"
            )
        params = dict(model.backbone.named_parameters())
        for name in model.spec.trainable_parameters(backbone_trainable):
            params[name].requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trains = kind != "zero_shot"
    if trains and trainable == 0:
        raise ValueError(f"method {kind!r} left no trainable parameter on the {model.spec.name} backbone")
    if not trains:
        model.requires_grad_(False)
    return Built(model, trains, tuner)


def _inject_peft(backbone: nn.Module, modules: list[str], kind: str, settings: dict[str, Any], total_steps: int | None):
    """peft LoRA / AdaLoRA on exactly ``modules`` (full names).

    AdaLoRA's rank schedule (peft's ``tinit`` / ``tfinal``) is given as fractions of the step budget:
    ``tinit`` (default 0.1) steps train at the initial rank, the last ``tfinal`` (default 0.2) at the
    final one, and the ranks are pruned in between.
    """
    import peft

    unknown = set(settings) - {"r", "alpha", "dropout", "init_r", "target_r", "tinit", "tfinal"}
    if unknown:
        raise ValueError(
            f"peft settings {sorted(unknown)}: expected r, alpha, dropout, targets, init_r, target_r, tinit, tfinal"
        )
    target = "|".join(re.escape(name) for name in modules)  # peft full-matches a string target
    r, alpha, dropout = settings.get("r", 16), settings.get("alpha", 32), settings.get("dropout", 0.05)
    if kind == "lora":
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target)
        peft.inject_adapter_in_model(config, backbone)
        return None
    if not total_steps or total_steps < 2:
        raise ValueError(f"adalora needs the number of training steps (>= 2), got total_steps={total_steps!r}")
    tinit, tfinal = settings.get("tinit", 0.1), settings.get("tfinal", 0.2)
    if not (0 <= tinit and 0 <= tfinal and tinit + tfinal < 1):
        raise ValueError(
            f"adalora schedule tinit={tinit!r}, tfinal={tfinal!r}: expected fractions of the budget "
            "that are >= 0 and leave some steps to prune (tinit + tfinal < 1)"
        )
    # AdaLoRA keeps a rank allocator on its tuner object; inject_adapter_in_model would drop it.
    config = peft.AdaLoraConfig(
        init_r=settings.get("init_r", r),
        target_r=settings.get("target_r", r // 2),
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target,
        total_step=total_steps,
        tinit=int(tinit * total_steps),
        tfinal=int(tfinal * total_steps),
    )
    return peft.tuners.adalora.AdaLoraModel(backbone, config, "default")
