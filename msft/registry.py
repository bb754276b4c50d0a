"""The contract between the core and a backbone: `BackboneSpec`, what a head returns, the registry.

A backbone family is one file in ``backbones/`` with a `BackboneSpec` subclass decorated by
`register_backbone`. The core never imports a backbone: specs are found among the registered ones
and, failing that, by loading the ``msft.backbones`` entry points (see ``pyproject.toml``), so
installing a package that declares such an entry point is all it takes to add a backbone.

The contract (docs/design.md): a spec says where the backbone's parts are (``input_projection``,
`lora_targets`, `layers`), how one scale's univariate series becomes tokens (`embed`), how one
layer runs on them (`run_layer`, with `join` for scales concatenated along the token axis), and how
a forecast comes out (`head`, returning a `Forecast`). Everything else has a default, and every
capability (`probabilistic`, `supports_prefix`, ``blocked_layer``) follows from what it implements.
"""

from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass, field
from importlib import metadata
from os import PathLike
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from msft.layers import injected_parameter_names
from msft.losses import masked_mse
from msft.ops import match_modules

if TYPE_CHECKING:
    from msft.config import MSFTConfig

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "msft.backbones"
_REGISTRY: dict[str, type[BackboneSpec]] = {}


@dataclass
class ScaleTokens:
    """One scale's token sequence: ``[prefix | context | horizon]`` along the token axis."""

    hidden: Tensor  # (series, tokens, d_model), tokens = num_prefix + num_context + num_horizon
    num_prefix: int
    num_context: int
    num_horizon: int
    aux: Any = None  # backbone-specific: masks, ids, normalisation statistics
    #: joint variates (`BackboneSpec.embed_variates`): ``hidden`` holds ``variates`` blocks of
    #: ``[prefix | context | horizon]`` one after the other along the token axis, the ``targets``
    #: target variates first; the layout above is one variate's.
    variates: int = 1
    targets: int = 1

    @property
    def layout(self) -> tuple[int, int, int]:
        return (self.num_prefix, self.num_context, self.num_horizon)


@dataclass
class VariateGroup:
    """One scale's variates of each group, pooled to the scale (what `BackboneSpec.embed_variates` reads).

    A group is what attends jointly: every variate of one series (``mode="M"``), or one target variate
    and the covariates (``mode="S"`` with covariates). Variates are ordered targets, known-future
    covariates, past-only covariates.
    """

    context: Tensor  # (groups, variates, time)
    observed: Tensor  # (groups, variates, time)
    future: Tensor  # (groups, known, horizon): the known-future covariates over the horizon
    future_observed: Tensor  # (groups, known, horizon)
    targets: int
    known: int
    past: int


