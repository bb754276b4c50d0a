"""Sampling MOIRAI's mixture head: draws from the chosen component only (`sample_mixture`).

`masked_sample_mixture` is the same sampler in its plain form (boolean-mask gathers of parameters
expanded over the samples axis, 2-3x slower): the reference `sample_mixture` matches draw for draw
(tests/backbones/test_moirai_sampler.py) and the "before" rows of benchmarks/bench_inference.py."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, TransformedDistribution


@torch.no_grad()
def sample_mixture(distr_output: Any, params: Any, distr: Distribution, num_samples: int, width: int) -> Tensor:
    """``(num_samples, series, n_horizon, width)`` draws of the first ``width`` packed positions of
    uni2ts' mixture ``distr`` (built by ``distr_output`` from ``params``, possibly affine-transformed).

    The same distribution as ``distr.sample`` restricted to those positions: each draw picks its
    component from the mixture weights, then draws from that component only. uni2ts' `Mixture.sample`
    draws every component at every position of the packed width (``max_patch``) and keeps one,
    ``num_components * max_patch / width`` times the draws needed here.

    The draws that chose a component are found once as flat indices (in row-major order, the order a
    boolean mask takes them) and their parameters read from the ``(positions,)`` parameter vectors by
    index: no parameter is expanded over the samples axis. A component's sampler therefore sees the
    same parameters in the same order as a boolean-mask gather gives, and consumes the generator alike.
    """
    logits = params["weights_logits"][:, :, :width]  # (series, n_horizon, width, components)
    shape = torch.Size((num_samples, *logits.shape[:-1]))  # (samples, series, n_horizon, width)
    positions = logits.shape[:-1].numel()  # series * n_horizon * width
    full = params["weights_logits"].shape[:-1]  # (series, n_horizon, max_patch): a parameter's shape
    pick = torch.distributions.Categorical(logits=logits).sample((num_samples,)).flatten()  # (samples * positions,)
    draws = logits.new_zeros(shape.numel())  # (samples * positions,), row-major over `shape`
    for idx, (component, values) in enumerate(zip(distr_output.components, params["components"])):
        chosen = (pick == idx).nonzero().squeeze(1)  # (m,) flat indices into draws, ascending
        if chosen.numel() == 0:
            continue
        at = chosen % positions  # (m,) each draw's position (the samples axis is the leading one)
        own = {k: v[:, :, :width].reshape(positions)[at] if v.shape == full else v for k, v in values.items()}
        draws[chosen] = component._distribution(own).sample().to(draws.dtype)
    draws = draws.view(shape)
    if isinstance(distr, TransformedDistribution):  # uni2ts' AffineTransformed: loc + scale * x
        for transform in distr.transforms:
            draws = transform(draws)
    return draws


@torch.no_grad()
def masked_sample_mixture(distr_output: Any, params: Any, distr: Distribution, num_samples: int, width: int) -> Tensor:
    """`sample_mixture` with boolean-mask gathers: the same draws from the same generator state."""
    logits = params["weights_logits"][:, :, :width]  # (series, n_horizon, width, components)
    shape = torch.Size((num_samples, *logits.shape[:-1]))  # (samples, series, n_horizon, width)
    full = params["weights_logits"].shape[:-1]
    pick = torch.distributions.Categorical(logits=logits).sample((num_samples,))  # (samples, series, n, width)
    draws = logits.new_zeros(shape)
    for idx, (component, values) in enumerate(zip(distr_output.components, params["components"])):
        chosen = pick == idx
        if not bool(chosen.any()):
            continue
        own = {k: v[:, :, :width].expand(shape)[chosen] if v.shape == full else v for k, v in values.items()}
        draws[chosen] = component._distribution(own).sample().to(draws.dtype)
    if isinstance(distr, TransformedDistribution):
        for transform in distr.transforms:
            draws = transform(draws)
    return draws
