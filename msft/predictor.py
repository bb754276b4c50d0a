"""A GluonTS `Predictor` over an `msft.MSFTModel`, so GluonTS (and GIFT-Eval) evaluation runs on it unchanged.

    predictor = model.create_predictor(prediction_length=24)
    forecasts = list(predictor.predict(test_data.input))       # one Forecast per entry
    gluonts.model.evaluate_model(predictor, test_data=test_data, metrics=[MSE(), MeanWeightedSumQuantileLoss(...)])

Entries are GluonTS data entries: ``target`` of shape ``(time,)`` or ``(variate, time)``, ``start`` a
``pandas.Period``, optional ``item_id``; any other field is ignored. Missing values are NaN. Each
variate is forecast on its own (channel independence, as msft does everywhere); series are
left-padded with NaN (unobserved) or cut to their last ``context_length`` steps, so entries of any
length share a batch. What comes out depends on the backbone:

- probabilistic (MOIRAI): `SampleForecast` of the fused sample paths (``num_samples``);
- point backbone with quantile heads (``quantile_levels`` in `msft.MSFTConfig`): `QuantileForecast`
  with the model's levels and the point forecast as ``"mean"``;
- point backbone without them: `SampleForecast` with the point forecast as its single path (its
  mean and every quantile are the point forecast).

Covariates (a model built with ``past_covariates`` / ``known_covariates``, `msft.MSFTConfig`): each
entry holds ``past_feat_dynamic_real`` ``(k1, time)`` and ``feat_dynamic_real`` ``(k2, time +
prediction_length)``, as GluonTS and uni2ts' `MoiraiForecast` name them; a model with ``mode="M"``
forecasts the variates of an entry jointly (entries are batched with others of as many variates).

``seed=`` makes the sample paths reproducible: batch k of a ``predict`` call draws with seed
``seed + k`` under a forked RNG (the caller's global random state is untouched), so the same data,
``batch_size`` and seed give identical forecasts; None (the default) draws from the global RNG.

A calibrated model (`MSFTModel.calibrate`, `msft.calibration`) gives its calibrated sample paths and
quantiles here: the predictor reads ``predict_samples`` / ``predict_quantiles``, which apply it.

gluonts is imported when a predictor is created, never by ``import msft``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import rearrange
from gluonts.model.forecast import Forecast, QuantileForecast, SampleForecast
from gluonts.model.predictor import Predictor

#: GluonTS fields of the covariates, per `msft.MSFTModel` argument
COVARIATE_FIELDS = {"past_covariates": "past_feat_dynamic_real", "known_covariates": "feat_dynamic_real"}


class MSFTPredictor(Predictor):
    """``predict(dataset)`` yields one GluonTS `Forecast` per entry, in order (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        prediction_length: int,
        *,
        batch_size: int = 32,
        num_samples: int = 100,
        context_length: int = 512,
        device: str | torch.device | None = None,
        freq: str | None = None,
        seed: int | None = None,
    ):
        for name, value in (
            ("prediction_length", prediction_length),
            ("batch_size", batch_size),
            ("num_samples", num_samples),
            ("context_length", context_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed={seed!r}: expected an integer or None")
        super().__init__(prediction_length=prediction_length)
        self.seed = seed
        self.model, self.batch_size, self.num_samples = model, batch_size, num_samples
        self.context_length, self.freq = context_length, freq
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.quantile_levels = tuple(getattr(model.config, "quantile_levels", None) or ())
        self.kind = "sample" if model.spec.probabilistic else ("quantile" if self.quantile_levels else "point")

    def predict(self, dataset: Iterable[dict[str, Any]], **kwargs: Any) -> Iterator[Forecast]:
        batch: list[dict[str, Any]] = []
        index = 0
        for entry in dataset:
            batch.append(entry)
            if len(batch) == self.batch_size:
                yield from self._predict_batch(batch, index)
                batch, index = [], index + 1
        if batch:
            yield from self._predict_batch(batch, index)

    # -- internals --------------------------------------------------------------------------------
    def _predict_batch(self, entries: list[dict[str, Any]], index: int = 0) -> Iterator[Forecast]:
        config = self.model.config
        if config.past_covariates or config.known_covariates or config.mode == "M":
            yield from self._predict_joint(entries, index)
            return
        rows, dims = [], []
        for entry in entries:
            target = _target_of(entry)  # (variate, time)
            dims.append(target.shape[0])
            rows.extend(self._context(row, entry) for row in target)
        past = torch.as_tensor(np.stack(rows), dtype=torch.float32, device=self.device)[..., None]  # (rows, L, 1)
        seed = None if self.seed is None else self.seed + index
        outputs = self._forecast(past, seed)  # (rows, k, H): samples, quantile levels (+ mean) or the point
        start = 0
        for entry, dim in zip(entries, dims):
            block = outputs[start : start + dim]  # (variate, k, H)
            start += dim
            univariate = np.ndim(entry["target"]) == 1
            array = block[0] if univariate else np.moveaxis(block, 0, -1)  # (k, H) or (k, H, variate)
            yield self._to_forecast(array, entry)

    def _predict_joint(self, entries: list[dict[str, Any]], index: int) -> Iterator[Forecast]:
        """Entries with covariates or for ``mode="M"``: each entry is one ``(context, variate)`` window with its
        covariates; consecutive entries with as many variates are forecast together."""
        config, seed = self.model.config, None if self.seed is None else self.seed + index
        runs: list[list[dict[str, Any]]] = []
        for entry in entries:
            if runs and _target_of(runs[-1][0]).shape[0] == _target_of(entry).shape[0]:
                runs[-1].append(entry)
            else:
                runs.append([entry])
        for run in runs:
            past = np.stack([np.stack([self._context(row, e) for row in _target_of(e)], -1) for e in run])
            covariates = {}
            for name, field in COVARIATE_FIELDS.items():
                if getattr(config, name):
                    covariates[name] = torch.as_tensor(
                        np.stack([self._covariates(e, field, len(getattr(config, name))) for e in run]),
                        dtype=torch.float32,
                        device=self.device,
                    )
            past_tensor = torch.as_tensor(past, dtype=torch.float32, device=self.device)  # (entries, L, variate)
            outputs = self._forecast(past_tensor, seed, covariates)  # (entries * variate, k, H)
            dim = past.shape[-1]
            for i, entry in enumerate(run):
                block = outputs[i * dim : (i + 1) * dim]  # (variate, k, H)
                univariate = np.ndim(entry["target"]) == 1
                yield self._to_forecast(block[0] if univariate else np.moveaxis(block, 0, -1), entry)

    def _covariates(self, entry: dict[str, Any], field: str, count: int) -> np.ndarray:
        """``(context_length, k)`` past-only or ``(context_length + H, k)`` known covariates of ``entry``,
        NaN-padded on the left like the target."""
        if field not in entry:
            raise ValueError(f"item {entry.get('item_id')!r}: no {field!r}; this model reads {count} of them")
        values = np.asarray(entry[field], dtype=np.float32)
        values = values[None] if values.ndim == 1 else values
        length = np.shape(entry["target"])[-1]
        expected = length + (self.prediction_length if field == "feat_dynamic_real" else 0)
        if values.ndim != 2 or values.shape[0] != count or values.shape[1] < expected:
            raise ValueError(
                f"item {entry.get('item_id')!r}: {field} has shape {values.shape}; expected ({count}, {expected})"
                + (" (the target's steps and the prediction_length after them)" if expected > length else "")
            )
        context = values[:, :length][:, -self.context_length :].T  # (context <= L, k)
        padded = np.concatenate([np.full((self.context_length - len(context), count), np.nan, np.float32), context])
        return np.concatenate([padded, values[:, length:expected].T]) if expected > length else padded

    def _context(self, row: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
        """The last ``context_length`` steps of one variate, NaN-padded on the left."""
        row = np.where(np.isfinite(row), row, np.nan)[-self.context_length :]  # +-inf count as missing
        if not np.isfinite(row).any():
            raise ValueError(
                f"item {entry.get('item_id')!r}: a target variate has no finite value; "
                "expected at least one observed point to forecast from"
            )
        return np.concatenate([np.full(self.context_length - len(row), np.nan, np.float32), row])

    @torch.no_grad()
    def _forecast(
        self, past: torch.Tensor, seed: int | None = None, covariates: dict[str, torch.Tensor] | None = None
    ) -> np.ndarray:
        model, horizon = self.model, self.prediction_length
        was_training = model.training
        model.eval()
        try:
            if self.kind == "sample":
                paths = model.predict_samples(
                    past, horizon, num_samples=self.num_samples, seed=seed, **covariates or {}
                )
                out = rearrange(paths, "b s h v -> (b v) s h")  # (rows, S, H)
            elif self.kind == "quantile":
                quantiles = model.predict_quantiles(past, horizon, self.quantile_levels)[..., 0]  # (rows, Q, H)
                mean = model.predict(past, horizon)[..., 0][:, None]  # (rows, 1, H)
                out = torch.cat([quantiles, mean], dim=1)
            else:
                out = model.predict(past, horizon)[..., 0][:, None]  # (rows, 1, H)
        finally:
            model.train(was_training)
        return out.float().cpu().numpy()

    def _to_forecast(self, array: np.ndarray, entry: dict[str, Any]) -> Forecast:
        start = entry["start"]
        if not isinstance(start, pd.Period):
            if self.freq is None:
                raise ValueError(
                    f"item {entry.get('item_id')!r}: start={start!r} is not a pandas.Period; pass "
                    "freq= to create_predictor (or use a GluonTS dataset, which converts it)"
                )
            start = pd.Period(start, freq=self.freq)
        start = start + np.shape(entry["target"])[-1]  # the period after the last observation
        item_id = entry.get("item_id")
        if self.kind == "quantile":
            keys = [str(q) for q in self.quantile_levels] + ["mean"]
            return QuantileForecast(array, start_date=start, forecast_keys=keys, item_id=item_id)
        return SampleForecast(array, start_date=start, item_id=item_id)


def _target_of(entry: dict[str, Any]) -> np.ndarray:
    """``entry["target"]`` as float32 ``(variate, time)``; ValueError naming the item otherwise."""
    if "target" not in entry or "start" not in entry:
        raise ValueError(f"data entry with keys {sorted(entry)}: expected at least 'target' and 'start'")
    target = np.asarray(entry["target"], dtype=np.float32)
    if target.ndim == 1:
        target = target[None]
    if target.ndim != 2 or target.shape[-1] == 0:
        raise ValueError(
            f"item {entry.get('item_id')!r}: target has shape {np.shape(entry['target'])}; "
            "expected (time,) or (variate, time) with at least one step"
        )
    return target