class Forecast:
    """One scale's forecast of ``horizon`` steps at the scale's own resolution, as `head` returns it.

    A point backbone returns a `PointForecast`; a probabilistic one subclasses this and implements
    `sample` (which makes its spec `probabilistic`) and `mean`.
    """

    def point(self) -> Tensor:
        """``(series, horizon)`` point forecast."""
        raise NotImplementedError

    def mean(self) -> Tensor:
        """``(series, horizon)`` closed-form mean (probabilistic forecasts; ``point_forecast="mean"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form forecast mean")

    def sample(self, num_samples: int) -> Tensor:
        """``(series, num_samples, horizon)`` sample paths (probabilistic forecasts)."""
        raise ValueError(f"{type(self).__name__} is a point forecast: it has no sample paths")

    def loss(self, target: Tensor, observed: Tensor) -> Tensor:
        """Scalar training loss against ``target``/``observed`` ``(series, horizon)``."""
        raise NotImplementedError

    def quantiles(self, levels: tuple[float, ...]) -> Tensor:
        """``(series, len(levels), horizon)`` quantiles at ``levels``, for a head that predicts
        quantiles (Chronos-2, Moirai-2): `MSFTModel.predict_quantiles` then fuses them exactly
        (quantile averaging, ``sum_s w_s upsample(q_s)``) instead of reading sample paths."""
        raise NotImplementedError(f"{type(self).__name__} gives no quantiles")

    @classmethod
    def can_sample(cls) -> bool:
        return cls.sample is not Forecast.sample

    @classmethod
    def gives_quantiles(cls) -> bool:
        return cls.quantiles is not Forecast.quantiles


@dataclass
class PointForecast(Forecast):
    """A point forecast trained with the masked mean squared error."""

    values: Tensor  # (series, horizon)

    def point(self) -> Tensor:
        return self.values

    def loss(self, target: Tensor, observed: Tensor) -> Tensor:
        return masked_mse(self.values, target, observed)


@dataclass
class TinyBackbone:
    """A tiny offline instance of a backbone family, for the contract tests and smoke runs.

    ``forecast(past_target (batch, context_length, variate))`` is the backbone's own forecast
    ``(batch, horizon, variate)`` (the distribution's mean for a probabilistic backbone): what
    ``msft.wrap(backbone, scales=[1], **options)`` must give at initialisation.
    """

    backbone: nn.Module
    context_length: int
    horizon: int
    forecast: Any  # Callable[[Tensor], Tensor]
    #: msft.wrap options every wrap of it needs besides ``horizon`` (e.g. MOIRAI's patch_size); the
    #: context supports ``scales=[1, 2, 4]``.
    options: dict[str, Any] = field(default_factory=dict)


class BackboneSpec(abc.ABC):
    """What msft needs to know about one backbone family.

    Class attributes say where things are (module names relative to the backbone); methods say how
    one scale's univariate series become tokens, how one layer runs, and how forecasts come out.
    The series handed to a spec are ``(series, time)``: msft has already split variates
    (channel independence) and pooled the context to the scale's resolution. Every method that
    touches the backbone's layers runs inside the core's scale context (per-scale adapters and
    LoRA read it), so a spec never deals with scales beyond ``scale_idx``.
    """

    name: ClassVar[str]
    #: fully-qualified class names this spec handles (checked along the backbone's MRO).
    module_types: ClassVar[tuple[str, ...]]
    #: the module whose output the per-scale adapters transform (the frozen input projection).
    input_projection: ClassVar[str]
    #: the backbone's own output head (dotted name), if it has a pretrained one: what baselines such
    #: as linear probing train. None when msft builds the heads (`build_heads`).
    output_head: ClassVar[str | None] = None
    #: what `head` returns; a type that implements `Forecast.sample` makes the spec probabilistic.
    forecast_type: ClassVar[type[Forecast]] = PointForecast
    #: a causal decoder (Moirai-2): cross-scale aggregation then keeps causality too (a fine token
    #: receives only coarse tokens that end at or before it; `msft.layers.CrossScaleAggregation`).
    causal: ClassVar[bool] = False
    #: backbone modules msft's forward never runs (the backbone's own head where msft builds the heads,
    #: an unused token embedding): "all" leaves them frozen, so every trained parameter is in the loss
    unused_modules: ClassVar[tuple[str, ...]] = ()

    # Derived in __init_subclass__ from what the subclass implements (never set by hand):
    #: `head` outputs distributions (``forecast_type`` implements `Forecast.sample`).
    probabilistic: ClassVar[bool] = False
    #: `add_prefix` is implemented (soft prompts, ``MSFTConfig.prompt_tokens``).
    supports_prefix: ClassVar[bool] = False
    #: `join_blocks` is implemented (blocked intra-scale attention over concatenated scales).
    blocked_layer: ClassVar[bool] = False
    #: `embed_variates` is implemented (``mode="M"`` and covariates: variates attend to each other).
    supports_variates: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.probabilistic = cls.forecast_type.can_sample()
        cls.supports_prefix = cls.add_prefix is not BackboneSpec.add_prefix
        cls.blocked_layer = cls.join_blocks is not BackboneSpec.join_blocks
        cls.supports_variates = cls.embed_variates is not BackboneSpec.embed_variates

    def __init__(self, backbone: nn.Module, config: MSFTConfig):
        self.backbone = backbone
        self.config = config

    # -- where things are ---------------------------------------------------------------------
    @abc.abstractmethod
    def d_model(self) -> int:
        """Width of the tokens the layers read and write."""

    @abc.abstractmethod
    def patch_size(self) -> int:
        """Time steps per token; the context must hold at least ``max(scales) * patch_size`` steps."""

    @abc.abstractmethod
    def layers(self) -> list[nn.Module]:
        """The stacked layers; cross-scale aggregation runs after each, checkpointing wraps each."""

    @abc.abstractmethod
    def lora_targets(self) -> tuple[str, ...]:
        """The attention q/k/v projections (exact names, dotted suffixes or full-name regexes) that
        get LoRA: msft's per-scale pairs and the runner's peft LoRA / AdaLoRA alike."""

    def lora_modules(self, targets: tuple[str, ...] | None = None) -> list[str]:
        """Module names ``targets`` (default: `lora_targets`) select in the backbone."""
        return match_modules(self.backbone, targets or self.lora_targets())

    def build_heads(self, num_scales: int) -> nn.Module | None:
        """msft-owned per-scale heads (trainable), or None when the backbone's own head is used."""
        return None

    def check_context(self, context_length: int) -> None:
        """Raise ValueError if the backbone cannot take this many context steps (default: any)."""
        return None

    def token_valid(self, tokens: ScaleTokens, observed: Tensor) -> Tensor:
        """``(series, tokens)``: False at padding tokens (what cross-scale aggregation and the
        features leave out). The default: prefix and horizon tokens are valid; the context tokens
        are `patch_size` non-overlapping patches right-aligned at the forecast origin (the layout
        the aggregation assumes), valid when one of their steps in ``observed`` ``(series, time)``
        is. A spec whose tokens are laid out otherwise overrides it."""
        prefix, context, horizon = tokens.layout
        if prefix + context + horizon != tokens.hidden.shape[1]:
            raise ValueError(
                f"the {self.name} spec's layout {tokens.layout} does not add up to its "
                f"{tokens.hidden.shape[1]} tokens: expected [prefix | context | horizon]"
            )
        patch = self.patch_size()
        pad = context * patch - observed.shape[1]  # steps before the series (negative: steps no token covers)
        seen = nn.functional.pad(observed, (max(pad, 0), 0))[:, max(-pad, 0) :]  # (series, context * patch)
        context_valid = rearrange(seen, "n (t p) -> n t p", p=patch).any(-1)  # (series, context)
        ones = observed.new_ones(observed.shape[0], prefix)
        return torch.cat([ones, context_valid, observed.new_ones(observed.shape[0], horizon)], dim=1)

    # -- forward pieces -------------------------------------------------------------------------
    @abc.abstractmethod
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        """Tokens of one scale: ``context``/``observed`` ``(series, time)`` -> ``hidden``
        ``(series, tokens, d_model)`` for a forecast ``horizon`` steps ahead (at this scale)."""

    def embed_variates(self, group: VariateGroup, horizon: int, scale_idx: int) -> ScaleTokens:
        """Tokens of one scale for variates that attend to each other (``mode="M"``, covariates):
        ``hidden`` ``(groups, variates * tokens, d_model)`` with ``variates`` / ``targets`` set (see
        `ScaleTokens`), and a `head` that forecasts the target variates only, ``(groups * targets,
        horizon)``. Past-only covariates get horizon tokens too (so every variate has the same
        layout), which nothing else attends to. Not implemented (the default): the backbone is
        channel-independent and takes no covariates."""
        raise ValueError(
            f"the {self.name} backbone is channel-independent: it takes no covariates and no mode='M' "
            "(expected mode='S' without covariates)"
        )

    def add_prefix(self, tokens: ScaleTokens, prefix: Tensor) -> ScaleTokens:
        """``tokens`` with ``prefix`` ``(series, P, d_model)`` prepended: ``num_prefix`` grows by P and
        ``aux`` (masks, ids) is extended so the prefix is attended to like the scale's own tokens.
        Implementing it makes the spec `supports_prefix`."""
        raise ValueError(f"the {self.name} backbone does not support prompt_tokens (its spec has no add_prefix)")

    @abc.abstractmethod
    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: Any) -> Tensor:
        """One layer: ``hidden`` ``(series, tokens, d_model)`` -> the same shape. ``aux`` is one
        scale's (`ScaleTokens.aux`) or the concatenated scales' (`join`, `join_blocks`). Prefer
        calling the layer module itself (``layer(...)``) so that module hooks see it; the core runs
        this under the scale context and, when asked, under gradient checkpointing."""

    @abc.abstractmethod
    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> Any:
        """``aux`` for all scales concatenated along the token axis; with ``block_diagonal`` the
        masks keep each token inside its own scale (the dense reference of intra-scale attention;
        `msft.ops.BlockLayout` gives the scale ids and the mask)."""

    def join_blocks(self, tokens: list[ScaleTokens]) -> Any:
        """Optional fast path of intra-scale attention: ``aux`` for all scales concatenated along the
        token axis, for a `run_layer` that keeps attention inside each scale's block itself (cost
        sum n_s^2) while running the token-wise parts (projections, MLP) once over all tokens.
        Not implemented (the default): msft runs each scale's block through the layer separately."""
        return None

    @abc.abstractmethod
    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> Forecast:
        """The scale's forecast of ``horizon`` steps at its own resolution from the last layer's
        ``hidden`` ``(series, tokens, d_model)``; ``heads`` is what `build_heads` returned."""

    # -- loading (the one place that knows how this family is built) ---------------------------
    @classmethod
    def claims(cls, source: str) -> bool:
        """Whether ``source`` (a hub id or a local checkpoint directory) is a backbone of this family,
        so that `load_backbone` can find the family from the source alone. Default: never."""
        return False

    @classmethod
    def load(cls, source: str | None = None, **options: Any) -> nn.Module:
        """The backbone: pretrained from ``source`` (a hub id or a local directory), or built from
        ``options`` (e.g. a published geometry with random weights) when ``source`` is None. The
        runner's backbone configs, ``msft.finetune("...")`` and ``msft.from_pretrained`` all call it
        through `load_backbone`. A family that takes a forecast length at construction reads the
        generic ``horizon`` option."""
        raise NotImplementedError(f"the {cls.name} backbone spec does not implement load()")

    @classmethod
    def source_wrap_options(cls, source: str, *, freq: str | None = None) -> dict[str, Any]:
        """`msft.wrap` options a backbone loaded from ``source`` needs besides the method's own (e.g.
        MOIRAI's patch size for the data's frequency ``freq``). Default: none."""
        return {}

    # -- for tests and smoke runs ---------------------------------------------------------------
    @classmethod
    def tiny(cls) -> TinyBackbone:
        """A tiny offline instance (random weights, no download) that the contract suite runs; every
        registered spec provides one."""
        raise NotImplementedError(f"the {cls.name} backbone spec provides no tiny() builder")

    def own_parameters(self) -> list[str]:
        """Names of the backbone's own parameters that msft's forward uses, leaving out those of msft's
        injected layers and of `unused_modules`."""
        injected = injected_parameter_names(self.backbone)
        unused = tuple(f"{m}." for m in self.unused_modules)
        return [n for n, _ in self.backbone.named_parameters() if n not in injected and not n.startswith(unused)]

    def trainable_parameters(self, pattern: str) -> list[str]:
        """Names (in ``backbone.named_parameters()``) of the backbone parameters that train besides
        msft's own parts under ``pattern``: "none" nothing, "all" every one; a spec may add named
        patterns of its own (MOIRAI: "freeze_ffn", the MSFT authors' recipe)."""
        if pattern == "none":
            return []
        if pattern == "all":
            return self.own_parameters()
        raise ValueError(f"backbone_trainable={pattern!r}: the {self.name} backbone supports 'none' and 'all'")


