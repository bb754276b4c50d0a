"""How msft sees Time-DPD.

The prompt prefix (BOS, soft prompt, data prompt) is long next to the patch tokens (~110 against 64
at context 512 with the default LLM), so how the scales get it decides what msft costs. Two ways,
``TimeDPDConfig.prompt_sharing``:

- ``"shared"`` (default): one prompt per series, built from the finest scale (scale 1's
  statistics, "previous L steps", "next H steps"), and every scale's patch tokens attend to it.
  Scale 1's tokens are ``[prompt | patches]`` exactly as in the backbone alone; a coarser scale's
  are its patches only (``num_prefix=0``), positioned right after the prompt as scale 1's patches
  are. The scales run joined, ``[prompt | patches_1 | patches_2 | ...]``, with a mask where each
  scale's tokens see the prompt and their own scale's earlier tokens (causal): in a causal decoder
  the prompt's tokens see only themselves, so their keys and values are those of the backbone's
  own sequence, computed once instead of once per scale. Per-scale LoRA: the prompt tokens belong
  to scale 1's segment and use scale 1's pair (a shared token can use only one; with scale 1's the
  prompt is what the single-scale model computes); cross-scale aggregation reads and updates the
  patch tokens only (the prompt is scale 1's prefix). The coarse scales get no statistics of their
  own: pooling keeps the level and the trend, and their patches follow the finest scale's text.
- ``"per_scale"``: each scale's sequence is ``[its own prompt | its patches]``, the prompt built
  from that scale's pooled context, so its length and text (statistics, "previous ceil(L/s)
  steps", "next ceil(H/s) steps") are per scale. Per block, each scale runs its own sequence through
  a decoder layer with the causal mask.

Joined (``attention_impl="dense"``; ``"blocked"`` with a shared prompt), the scales' tokens are
concatenated and the causal mask composed with the block mask (intra-scale attention), or left
causal across scales (the no-intra-scale ablation). With one scale both ways are the same sequence.

Adapters wrap the reprogramming output projection (``(series, patches, d_llm)``); per-scale LoRA
goes on ``q_proj/k_proj/v_proj`` for rotary decoders (Qwen2, Llama) and on GPT-2's fused ``c_attn``.
The heads are one flatten head per scale; scale 1's is a copy of the backbone's trained head, so
``wrap(model, scales=[1])`` at initialisation is the backbone.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from msft.ops import BlockLayout
from msft.registry import BackboneSpec, PointForecast, ScaleTokens, TinyBackbone, register_backbone
from msft_backbones.time_dpd import llm as llm_lib
from msft_backbones.time_dpd.model import FlattenHead, TimeDPD, TimeDPDAux

ROTARY_LORA_TARGETS = (r"llm\.layers\.\d+\.self_attn\.(q|k|v)_proj",)
GPT2_LORA_TARGETS = (r"llm\.h\.\d+\.attn\.c_attn",)


@register_backbone
class TimeDPDSpec(BackboneSpec):
    name = "time_dpd"
    module_types = (f"{TimeDPD.__module__}.TimeDPD",)
    input_projection = "reprogramming.out_projection"
    unused_modules = ("head",)  # msft's per-scale heads (scale 1's a copy of it) replace the backbone's

    @classmethod
    def load(
        cls, source: str | None = None, *, tiny_llm: str | None = None, seed: int = 1, **config: object
    ) -> nn.Module:
        """Time-DPD on the LLM ``source`` (hub id or directory; else ``config["llm"]``), or, with
        ``tiny_llm`` ("qwen2", "llama", "gpt2"), on a tiny random decoder built offline. ``config``:
        `TimeDPDConfig`'s fields (its ``horizon`` among them)."""
        from msft_backbones.time_dpd import TimeDPDConfig
        from msft_backbones.time_dpd.tiny import tiny_time_dpd

        if source is not None:
            config["llm"] = source
        if tiny_llm is not None:
            return tiny_time_dpd(tiny_llm, seed=seed, **config)
        torch.manual_seed(seed)
        return TimeDPD(TimeDPDConfig(**config))

    @classmethod
    def tiny(cls) -> TinyBackbone:
        """Time-DPD on a 2-layer, 32-wide random Qwen2 with the download-free tokenizer."""
        from msft_backbones.time_dpd.tiny import tiny_time_dpd

        with torch.random.fork_rng():
            backbone = tiny_time_dpd(
                "qwen2",
                context_length=64,
                horizon=12,
                d_model=8,
                num_heads=2,
                d_keys=8,
                num_prototypes=16,
                head_channels=16,
                dropout=0.0,
            )
        return TinyBackbone(backbone, context_length=64, horizon=12, forecast=backbone)

    def __init__(self, backbone: TimeDPD, config):
        super().__init__(backbone, config)
        cfg = backbone.config
        if config.horizon is not None and config.horizon != cfg.horizon:
            raise ValueError(f"horizon={config.horizon}: expected the Time-DPD model's horizon {cfg.horizon} (or None)")
        if config.context_lengths is not None:
            raise ValueError(
                f"context_lengths={config.context_lengths!r}: Time-DPD's per-scale heads and prompts are sized "
                "by its context_length, the same past for every scale; expected context_lengths=None"
            )
        for scale in config.scales:
            if math.ceil(cfg.context_length / scale) + cfg.stride < cfg.patch_len:
                raise ValueError(
                    f"scales={list(config.scales)}: scale {scale} leaves {math.ceil(cfg.context_length / scale)} "
                    f"context steps, fewer than one patch (patch_len - stride = {cfg.patch_len - cfg.stride})"
                )
        self._keys_values: tuple[Tensor, Tensor] | None = None  # the reprogramming's, see `embed`
        #: one prompt for every scale (see the module docstring); with one scale both ways are the same
        self.shared_prompt = cfg.prompt_sharing == "shared" and len(config.scales) > 1
        self._prompt_positions: Tensor | None = None  # (series,): real prompt tokens of scale 1, see `embed`

    # -- geometry -------------------------------------------------------------------------------
    def d_model(self) -> int:
        return self.backbone.d_llm

    def patch_size(self) -> int:
        return self.backbone.config.patch_len

    def layers(self) -> list[nn.Module]:
        return llm_lib.decoder_layers(self.backbone.llm)

    def lora_targets(self) -> tuple[str, ...]:
        if hasattr(self.backbone.llm, "h"):  # GPT-2: q, k, v are one fused Conv1D
            return GPT2_LORA_TARGETS
        return ROTARY_LORA_TARGETS

    def check_context(self, context_length: int) -> None:
        expected = self.backbone.config.context_length
        if context_length != expected:
            raise ValueError(
                f"past_target has {context_length} time steps: expected {expected} (Time-DPD's context_length)"
            )

    def build_heads(self, num_scales: int) -> nn.Module:
        cfg = self.backbone.config
        heads = [copy.deepcopy(self.backbone.head)]
        for scale in self.config.scales[1:num_scales]:
            patches = cfg.num_patches(math.ceil(cfg.context_length / scale))
            heads.append(FlattenHead(patches, cfg.head_channels, math.ceil(cfg.horizon / scale), cfg.dropout))
        return nn.ModuleList(heads).requires_grad_(True)

    # -- forward pieces ---------------------------------------------------------------------------
    def embed(self, context: Tensor, observed: Tensor, horizon: int, scale_idx: int) -> ScaleTokens:
        """Scale 1: ``[prompt | patches]``; a coarser scale: the same with its own prompt
        (``per_scale``), or its patches only, after scale 1's prompt (``shared``; the core embeds the
        scales in order within a forward, so scale 1's prompt is the one of the same series)."""
        model_horizon = math.ceil(self.backbone.config.horizon / self.config.scales[scale_idx])
        if horizon > model_horizon:
            raise ValueError(
                f"horizon={horizon * self.config.scales[scale_idx]}: expected at most the Time-DPD model's "
                f"horizon {self.backbone.config.horizon}"
            )
        if scale_idx == 0 or self._keys_values is None:  # once per forward, shared by every scale
            self._keys_values = self.backbone.reprogramming_keys_values()
        if scale_idx > 0 and self.shared_prompt:
            first = self._prompt_positions
            if first is None or first.shape[0] != context.shape[0]:
                raise ValueError(
                    f"scale_idx={scale_idx}: with prompt_sharing='shared' scale 0 of the same series must be "
                    "embedded first (its prompt is every scale's)"
                )
            hidden, aux = self.backbone.tokenize_patches(context, observed, first, self._keys_values)
        else:
            hidden, aux = self.backbone.tokenize(context, observed, model_horizon, self._keys_values)
            if scale_idx == 0:
                self._prompt_positions = aux.valid[:, : aux.num_prefix].sum(1)  # (series,)
        num_patches = hidden.shape[1] - aux.num_prefix
        return ScaleTokens(hidden, num_prefix=aux.num_prefix, num_context=num_patches, num_horizon=0, aux=aux)

    def token_valid(self, tokens: ScaleTokens, observed: Tensor) -> Tensor:
        """``(series, tokens)``: the prompt's left padding is invalid, and a patch token (patch_len
        steps every stride, replication-padded on the right) is valid when one of its steps is observed."""
        cfg = self.backbone.config
        seen = nn.functional.pad(observed[:, None].float(), (0, cfg.stride), mode="replicate")[:, 0]
        patch_valid = seen.unfold(-1, cfg.patch_len, cfg.stride).amax(-1) > 0  # (series, patches)
        return torch.cat([tokens.aux.valid[:, : tokens.num_prefix], patch_valid], dim=1)

    def run_layer(self, layer: nn.Module, hidden: Tensor, aux: TimeDPDAux) -> Tensor:
        """One decoder layer on fp32 ``hidden`` ``(series, tokens, d_llm)``."""
        if aux.layer is None:
            raise ValueError(
                "these patch tokens attend to scale 1's shared prompt (prompt_sharing='shared'): they run joined "
                "with it (join / join_blocks), not on their own"
            )
        return self.backbone.run_layer(layer, hidden, aux.layer)

    def join(self, tokens: list[ScaleTokens], block_diagonal: bool) -> TimeDPDAux:
        """The scales concatenated: causal, and with ``block_diagonal`` each token also inside its own
        scale, except that a shared prompt (scale 1's prefix) is seen by every scale."""
        valid = torch.cat([t.aux.valid for t in tokens], dim=1)  # (series, all tokens)
        positions = torch.cat([t.aux.positions for t in tokens], dim=1)
        block_ids = None
        if block_diagonal:
            block_ids = BlockLayout.of(tokens).scale_ids(valid.device)  # (tokens,)
            if self.shared_prompt:
                block_ids[: tokens[0].num_prefix] = llm_lib.SHARED_BLOCK
        layer = llm_lib.layer_inputs(self.backbone.llm, valid, positions, block_ids)
        return TimeDPDAux(layer, valid, positions, num_prefix=tokens[0].num_prefix)

    def join_blocks(self, tokens: list[ScaleTokens]) -> TimeDPDAux | None:
        """With a shared prompt, the scales run joined (`join`: prompt + every scale in one call, a
        token seeing the prompt and its own scale); with per-scale prompts, None: each scale's
        sequence runs through the layer on its own (cost sum n_s^2)."""
        return self.join(tokens, block_diagonal=True) if self.shared_prompt else None

    def head(
        self, hidden: Tensor, tokens: ScaleTokens, horizon: int, scale_idx: int, heads: nn.Module | None
    ) -> PointForecast:
        return PointForecast(self.backbone.decode(hidden, tokens.aux, heads[scale_idx])[:, :horizon])  # (series, H)
