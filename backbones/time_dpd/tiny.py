"""Tiny random-weight decoders and a download-free tokenizer: Time-DPD for tests and smoke runs.

Nothing here is fetched: the LLM is built from a transformers config with random weights and the
tokenizer is a word-level one over the prompt's own words, single digits and punctuation.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from msft_backbones.time_dpd.model import DEFAULT_SOFT_PROMPT, TimeDPD, TimeDPDConfig
from msft_backbones.time_dpd.prompt import REFERENCE_TEMPLATE, TEMPLATE

LLM_KINDS = ("qwen2", "llama", "gpt2")


def tiny_tokenizer(bos: bool = False) -> Any:
    """Word-level tokenizer covering every word the prompts use; with ``bos``, it also defines a
    ``<s>`` token that ``add_special_tokens=True`` puts in front of every text (as Llama's and
    DeepSeek-R1-Distill-Qwen's tokenizers do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    text = TEMPLATE + " " + REFERENCE_TEMPLATE + " " + DEFAULT_SOFT_PROMPT + " a univariate time series upward downward"
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)) | set("0123456789.-,:;[]"))
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    if bos:
        vocab["<s>"] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    if not bos:
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[UNK]")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[UNK]", bos_token="<s>")


def tiny_llm(
    kind: str = "qwen2",
    vocab_size: int | None = None,
    hidden: int = 32,
    layers: int = 2,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> nn.Module:
    """A random-weight base decoder (no LM head) of family ``kind``."""
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    if kind not in LLM_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {LLM_KINDS}")
    vocab_size = vocab_size or len(tiny_tokenizer())
    torch.manual_seed(seed)
    if kind == "gpt2":
        llm = GPT2Model(
            GPT2Config(
                vocab_size=vocab_size,
                n_embd=hidden,
                n_layer=layers,
                n_head=4,
                n_positions=256,
                bos_token_id=0,
                eos_token_id=0,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
            )
        )
    else:
        config_cls, model_cls = (Qwen2Config, Qwen2Model) if kind == "qwen2" else (LlamaConfig, LlamaModel)
        llm = model_cls(
            config_cls(
                vocab_size=vocab_size,
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=2 * hidden,
            )
        )
    return llm.to(dtype)


def tiny_time_dpd(kind: str = "qwen2", hidden: int = 32, layers: int = 2, seed: int = 1, **config: Any) -> TimeDPD:
    """`TimeDPD` on a tiny random decoder; ``config`` are `TimeDPDConfig` fields (llm_dtype float32)."""
    cfg = TimeDPDConfig(**{"llm_dtype": "float32", **config})
    llm = tiny_llm(kind, hidden=hidden, layers=layers, dtype=getattr(torch, cfg.llm_dtype))
    torch.manual_seed(seed)
    return TimeDPD(cfg, llm=llm, tokenizer=tiny_tokenizer())
