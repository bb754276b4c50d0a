"""Time-DPD: a frozen decoder LLM reprogrammed for forecasting (docs/design.md §5, docs/time_dpd.md).

For each univariate series (variates are independent):

    RevIN -> patches (16, stride 8, replication pad) -> patch embedding (Time-LLM's circular Conv1d
          over neighbouring patches) -> reprogramming: cross-attention of patches onto text
          prototypes W·E -> LLM width
    [BOS | soft prompt | data prompt | patch tokens] -> frozen LLM (first N layers) -> final norm
          -> first `head_channels` channels of the patch tokens -> flatten head -> RevIN inverse

Trainable: RevIN affine, patch embedding, prototype map W, reprogramming, soft prompt, head (fp32).
Frozen: the LLM (its own dtype, bf16 by default); it gets no gradients and no optimiser state.

The data prompt is per series, so its length varies across a batch: the prompts are padded on
their left (between the soft prompt and the prompt text) and the pads are masked as keys and
skipped by the position ids, so a series' forecast does not depend on the other series in its batch.
The BOS token is there when the tokenizer adds one (``add_special_tokens=True``), as the LLM was
trained to see it at the start of every sequence.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from msft.losses import masked_mse
from msft.ops import masked_mean_var
from msft_backbones.time_dpd import llm as llm_lib
from msft_backbones.time_dpd.prompt import PROMPT_MODES, format_prompt, prompt_statistics, reference_prompts

DEFAULT_LLM = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
_IDS_CACHE_SIZE = 65536  # prompt texts whose token ids are kept (a few MB)
DEFAULT_SOFT_PROMPT = (
    "You are an expert in time series analysis. Think step by step about the trend, the seasonality "
    "and the recent level of the series, then forecast its future values."
)


PATCH_EMBEDDINGS = ("conv", "linear")
PROMPT_SHARING = ("shared", "per_scale")


@dataclass
class TimeDPDConfig:
    """Options of `TimeDPD`; a bad value raises ValueError naming the field.

    llm: hub name or local directory of the decoder (loaded with AutoModel / AutoTokenizer).
    llm_layers: keep only the first N decoder layers (None: all).
    llm_dtype: "bfloat16", "float16" or "float32" for the frozen LLM; trainable parts are fp32.
    context_length / horizon: input and output lengths (the flatten head depends on both).
    d_model: patch embedding width; num_heads / d_keys: the reprogramming attention.
    num_prototypes: text prototypes V' (a learned linear map of the V vocabulary embeddings).
    head_channels: how many LLM channels of each patch token the flatten head reads (Time-LLM's d_ff).
    description: the dataset description in the prompt; soft_prompt: the text the soft prompt
    tokens are initialised from; top_k_lags: lags named in the prompt ("msft" mode).
    prompt: "msft" (rounded, robust statistics) or "reference" (Time-LLM's prompt exactly); see `prompt`.
    patch_embedding: "conv" (Time-LLM's circular Conv1d, kernel 3 over neighbouring patches, no bias)
    or "linear" (one Linear per patch).
    prompt_sharing: under msft only (the model alone has one scale): "shared" (one prompt per series,
    built from the finest scale, that every scale's patch tokens attend to) or "per_scale" (each scale
    carries its own prompt, built from its pooled context); see `msft_backbones.time_dpd.spec`.
    revin_eps: variance epsilon of RevIN; its square guards the division by the affine weight.
    """

    llm: str = DEFAULT_LLM
    llm_layers: int | None = None
    llm_dtype: str = "bfloat16"
    context_length: int = 512
    horizon: int = 96
    patch_len: int = 16
    stride: int = 8
    d_model: int = 32
    num_heads: int = 8
    d_keys: int = 128
    num_prototypes: int = 1000
    head_channels: int = 128
    dropout: float = 0.1
    description: str = "a univariate time series."
    soft_prompt: str = DEFAULT_SOFT_PROMPT
    top_k_lags: int = 5
    revin_eps: float = 1e-5
    prompt: str = "msft"
    patch_embedding: str = "conv"
    prompt_sharing: str = "shared"

    def __post_init__(self) -> None:
        for name in (
            "context_length",
            "horizon",
            "patch_len",
            "stride",
            "d_model",
            "num_heads",
            "d_keys",
            "num_prototypes",
            "head_channels",
            "top_k_lags",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if self.llm_layers is not None and (not isinstance(self.llm_layers, int) or self.llm_layers < 1):
            raise ValueError(f"llm_layers={self.llm_layers!r}: expected None or a positive integer")
        if self.llm_dtype not in llm_lib.DTYPES:
            raise ValueError(f"llm_dtype={self.llm_dtype!r}: expected one of {sorted(llm_lib.DTYPES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r}: expected a number in [0, 1)")
        if self.stride > self.patch_len:
            raise ValueError(f"stride={self.stride}: expected at most patch_len={self.patch_len}")
        if self.context_length + self.stride < self.patch_len:
            raise ValueError(
                f"context_length={self.context_length}: expected at least patch_len - stride = "
                f"{self.patch_len - self.stride}"
            )
        if self.prompt not in PROMPT_MODES:
            raise ValueError(f"prompt={self.prompt!r}: expected one of {PROMPT_MODES}")
        if self.patch_embedding not in PATCH_EMBEDDINGS:
            raise ValueError(f"patch_embedding={self.patch_embedding!r}: expected one of {PATCH_EMBEDDINGS}")
        if self.prompt_sharing not in PROMPT_SHARING:
            raise ValueError(f"prompt_sharing={self.prompt_sharing!r}: expected one of {PROMPT_SHARING}")
        if not self.soft_prompt.strip():
            raise ValueError("soft_prompt='': expected a text to initialise the soft prompt tokens from")

    def num_patches(self, length: int | None = None) -> int:
        """Patches of a ``length``-step series (replication pad of ``stride`` on the right)."""
        length = self.context_length if length is None else length
        return (length + self.stride - self.patch_len) // self.stride + 1


class RevIN(nn.Module):
    """Per-series instance normalisation with a learnable affine, exactly inverted on the output.

    The affine (gamma, beta) is one scalar pair shared by all series: variates are independent
    series here, so any number of variates works and msft's channel splitting needs no variate ids.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def statistics(self, x: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        """(series, time) -> mean and std over observed points, each (series, 1)."""
        loc, var = masked_mean_var(x, observed)
        return loc, (var + self.eps).sqrt()

    def standardise(self, x: Tensor, observed: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """(x - loc) / scale, with unobserved points at 0 (the mean)."""
        return torch.where(observed, (x - loc) / scale, torch.zeros_like(x))

    def normalise(self, standardised: Tensor) -> Tensor:
        return standardised * self.gamma + self.beta

    def denormalise(self, y: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """The inverse; ``gamma + eps**2`` as in Time-LLM's RevIN, so gamma = 0 stays finite."""
        return (y - self.beta) / (self.gamma + self.eps * self.eps) * scale + loc


class Reprogramming(nn.Module):
    """Multi-head cross-attention: patch embeddings (queries) onto text prototypes (keys, values)."""

    def __init__(self, d_model: int, num_heads: int, d_keys: int, d_llm: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.query_projection = nn.Linear(d_model, d_keys * num_heads)
        self.key_projection = nn.Linear(d_llm, d_keys * num_heads)
        self.value_projection = nn.Linear(d_llm, d_keys * num_heads)
        self.out_projection = nn.Linear(d_keys * num_heads, d_llm)
        self.dropout = nn.Dropout(dropout)

    def keys_values(self, prototypes: Tensor) -> tuple[Tensor, Tensor]:
        """prototypes (V', d_llm) -> keys and values ``(heads, V', d_keys)`` each."""
        k = rearrange(self.key_projection(prototypes), "v (h e) -> h v e", h=self.num_heads)
        v = rearrange(self.value_projection(prototypes), "v (h e) -> h v e", h=self.num_heads)
        return k, v

    def forward(
        self, patches: Tensor, prototypes: Tensor | None = None, keys_values: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """patches (series, patches, d_model) onto the prototypes (V', d_llm), or onto their
        precomputed ``keys_values`` -> (series, patches, d_llm)."""
        q = rearrange(self.query_projection(patches), "n p (h e) -> n h p e", h=self.num_heads)
        k, v = self.keys_values(prototypes) if keys_values is None else keys_values
        scores = torch.einsum("nhpe,hve->nhpv", q, k) / math.sqrt(q.shape[-1])
        attn = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.einsum("nhpv,hve->nphe", attn, v)
        return self.out_projection(rearrange(out, "n p h e -> n p (h e)"))


class ConvPatchEmbedding(nn.Module):
    """Time-LLM's patch embedding: a Conv1d from ``patch_len`` to ``d_model`` channels along the patch
    axis, kernel 3 with circular padding (each patch sees its two neighbours, the first and last
    patches each other), no bias, Kaiming-normal initialised (fan in, leaky ReLU)."""

    def __init__(self, patch_len: int, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(patch_len, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, patches: Tensor) -> Tensor:
        """(series, patches, patch_len) -> (series, patches, d_model)."""
        return self.conv(patches.transpose(1, 2)).transpose(1, 2)


class FlattenHead(nn.Module):
    """(series, patches, channels) -> (series, horizon)."""

    def __init__(self, num_patches: int, channels: int, horizon: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(num_patches * channels, horizon)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.linear(rearrange(x, "n p c -> n (p c)")))


@dataclass
class TimeDPDAux:
    """What a decoder layer needs for a token sequence and, for one scale's tokens, what its head needs.

    One scale's tokens (`TimeDPD.tokenize`) carry all fields. msft's joined scales (the spec's
    ``join``) carry the layer inputs, validity and positions only. Patch tokens that attend to another
    sequence's prompt (`TimeDPD.tokenize_patches`: msft's shared prompt) have ``layer=None``: they
    can only run joined with that prompt.
    """

    layer: llm_lib.LayerInputs | None
    valid: Tensor  # (series, tokens) bool: False at prompt padding
    positions: Tensor  # (series, tokens) long, from 0 at the first real token of the sequence
    num_prefix: int = 0
    loc: Tensor | None = None  # (series, 1)
    scale: Tensor | None = None  # (series, 1)


class TimeDPD(nn.Module):
    """Time-DPD forecaster: ``forward(x (batch, L, variate)) -> (batch, H, variate)``.

    ``llm`` / ``tokenizer`` may be given (an AutoModel base decoder and its tokenizer); otherwise
    they are loaded from ``config.llm`` (hub name or local directory) in ``config.llm_dtype``.
    """

    def __init__(
        self, config: TimeDPDConfig | None = None, llm: nn.Module | None = None, tokenizer: Any = None, **overrides: Any
    ):
        super().__init__()
        self.config = cfg = config or TimeDPDConfig(**overrides)
        if (llm is None) != (tokenizer is None):
            raise ValueError("llm and tokenizer: expected both or neither (neither loads config.llm)")
        if llm is None:
            llm, tokenizer = llm_lib.load_llm(cfg.llm, cfg.llm_layers, llm_lib.DTYPES[cfg.llm_dtype])
        elif cfg.llm_layers is not None:
            llm_lib.truncate_layers(llm, cfg.llm_layers)
        self.llm = llm.requires_grad_(False)
        self.tokenizer = tokenizer
        self._ids_cache: OrderedDict[str, list[int]] = OrderedDict()  # prompt text -> token ids
        self._kv_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None  # see reprogramming_keys_values
        embeddings = llm.get_input_embeddings().weight  # (V, d_llm), frozen
        vocab, d_llm = embeddings.shape

        self.revin = RevIN(cfg.revin_eps)
        if cfg.patch_embedding == "conv":
            self.patch_embedding = ConvPatchEmbedding(cfg.patch_len, cfg.d_model)
        else:
            self.patch_embedding = nn.Linear(cfg.patch_len, cfg.d_model)
        self.patch_dropout = nn.Dropout(cfg.dropout)
        self.prototype_map = nn.Linear(vocab, cfg.num_prototypes)  # E' = W E over the vocabulary axis
        self.reprogramming = Reprogramming(cfg.d_model, cfg.num_heads, cfg.d_keys, d_llm, cfg.dropout)
        soft_ids = self._token_ids([cfg.soft_prompt])[0]
        #: what the tokenizer puts in front of a text (the BOS token, for most decoders): the sequence starts with it.
        self.leading_ids = _leading_special_ids(tokenizer, cfg.soft_prompt)
        with torch.no_grad():
            soft = llm.get_input_embeddings()(torch.tensor(soft_ids, device=embeddings.device))
        self.soft_prompt = nn.Parameter(soft.detach().float().clone())  # (soft tokens, d_llm)
        if cfg.head_channels > d_llm:
            raise ValueError(f"head_channels={cfg.head_channels}: expected at most the LLM width {d_llm}")
        self.head = FlattenHead(cfg.num_patches(), cfg.head_channels, cfg.horizon, cfg.dropout)

    @property
    def d_llm(self) -> int:
        return self.soft_prompt.shape[1]

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -- the pieces shared by `forward` and the msft spec ------------------------------------------
    def tokenize(
        self, context: Tensor, observed: Tensor, horizon: int, keys_values: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, TimeDPDAux]:
        """(series, time) -> fp32 tokens ``[soft prompt | padded data prompt | patches]``
        ``(series, tokens, d_llm)``; ``horizon`` is the one named in the prompt; ``keys_values``:
        the reprogramming's (`reprogramming_keys_values`), when the caller shares them across calls."""
        patch_tokens, standardised, observed, loc, scale = self._patch_tokens(context, observed, keys_values)
        prompts = self.prompts(standardised, observed, horizon)
        prefix, prefix_valid = self._prefix(prompts)  # (series, prefix, d_llm), (series, prefix)
        hidden = torch.cat([prefix, patch_tokens], dim=1)  # (series, tokens, d_llm)
        valid = torch.cat([prefix_valid, prefix_valid.new_ones(patch_tokens.shape[:2])], dim=1)
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)  # (series, tokens)
        hidden = self._add_positions(hidden, positions)
        layer = llm_lib.layer_inputs(self.llm, valid, positions)
        return hidden, TimeDPDAux(layer, valid, positions, prefix.shape[1], loc, scale)

    def tokenize_patches(
        self,
        context: Tensor,
        observed: Tensor,
        first_position: Tensor,
        keys_values: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, TimeDPDAux]:
        """(series, time) -> fp32 patch tokens ``(series, patches, d_llm)`` without a prompt of their
        own, positioned right after a prompt of ``first_position`` ``(series,)`` real tokens: the
        positions a prompt's patches have in `tokenize` (msft's scales sharing one prompt). Their aux has
        no layer inputs: they run joined with that prompt."""
        patch_tokens, _, _, loc, scale = self._patch_tokens(context, observed, keys_values)
        series, patches = patch_tokens.shape[:2]
        if first_position.shape != (series,):
            raise ValueError(f"first_position has shape {tuple(first_position.shape)}: expected ({series},)")
        positions = first_position[:, None] + torch.arange(patches, device=first_position.device)  # (series, patches)
        hidden = self._add_positions(patch_tokens, positions)
        valid = torch.ones(series, patches, dtype=torch.bool, device=hidden.device)
        return hidden, TimeDPDAux(None, valid, positions, 0, loc, scale)

    def _patch_tokens(
        self, context: Tensor, observed: Tensor, keys_values: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """RevIN, patching and reprogramming of ``context`` ``(series, time)``: the patch tokens
        ``(series, patches, d_llm)``, the standardised series and its observed mask ``(series, time)``,
        and the RevIN statistics ``loc``, ``scale`` ``(series, 1)``."""
        cfg = self.config
        observed = observed & ~torch.isnan(context)
        context = context.float()
        loc, scale = self.revin.statistics(context, observed)
        standardised = self.revin.standardise(context, observed, loc, scale)  # (series, time)
        patches = nn.functional.pad(self.revin.normalise(standardised)[:, None], (0, cfg.stride), mode="replicate")
        patches = patches[:, 0].unfold(-1, cfg.patch_len, cfg.stride)  # (series, patches, patch_len)
        keys_values = self.reprogramming_keys_values() if keys_values is None else keys_values
        patch_tokens = self.reprogramming(self.patch_dropout(self.patch_embedding(patches)), keys_values=keys_values)
        return patch_tokens, standardised, observed, loc, scale

    def _add_positions(self, hidden: Tensor, positions: Tensor) -> Tensor:
        """``hidden`` with the LLM's learned positions added (GPT-2; rotary LLMs: unchanged)."""
        if int(positions.max()) >= llm_lib.max_positions(self.llm):
            raise ValueError(
                f"the prompt and patches need {int(positions.max()) + 1} positions: expected at most "
                f"{llm_lib.max_positions(self.llm)} for this LLM (shorten the description or the context)"
            )
        return llm_lib.add_learned_positions(self.llm, hidden, positions)

    def prompts(self, standardised: Tensor, observed: Tensor, horizon: int) -> list[str]:
        """The data prompt of each standardised series ``(series, time)`` (``config.prompt`` mode)."""
        cfg = self.config
        if cfg.prompt == "reference":
            return reference_prompts(standardised, observed, cfg.description, standardised.shape[1], horizon)
        stats = prompt_statistics(standardised, observed, cfg.top_k_lags)
        return [format_prompt(s, cfg.description, standardised.shape[1], horizon) for s in stats]

    def text_prototypes(self) -> Tensor:
        """(V', d_llm) fp32: the learned map applied in the LLM's dtype (no fp32 copy of E)."""
        embeddings = self.llm.get_input_embeddings().weight  # (V, d_llm)
        w, b = self.prototype_map.weight, self.prototype_map.bias
        return (w.to(embeddings.dtype) @ embeddings).float() + b[:, None]

    def reprogramming_keys_values(self) -> tuple[Tensor, Tensor]:
        """The reprogramming attention's keys and values over the text prototypes, ``(heads, V', d_keys)``.

        The prototypes are a V' x V map over the whole vocabulary embedding (~545 GFLOP at the 7B
        width), constant while their parameters are. So when no gradient flows into them (inference,
        or a frozen backbone as under msft) they are computed once and reused until one of those
        parameters changes (its tensor version, bumped by optimiser steps and in-place loads) or moves.
        """
        embeddings = self.llm.get_input_embeddings().weight
        params = (
            self.prototype_map.weight,
            self.prototype_map.bias,
            embeddings,
            *self.reprogramming.key_projection.parameters(),
            *self.reprogramming.value_projection.parameters(),
        )
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self.reprogramming.keys_values(self.text_prototypes())
        key = (torch.is_inference_mode_enabled(), *((p.data_ptr(), p._version, p.dtype, p.device) for p in params))
        if self._kv_cache is None or self._kv_cache[0] != key:
            with torch.no_grad():
                self._kv_cache = (key, self.reprogramming.keys_values(self.text_prototypes()))
        return self._kv_cache[1]

    def run_layer(self, layer: nn.Module, hidden: Tensor, inputs: llm_lib.LayerInputs) -> Tensor:
        return llm_lib.run_decoder_layer(self.llm, layer, hidden, inputs)

    def decode(self, hidden: Tensor, aux: TimeDPDAux, head: nn.Module) -> Tensor:
        """Patch tokens of the last layer -> (series, head horizon) in the input's units."""
        norm = llm_lib.final_norm(self.llm)
        patch_hidden = hidden[:, aux.num_prefix :]  # (series, patches, d_llm)
        patch_hidden = norm(patch_hidden.to(llm_lib.llm_dtype(self.llm))).float()
        out = head(patch_hidden[..., : self.config.head_channels])  # (series, horizon)
        return self.revin.denormalise(out, aux.loc, aux.scale)

    # -- the forecaster ------------------------------------------------------------------------------
    def forecast_series(self, context: Tensor, observed: Tensor | None = None) -> Tensor:
        """(series, context_length) -> (series, horizon)."""
        if observed is None:
            observed = ~torch.isnan(context)
        hidden, aux = self.tokenize(context, observed, self.config.horizon)
        for layer in llm_lib.decoder_layers(self.llm):
            hidden = self.run_layer(layer, hidden, aux.layer)
        return self.decode(hidden, aux, self.head)

    def forward(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """(batch, context_length, variate) -> (batch, horizon, variate), variates independent."""
        self._check_input("x", x, self.config.context_length)
        v = x.shape[2]
        obs = None if observed is None else rearrange(observed.bool(), "b t v -> (b v) t")
        out = self.forecast_series(rearrange(x, "b t v -> (b v) t"), obs)
        return rearrange(out, "(b v) h -> b h v", v=v)

    def loss(self, x: Tensor, y: Tensor, observed: Tensor | None = None, y_observed: Tensor | None = None) -> Tensor:
        """MSE of ``forward(x)`` against ``y`` (batch, horizon, variate) over observed points."""
        self._check_input("y", y, self.config.horizon)
        if y.shape[0] != x.shape[0] or y.shape[2] != x.shape[2]:
            raise ValueError(f"y has shape {tuple(y.shape)}: expected batch and variates of x {tuple(x.shape)}")
        y_obs = ~torch.isnan(y) if y_observed is None else y_observed.bool() & ~torch.isnan(y)
        return masked_mse(self(x, observed), torch.nan_to_num(y), y_obs)

    # -- internals -----------------------------------------------------------------------------------
    def _check_input(self, name: str, x: Any, length: int) -> None:
        if not isinstance(x, Tensor) or x.dim() != 3 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} has shape {shape}: expected a float tensor (batch, time, variate)")
        if x.shape[1] != length:
            raise ValueError(f"{name} has {x.shape[1]} time steps: expected {length}")

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts``: the new ones in one batched tokenizer call, the rest from a cache by
        content (the last `_IDS_CACHE_SIZE` texts)."""
        cache = self._ids_cache
        new = list(dict.fromkeys(t for t in texts if t not in cache))
        if new:
            ids = self.tokenizer(new, add_special_tokens=False)["input_ids"]
            if any(len(i) == 0 for i in ids):
                raise ValueError(f"the tokenizer gave no tokens for one of {new!r}")
            cache.update(zip(new, ids))
        out = [cache[t] for t in texts]
        for t in texts:
            cache.move_to_end(t)
        while len(cache) > _IDS_CACHE_SIZE:
            cache.popitem(last=False)
        return out

    def _prefix(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """``[BOS | soft prompt | left-padded prompt]`` fp32 ``(series, prefix, d_llm)`` and its validity
        (BOS: whatever the tokenizer puts in front of a text, nothing for tokenizers that add none)."""
        ids = self._token_ids(prompts)
        width = max(len(i) for i in ids)
        device = self.soft_prompt.device
        padded = torch.tensor([[0] * (width - len(i)) + i for i in ids], device=device)  # (series, width)
        text_valid = torch.tensor([[False] * (width - len(i)) + [True] * len(i) for i in ids], device=device)
        with torch.no_grad():
            text = self.llm.get_input_embeddings()(padded).float() * text_valid[..., None]
        soft = self.soft_prompt.expand(len(prompts), -1, -1)
        if self.leading_ids:
            with torch.no_grad():
                lead = self.llm.get_input_embeddings()(torch.tensor(self.leading_ids, device=device)).float()
            soft = torch.cat([lead.expand(len(prompts), -1, -1), soft], dim=1)  # (series, lead + soft, d_llm)
        prefix = torch.cat([soft, text], dim=1)
        valid = torch.cat([text_valid.new_ones(soft.shape[:2]), text_valid], dim=1)
        return prefix, valid


def _leading_special_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids the tokenizer adds in front of ``text`` with ``add_special_tokens=True`` (e.g. BOS)."""
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tokenizer(text, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    raise ValueError(f"the tokenizer's special tokens change the text's own tokens ({full} vs {plain})")
