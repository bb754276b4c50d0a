"""What `MSFTModel.forward_features` returns: the forecast and every scale's last hidden states, with
which tokens hold real data (distillation reads its teacher features from here)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ScaleFeatures:
    """One scale's last hidden states and which of its tokens hold real data (`MSFTModel.forward_features`).

    ``hidden`` is the output of the last layer (after cross-scale aggregation), what the head reads,
    before the backbone's final norm. ``valid`` is False at padding: context tokens whose steps hold no
    observed value (left padding to the patch size or to a fixed input length, leading missing
    values) and padded prompt tokens of backbones that pad prompts.
    """

    hidden: Tensor  # (series, tokens, d_model), series = batch * variate
    layout: tuple[int, int, int]  # tokens of (prefix, context, horizon), in that order
    valid: Tensor  # (series, tokens) bool

    def series_mask(self) -> Tensor:
        """``(series, tokens)`` bool: the valid context and horizon tokens (no prefix, no padding)."""
        mask = self.valid.clone()
        mask[:, : self.layout[0]] = False
        return mask

    def pooled(self) -> Tensor:
        """``(series, d_model)``: the mean of ``hidden`` over `series_mask`."""
        mask = self.series_mask().to(self.hidden.dtype)[..., None]  # (series, tokens, 1)
        return (self.hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


@dataclass
class Features:
    """What `MSFTModel.forward_features` returns: ``predict``'s forecast and every scale's features."""

    forecast: Tensor  # (batch, horizon, variate), as `MSFTModel.predict`
    scales: list[ScaleFeatures]  # finest scale first