def register_backbone(spec: type[BackboneSpec]) -> type[BackboneSpec]:
    """Class decorator: make ``spec`` available to `msft.wrap`."""
    for attr in ("name", "module_types", "input_projection"):
        if not hasattr(spec, attr):
            raise TypeError(f"{spec.__name__} must define the class attribute {attr!r}")
    if getattr(spec, "__abstractmethods__", None):
        missing = sorted(spec.__abstractmethods__)
        raise TypeError(f"{spec.__name__} must implement {missing} (see msft.registry.BackboneSpec)")
    known = _REGISTRY.get(spec.name)
    if known is not None and _qualname(known) != _qualname(spec):  # the same class again: a module reload
        raise ValueError(
            f"backbone name {spec.name!r} is already registered by {_qualname(known)}: give "
            f"{_qualname(spec)} another name"
        )
    for other in _REGISTRY.values():
        shared = set(other.module_types) & set(spec.module_types)
        if other.name != spec.name and shared:
            raise ValueError(
                f"{_qualname(spec)} claims {sorted(shared)}, which the {other.name!r} spec already handles: "
                "a module type has one spec (register a spec for a subclass to specialise it)"
            )
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


def family_of(source: str | PathLike) -> type[BackboneSpec]:
    """The spec of the one registered family that `BackboneSpec.claims` ``source``; ValueError
    naming the families when none or several do."""
    source = str(source)
    specs = registered_backbones()
    claiming = [spec for spec in specs.values() if spec.claims(source)]
    if len(claiming) == 1:
        return claiming[0]
    if not claiming:
        raise ValueError(
            f"backbone source {source!r}: no registered family ({', '.join(sorted(specs))}) recognises it; "
            "expected a hub id such as 'Salesforce/moirai-1.1-R-small' or 'AutonLab/MOMENT-1-small', or a "
            "local checkpoint directory of one of these families"
        )
    raise ValueError(f"backbone source {source!r} is claimed by several families: {[s.name for s in claiming]}")


