"""The frozen decoder LLM of Time-DPD: loading, truncation, and running one decoder layer.

Two families of Hugging Face decoders are supported through what the base model exposes, not
through its class name:

- rotary decoders (Qwen2, Llama, Mistral, ...): ``layers``, ``norm``, ``rotary_emb``; a layer is
  called as ``layer(hidden, attention_mask=, position_ids=, position_embeddings=(cos, sin))``;
- learned-position decoders (GPT-2): ``h``, ``ln_f``, ``wpe``; positions are added to the input
  embeddings once, and a block is called as ``block(hidden, attention_mask=)``.

Attention masks are additive float masks ``(series, 1, queries, keys)`` in the LLM's dtype (0 where
allowed, the dtype's minimum elsewhere), which both the "eager" and "sdpa" attention of transformers
accept. Every query may always attend to itself, so padding rows never become fully masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: DeepSeek-R1-Distill-Qwen-7B's config.json (a Qwen2 decoder): the default LLM of Time-DPD.
DEEPSEEK_R1_DISTILL_QWEN_7B: dict[str, Any] = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}


def default_llm_config():
    """A `transformers.Qwen2Config` with the default LLM's sizes (no download)."""
    from transformers import Qwen2Config

    values = {k: v for k, v in DEEPSEEK_R1_DISTILL_QWEN_7B.items() if k not in ("model_type", "rope_theta")}
    return Qwen2Config(**values, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def load_llm(name: str, num_layers: int | None, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    """Base decoder (no LM head) and tokenizer from the hub or a local directory.

    Truncation happens in the config, so the dropped layers' weights are never loaded.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(name)
    if num_layers is not None:
        _truncate_config(config, num_layers)
    llm = AutoModel.from_pretrained(name, config=config, dtype=dtype)
    return llm, AutoTokenizer.from_pretrained(name)


def truncate_layers(llm: nn.Module, num_layers: int) -> None:
    """Keep only the first ``num_layers`` decoder layers of an already built ``llm`` (in place)."""
    name = _layers_name(llm)
    layers = getattr(llm, name)
    if num_layers > len(layers):
        raise ValueError(f"llm_layers={num_layers}: the LLM has only {len(layers)} decoder layers")
    setattr(llm, name, nn.ModuleList(list(layers)[:num_layers]))
    _truncate_config(llm.config, num_layers)


def _truncate_config(config: Any, num_layers: int) -> None:
    total = config.num_hidden_layers
    if num_layers > total:
        raise ValueError(f"llm_layers={num_layers}: the LLM has only {total} decoder layers")
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:num_layers]


def _layers_name(llm: nn.Module) -> str:
    for name in ("layers", "h"):
        if isinstance(getattr(llm, name, None), nn.ModuleList):
            return name
    raise ValueError(
        f"{type(llm).__name__} has no decoder layer list 'layers' (Qwen2/Llama) or 'h' (GPT-2): "
        "expected a Hugging Face base decoder model such as AutoModel.from_pretrained(...) returns"
    )


def decoder_layers(llm: nn.Module) -> list[nn.Module]:
    return list(getattr(llm, _layers_name(llm)))


def final_norm(llm: nn.Module) -> nn.Module:
    for name in ("norm", "ln_f"):
        module = getattr(llm, name, None)
        if isinstance(module, nn.Module):
            return module
    raise ValueError(f"{type(llm).__name__} has no final norm 'norm' or 'ln_f'")


def llm_dtype(llm: nn.Module) -> torch.dtype:
    return llm.get_input_embeddings().weight.dtype


def max_positions(llm: nn.Module) -> int:
    wpe = getattr(llm, "wpe", None)
    if wpe is not None:
        return wpe.num_embeddings
    return int(getattr(llm.config, "max_position_embeddings", 1 << 30))


def add_learned_positions(llm: nn.Module, hidden: Tensor, positions: Tensor) -> Tensor:
    """GPT-2 style: input embeddings + ``wpe(positions)``; rotary models are left as they are."""
    wpe = getattr(llm, "wpe", None)
    if wpe is None:
        return hidden
    return hidden + wpe(positions).to(hidden.dtype)


@dataclass
class LayerInputs:
    """What every decoder layer call needs besides the hidden states."""

    mask: Tensor  # (series, 1, tokens, tokens) additive, in the LLM's dtype
    position_ids: Tensor  # (series, tokens)
    position_embeddings: tuple[Tensor, Tensor] | None  # rotary (cos, sin), each (series, tokens, head_dim)


#: the block id of keys every block may attend to (msft's prompt shared by all scales)
SHARED_BLOCK = -1


def layer_inputs(llm: nn.Module, valid: Tensor, positions: Tensor, block_ids: Tensor | None = None) -> LayerInputs:
    """Causal mask over ``valid`` keys (``(series, tokens)`` bool), optionally block-diagonal over
    ``block_ids`` ``(tokens,)`` (keys of block `SHARED_BLOCK` are seen by every block, causally),
    and the rotary embeddings of ``positions``."""
    dtype = llm_dtype(llm)
    tokens = valid.shape[1]
    index = torch.arange(tokens, device=valid.device)
    allowed = (index[None, :] <= index[:, None]) & valid[:, None, :]  # (series, q, k)
    if block_ids is not None:
        allowed = allowed & ((block_ids[:, None] == block_ids[None, :]) | (block_ids[None, :] == SHARED_BLOCK))
    allowed = allowed | torch.eye(tokens, dtype=torch.bool, device=valid.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=valid.device)
    mask = mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]  # (series, 1, q, k)
    rotary = getattr(llm, "rotary_emb", None)
    embeddings = None
    if rotary is not None:
        probe = torch.empty(0, dtype=dtype, device=valid.device)
        embeddings = rotary(probe, positions)
    return LayerInputs(mask, positions, embeddings)


def run_decoder_layer(llm: nn.Module, layer: nn.Module, hidden: Tensor, inputs: LayerInputs) -> Tensor:
    """One frozen decoder layer on fp32 ``hidden`` ``(series, tokens, d_llm)``; runs in the LLM's
    dtype and returns fp32, so everything trainable around it stays in fp32."""
    x = hidden.to(llm_dtype(llm))
    if inputs.position_embeddings is not None:
        out = layer(
            x,
            attention_mask=inputs.mask,
            position_ids=inputs.position_ids,
            position_embeddings=inputs.position_embeddings,
        )
    else:
        out = layer(x, attention_mask=inputs.mask)
    if isinstance(out, tuple):  # older transformers return (hidden, ...) tuples
        out = out[0]
    return out.to(hidden.dtype)
