"""Fusions of the scales' forecast distributions, from sample paths (docs/design.md §2.6).

Every scale gives ``S`` sample paths at the original resolution (up-sampled); a fusion turns them and
the fusion weights ``w`` into ``S`` fused paths:

- ``linear`` (the published fusion): path j is ``sum_s w_s x_sj``, an average of independent draws,
  so its spread shrinks to about ``sqrt(sum w_s^2)`` of one scale's;
- ``mixture``: path j is scale s's path j with probability ``w_s`` (the distribution ``sum_s w_s p_s``);
- ``quantile`` (Vincentization): per step, the w-weighted average of each scale's *sorted* paths, so
  the fused q-quantile is ``sum_s w_s Q_s(q)`` and the spread is ``sum_s w_s sigma_s`` (two scales of one
  shape keep it); the values are then put back in the order of scale 1's paths at that step (its
  ranks), so paths keep scale 1's dependence over time instead of being quantile curves;
- ``location``: scale 1's paths shifted by the fused mean minus scale 1's mean: the coarse scales
  move the centre, scale 1 keeps the per-step shape and spread.

The fused mean of ``linear``, ``quantile`` and ``location`` is the same, ``sum_s w_s mean_s`` (the
mixture's too, in distribution).
"""

from __future__ import annotations

import torch
from torch import Tensor

from msft.config import SAMPLE_FUSIONS as FUSIONS


def fuse_paths(
    paths: Tensor,
    weights: Tensor,
    fusion: str,
    means: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(series, S, horizon)`` fused paths of ``paths (scales, series, S, horizon)`` with ``weights (scales,)``.

    ``means (scales, series, horizon)``: each scale's mean, read by ``location`` (the paths' average
    when None). Differentiable in ``weights`` for every fusion but ``mixture``, whose draw of a scale
    per path is not (its CRPS is quadratic in ``w``: `msft.losses.fused_crps`).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"sample_fusion={fusion!r}: expected one of {FUSIONS}")
    w = weights.to(paths.dtype)
    if paths.shape[0] == 1:
        return paths[0]  # one scale: its own paths under every fusion
    if fusion == "linear":  # summed scale by scale, in the order of `MSFTModel._fuse`'s point fusion
        return sum(w[s] * paths[s] for s in range(paths.shape[0]))
    if fusion == "mixture":  # path j from scale s with probability w_s
        scales, series, num, horizon = paths.shape
        pick = torch.multinomial(weights.detach().float(), series * num, replacement=True, generator=generator)
        pick = pick.to(paths.device).view(1, series, num, 1).expand(1, -1, -1, horizon)
        return paths.gather(0, pick)[0]
    if fusion == "quantile":
        ordered = torch.einsum("s,sbnt->bnt", w, paths.sort(dim=2).values)  # (series, S, H): fused quantiles
        ranks = paths[0].argsort(dim=1).argsort(dim=1)  # (series, S, H): scale 1's rank of path j at step t
        return ordered.gather(1, ranks)
    if means is None:
        means = paths.mean(2)  # (scales, series, H)
    shift = torch.einsum("s,sbt->bt", w, means.to(paths.dtype)) - means[0]  # fused mean - scale 1's mean
    return paths[0] + shift[:, None]