def load_backbone(source: str | PathLike | None = None, *, family: str | None = None, **options: Any) -> nn.Module:
    """A backbone from the family's own `BackboneSpec.load`: ``family`` by name, or, without it, the
    family that claims ``source``. What the runner's backbone configs instantiate
    (``_target_: msft.registry.load_backbone``)."""
    if family is None:
        if source is None:
            raise ValueError("load_backbone: give a source (hub id or directory) or a family name")
        spec = family_of(source)
    else:
        specs = registered_backbones()
        if family not in specs:
            raise ValueError(f"family={family!r}: expected one of the registered backbones {sorted(specs)}")
        spec = specs[family]
    return spec.load(None if source is None else str(source), **options)


def build_spec(backbone: nn.Module, config: MSFTConfig) -> BackboneSpec:
    """The spec instance for ``backbone`` under ``config`` (what `msft.wrap` builds first), e.g. to
    ask it for `BackboneSpec.lora_modules` before wrapping."""
    return spec_for(backbone)(backbone, config)


def _match(backbone: nn.Module) -> type[BackboneSpec] | None:
    """The spec of the most specific class along ``backbone``'s MRO that some spec claims."""
    for t in type(backbone).__mro__:
        name = _qualname(t)
        for spec in _REGISTRY.values():
            if name in spec.module_types:
                return spec
    return None


def _qualname(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


_entry_points_state = "unloaded"  # then "loading", then "loaded"
_entry_points_lock = threading.RLock()


def _load_entry_points() -> None:
    """Import every ``msft.backbones`` entry point once. Thread-safe: a thread that comes while
    another loads waits for the whole registry (the evidence driver asks from several threads), and a
    backbone module that asks for the registry while it is being imported gets what is there so far."""
    global _entry_points_state
    if _entry_points_state == "loaded":
        return
    with _entry_points_lock:
        if _entry_points_state != "unloaded":  # loaded meanwhile, or this very thread is loading
            return
        _entry_points_state = "loading"
        try:
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    ep.load()
                except Exception as err:  # a broken optional backbone must not hide the others
                    logger.warning("could not load msft backbone %r (%s): %s", ep.name, ep.value, err)
        finally:
            _entry_points_state = "loaded"
