"""Joint variates and covariates (``mode="M"``, ``past_covariates``, ``known_covariates``).

The core normally splits every variate into its own series (channel independence). With joint
variates, the variates that attend to each other form a *group*: every variate of one series
(``mode="M"``), or one target variate and the covariates (``mode="S"`` with covariates). Each group
is pooled to every scale like the target (context on the left, the known covariates' horizon on the
right) and handed to the spec's `embed_variates` as a `msft.registry.VariateGroup`. The spec's head
forecasts the target variates only, one row per ``(batch, target variate)`` in that order, so the
loss, fusion and sampling downstream are those of channel independence.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange, repeat
from torch import Tensor

from msft.checks import check_series
from msft.config import MSFTConfig
from msft.registry import VariateGroup
from msft.sampling import downsample, scaled_length


class Covariates(NamedTuple):
    """Checked covariates of a batch (either may be empty, ``k = 0``)."""

    past: Tensor  # (batch, context, k1) past-only covariates
    past_observed: Tensor  # (batch, context, k1)
    known: Tensor  # (batch, context + horizon, k2) known-future covariates
    known_observed: Tensor  # (batch, context + horizon, k2)


def check_covariates(
    config: MSFTConfig, past_target: Tensor, horizon: int, past_covariates: object, known_covariates: object
) -> Covariates | None:
    """The covariates ``config`` declares, checked against the batch; None for a model without any.

    Raises ``ValueError`` when a declared kind is missing or an undeclared one given, when the count of
    covariates differs from the declared names, when the batch or time axis does not match
    ``past_target`` (known covariates must cover the context and the ``horizon``), and when a known
    covariate is missing (NaN) anywhere over the horizon."""
    batch, context, _ = past_target.shape
    given = {"past_covariates": past_covariates, "known_covariates": known_covariates}
    for name, value in given.items():
        declared = getattr(config, name)
        if value is None and declared:
            raise ValueError(
                f"{name} missing: this model was built with {name}={list(declared)}; expected a tensor "
                f"(batch, {'context' if name == 'past_covariates' else 'context + horizon'}, {len(declared)})"
            )
        if value is not None and not declared:
            raise ValueError(
                f"{name} given, but this model was built without them: wrap it with {name}=<names or count> "
                "to train and forecast with covariates"
            )
    if not config.past_covariates and not config.known_covariates:
        return None
    empty = past_target.new_zeros(batch, context, 0), past_target.new_zeros(batch, context, 0, dtype=torch.bool)
    past, past_observed = empty
    if past_covariates is not None:
        past, past_observed = check_series("past_covariates", past_covariates, None, "")
        _check_shape("past_covariates", past, (batch, context, len(config.past_covariates)), config.past_covariates)
    known = past_target.new_zeros(batch, context + horizon, 0)
    known_observed = known.bool()
    if known_covariates is not None:
        known, known_observed = check_series("known_covariates", known_covariates, None, "")
        expected = (batch, context + horizon, len(config.known_covariates))
        if known.shape[0] == batch and known.shape[1] < context + horizon:
            raise ValueError(
                f"known_covariates has {known.shape[1]} time steps: they do not cover the horizon; expected "
                f"context + horizon = {context} + {horizon} = {context + horizon}"
            )
        _check_shape("known_covariates", known, expected, config.known_covariates)
        missing = ~known_observed[:, context:]
        if bool(missing.any()):
            b, t, k = missing.nonzero()[0].tolist()
            raise ValueError(
                f"known_covariates[{b}, {context + t}, {k}] ({config.known_covariates[k]!r}) is NaN over the "
                "horizon: known-future covariates must be known at every forecast step"
            )
    return Covariates(past.to(past_target.dtype), past_observed, known.to(past_target.dtype), known_observed)


def _check_shape(name: str, value: Tensor, expected: tuple[int, int, int], names: tuple[str, ...]) -> None:
    if tuple(value.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(value.shape)}: expected (batch, time, covariates) = {expected} "
            f"(the model's {name}: {list(names)})"
        )


class Groups(NamedTuple):
    """The groups of a batch at the original resolution (before pooling)."""

    context: Tensor  # (groups, variates, time): targets, known covariates, past-only covariates
    observed: Tensor  # (groups, variates, time)
    future: Tensor  # (groups, known, horizon) known covariates over the horizon
    future_observed: Tensor  # (groups, known, horizon)
    targets: int
    known: int
    past: int


def build_groups(
    mode: str, target: Tensor, observed: Tensor, variates: int, covariates: Covariates | None, horizon: int
) -> Groups:
    """``target``/``observed`` ``(batch * variates, time)`` (rows in ``(batch variate)`` order, as the core
    splits them) and the covariates -> the groups: ``mode="M"`` one per batch row with every target,
    ``"S"`` one per target variate, each with all covariates."""
    rows, context = target.shape
    if covariates is None:
        none = target.new_zeros(rows // variates, context, 0)
        future_none = target.new_zeros(rows // variates, context + horizon, 0)
        covariates = Covariates(none, none.bool(), future_none, future_none.bool())
    known, known_observed = covariates.known[:, :context], covariates.known_observed[:, :context]
    future, future_observed = covariates.known[:, context:], covariates.known_observed[:, context:]

    def covariate_rows(x: Tensor) -> Tensor:  # (batch, time, k) -> (groups, k, time)
        if mode == "M":
            return rearrange(x, "b t k -> b k t")
        return repeat(x, "b t k -> (b v) k t", v=variates)

    if mode == "M":
        targets = rearrange(target, "(b v) t -> b v t", v=variates)
        targets_observed = rearrange(observed, "(b v) t -> b v t", v=variates)
    else:
        targets, targets_observed = target[:, None], observed[:, None]  # (batch * variates, 1, time)
    past, past_observed = covariates.past, covariates.past_observed
    return Groups(
        context=torch.cat([targets, covariate_rows(known), covariate_rows(past)], dim=1),
        observed=torch.cat([targets_observed, covariate_rows(known_observed), covariate_rows(past_observed)], dim=1),
        future=covariate_rows(future),
        future_observed=covariate_rows(future_observed),
        targets=targets.shape[1],
        known=known.shape[2],
        past=past.shape[2],
    )


def pool_groups(groups: Groups, steps: int, scale: int, horizon: int) -> VariateGroup:
    """The groups' last ``steps`` context steps and their known horizon, pooled to ``scale``."""
    n_groups, variates, _ = groups.context.shape
    context, observed = downsample(
        rearrange(groups.context[..., -steps:], "g v t -> (g v) t"),
        rearrange(groups.observed[..., -steps:], "g v t -> (g v) t"),
        scale,
        side="left",
    )
    future, future_observed = downsample(
        rearrange(groups.future, "g k t -> (g k) t"),
        rearrange(groups.future_observed, "g k t -> (g k) t"),
        scale,
        side="right",
    )
    known_horizon = scaled_length(horizon, scale)
    return VariateGroup(
        context=rearrange(context, "(g v) t -> g v t", g=n_groups),
        observed=rearrange(observed, "(g v) t -> g v t", g=n_groups),
        future=future.reshape(n_groups, groups.known, known_horizon),
        future_observed=future_observed.reshape(n_groups, groups.known, known_horizon),
        targets=groups.targets,
        known=groups.known,
        past=groups.past,
    )


def per_variate(hidden: Tensor, variates: int) -> Tensor:
    """``(groups, variates * tokens, d_model)`` -> ``(groups * variates, tokens, d_model)``."""
    return rearrange(hidden, "g (v n) d -> (g v) n d", v=variates)


def joint(hidden: Tensor, variates: int) -> Tensor:
    """The inverse of `per_variate`."""
    return rearrange(hidden, "(g v) n d -> g (v n) d", v=variates)
