"""How a backbone tells the core where its parts are and how it turns one scale into tokens.

A backbone family is one file in ``backbones/`` with a `BackboneSpec` subclass decorated by
`register_backbone`. The core never imports a backbone: specs are found among the registered ones
and, failing that, by loading the ``msft.backbones`` entry points (see ``pyproject.toml``), so
installing a package that declares such an entry point is all it takes to add a backbone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from msft.config import MSFTConfig

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "msft.backbones"
_REGISTRY: dict[str, type["BackboneSpec"]] = {}


@dataclass
class ScaleTokens:
    """One scale's token sequence: ``[prefix | context | horizon]`` along the token axis."""

    hidden: Tensor  # (series, tokens, d_model)
    num_prefix: int
    num_context: int
    num_horizon: int
    aux: Any = None  # backbone-specific: masks, ids, normalisation statistics

    @property
    def layout(self) -> tuple[int, int, int]:
        return (self.num_prefix, self.num_context, self.num_horizon)


class BackboneSpec:
    """What msft needs to know about one backbone family.

    Class attributes say where things are (module names relative to the backbone); methods say how
    one scale's univariate series become tokens, how one layer runs, and how forecasts come out.
    The series handed to a spec are ``(series, time)``: msft has already split variates
    (channel independence) and pooled the context to the scale's resolution.
    """

    name: ClassVar[str]
    #: fully-qualified class names this spec handles (checked along the backbone's MRO).
    module_types: ClassVar[tuple[str, ...]]
    #: the module whose output the per-scale adapters transform (the frozen input projection).
    input_projection: ClassVar[str]
    #: default LoRA targets (see MSFTConfig.lora_targets for the matching rules).
    attention_projections: ClassVar[tuple[str, ...]]
    #: the backbone's own output head (dotted name), if it has a pretrained one: what baselines such
    #: as linear probing train. None when msft builds the heads (`build_heads`).
    output_head: ClassVar[str | None] = None
    #: True when `head` outputs distributions (`sample` is implemented).
    probabilistic: ClassVar[bool] = False
    #: True when `add_prefix` is implemented (soft prompts, ``MSFTConfig.prompt_tokens``).
    supports_prefix: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, config: "MSFTConfig"):
        self.backbone = backbone
        self.config = config

    # -- geometry -------------------------------------------------------------------------------
    def d_model(self) -> int:
        raise NotImplementedError

    def patch_size(self) -> int:
        """Time steps per token; the context must hold at least ``max(scales) * patch_size`` steps."""
        raise NotImplementedError

    def layers(self) -> list[nn.Module]:
        """The stacked layers; cross-scale aggregation runs after each."""
        raise NotImplementedError

    def build_heads(self, num_scales: int) -> nn.Module | None:
        """msft-owned per-scale heads (trainable), or None when the backbone's own head is used."""
        return None

    def check_context(self, context_length: int) -> None:
        """Raise ValueError if the backbone cannot take this many context steps."""

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        """Tokens of one scale: ``context``/``observed`` are ``(series, time)``; ``horizon`` steps ahead."""
        raise NotImplementedError

    def add_prefix(self, tokens: ScaleTokens, prefix: Tensor) -> ScaleTokens:
        """``tokens`` with ``prefix`` ``(series, P, d_model)`` prepended: ``num_prefix`` grows by P and
        ``aux`` (masks, ids) is extended so the prefix is attended to like the scale's own tokens.
        Set ``supports_prefix = True`` when implementing it."""
        raise ValueError(f"the {self.name} backbone does not support prompt_tokens (its spec has no add_prefix)")

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: Any) -> Tensor:
        raise NotImplementedError

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> Any:
        """``aux`` for all scales concatenated along the token axis; with ``block_diagonal`` the
        masks keep each token inside its own scale (the dense reference of intra-scale attention)."""
        raise NotImplementedError

    def join_blocks(self, tokens: list[ScaleTokens]) -> Any:
        """Optional fast path of intra-scale attention: ``aux`` for all scales concatenated along the
        token axis, for a `run_layer` that keeps attention inside each scale's block itself (cost
        sum n_s^2) while running the token-wise parts (projections, MLP) once over all tokens.
        ``None`` (the default): msft runs each scale's block through the layer separately."""
        return None

    def head(self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None) -> Any:
        """The scale's forecast output for ``horizon`` steps at its own resolution."""
        raise NotImplementedError

    def point(self, output: Any) -> Tensor:
        """``(series, horizon)`` point forecast from a `head` output."""
        raise NotImplementedError

    def mean(self, output: Any) -> Tensor:
        """``(series, horizon)`` mean of a `head` output (probabilistic backbones; used when
        ``point_forecast="mean"``)."""
        raise NotImplementedError(f"the {self.name} backbone has no closed-form forecast mean")

    def sample(self, output: Any, num_samples: int) -> Tensor:
        """``(series, num_samples, horizon)`` sample paths (probabilistic backbones)."""
        raise NotImplementedError(f"the {self.name} backbone gives point forecasts only")

    def loss(self, output: Any, target: Tensor, observed: Tensor) -> Tensor:
        """Scalar loss of one scale; ``target``/``observed`` are ``(series, horizon)``."""
        raise NotImplementedError

    def trainable_parameters(self, pattern: str) -> list[str]:
        """Names (in ``backbone.named_parameters()``) of the backbone parameters that train besides
        msft's own parts under ``pattern``: "none" nothing, "all" every one; a spec may add named
        patterns of its own (MOIRAI: "freeze_ffn", the MSFT authors' recipe)."""
        if pattern == "none":
            return []
        if pattern == "all":
            return [n for n, _ in self.backbone.named_parameters() if "msft_" not in n]
        raise ValueError(f"backbone_trainable={pattern!r}: the {self.name} backbone supports 'none' and 'all'")


def register_backbone(spec: type[BackboneSpec]) -> type[BackboneSpec]:
    """Class decorator: make ``spec`` available to `msft.wrap`."""
    for attr in ("name", "module_types", "input_projection", "attention_projections"):
        if not hasattr(spec, attr):
            raise TypeError(f"{spec.__name__} must define the class attribute {attr!r}")
    _REGISTRY[spec.name] = spec
    return spec


def registered_backbones() -> dict[str, type[BackboneSpec]]:
    """All known specs, loading the ``msft.backbones`` entry points first."""
    _load_entry_points()
    return dict(_REGISTRY)


def spec_for(backbone: nn.Module) -> type[BackboneSpec]:
    """The spec for ``backbone``'s type; ValueError listing the supported types if none."""
    spec = _match(backbone)
    if spec is None:
        _load_entry_points()
        spec = _match(backbone)
    if spec is None:
        supported = sorted(t for s in _REGISTRY.values() for t in s.module_types)
        raise ValueError(
            f"no msft backbone spec for {_qualname(type(backbone))}: expected one of {supported} "
            "(add a backbone by registering a BackboneSpec, see backbones/toy.py)"
        )
    return spec


def _match(backbone: nn.Module) -> type[BackboneSpec] | None:
    names = [_qualname(t) for t in type(backbone).__mro__]
    for spec in _REGISTRY.values():
        if any(t in names for t in spec.module_types):
            return spec
    return None


def _qualname(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as err:  # a broken optional backbone must not hide the others
            logger.warning("could not load msft backbone %r (%s): %s", ep.name, ep.value, err)
