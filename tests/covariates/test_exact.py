"""With one scale at initialisation, joint variates and covariates give uni2ts' own `MoiraiForecast`
(``target_dim``, ``feat_dynamic_real_dim``, ``past_feat_dynamic_real_dim`` set) on real ETTh1 windows
with missing values, on the embedded tiny MOIRAI."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from einops import rearrange

import msft
from msft_backbones.moirai import load_tiny_moirai

pytest.importorskip("uni2ts")
from uni2ts.model.moirai.forecast import MoiraiForecast  # noqa: E402

from tests.conftest import float32_tolerance  # noqa: E402

PATCH, CONTEXT, HORIZON = 16, 133, 20  # 133 is not a multiple of the patch: MOIRAI's left padding


@pytest.fixture(scope="module")
def etth1() -> torch.Tensor:
    """``(2, CONTEXT + HORIZON, 7)``: two ETTh1 windows, z-scored on the train split, with missing values
    in the context: a run across patches, a whole leading patch of one column, scattered points."""
    import pandas as pd

    from msft.data.files import DataNotFoundError, locate
    from msft.data.registry import get_spec

    try:
        path = locate(get_spec("ETTh1"))
    except DataNotFoundError as err:
        pytest.skip(f"no ETTh1 data: {err}")
    values = pd.read_csv(path).iloc[:, 1:].to_numpy(np.float32)  # (time, 7)
    train = values[:8640]
    values = (values - train.mean(0)) / train.std(0)
    windows = torch.tensor(np.stack([values[s : s + CONTEXT + HORIZON] for s in (9000, 11000)]))
    windows[0, 20:60, 0] = float("nan")
    windows[1, :PATCH, 1] = float("nan")  # a target's leading patch: the targets' time ids still count it
    windows[0, 40:45, 4] = float("nan")  # a known covariate's context
    windows[1, ::13, 6] = float("nan")  # a past-only covariate
    return windows


def uni2ts_forecast(module, targets: int, known: int, past: int) -> MoiraiForecast:
    return MoiraiForecast(
        prediction_length=HORIZON,
        target_dim=targets,
        feat_dynamic_real_dim=known,
        past_feat_dynamic_real_dim=past,
        context_length=CONTEXT,
        module=module,
        patch_size=PATCH,
    )


CASES = {  # (targets, known covariates, past-only covariates), columns taken left to right
    "M, 3 targets": (3, 0, 0),
    "M, 2 targets + known + past": (2, 2, 3),
    "M, 1 target + past": (1, 0, 6),
}


@pytest.mark.parametrize(("targets", "known", "past"), CASES.values(), ids=CASES.keys())
def test_single_scale_mode_m_is_moirai_forecast(etth1, targets, known, past):
    module = load_tiny_moirai()
    data = etth1[..., : targets + known + past]
    target, known_cov = data[:, :CONTEXT, :targets], data[..., targets : targets + known]
    past_cov = data[:, :CONTEXT, targets + known :]
    future = data[:, CONTEXT:, :targets]

    # uni2ts: NaN filled with 0 and marked unobserved (gluonts' AddObservedValuesIndicator)
    fc = uni2ts_forecast(module, targets, known, past)

    def filled(x):
        return (torch.nan_to_num(x), ~torch.isnan(x)) if x.shape[-1] else (None, None)

    with torch.no_grad():
        distr = fc._get_distr(
            PATCH,
            *filled(target),
            torch.zeros(target.shape[:2], dtype=torch.bool),
            *filled(known_cov),
            *filled(past_cov),
        )
    n_ctx, n_hor = -(-CONTEXT // PATCH), -(-HORIZON // PATCH)
    start = targets * n_ctx  # the targets' prediction tokens, "(dim seq)" after the targets' context
    want_mean = rearrange(distr.mean[:, start : start + targets * n_hor, :PATCH], "b (v t) p -> b (t p) v", v=targets)[
        :, :HORIZON
    ]
    values = torch.zeros_like(distr.mean)
    future_patches = rearrange(
        torch.nn.functional.pad(future, (0, 0, 0, n_hor * PATCH - HORIZON)), "b (t p) v -> b (v t) p", p=PATCH
    )
    values[:, start : start + targets * n_hor, :PATCH] = future_patches
    seen = torch.zeros_like(values, dtype=torch.bool)
    seen[:, start : start + targets * n_hor, :PATCH] = True
    seen[:, start : start + targets * n_hor, :PATCH] &= rearrange(
        torch.nn.functional.pad(torch.ones_like(future, dtype=torch.bool), (0, 0, 0, n_hor * PATCH - HORIZON)),
        "b (t p) v -> b (v t) p",
        p=PATCH,
    )
    with torch.no_grad():
        log_prob = distr.log_prob(values)
    want_nll = -log_prob[seen].mean()

    covariates = {}
    if known:
        covariates["known_covariates"] = known_cov
    if past:
        covariates["past_covariates"] = past_cov
    model = msft.wrap(
        module,
        scales=[1],
        patch_size=PATCH,
        mode="M",
        point_forecast="mean",
        known_covariates=known,
        past_covariates=past,
    )
    with torch.no_grad():
        got_mean = model.predict(target, HORIZON, **covariates)  # (batch, H, targets)
        got_nll = model.loss(target, future, **covariates)
    # Not bitwise: msft lays the variates out one block after another (uni2ts: all context tokens, then
    # all prediction tokens) and projects the prediction tokens alone, so attention and the head sum
    # in another order. Each value is a chain of d_model-long dot products over 4 layers: float32
    # rounding over d_model terms, of the size of the z-scored series (mean) or of the NLL itself.
    tolerance = float32_tolerance(module.d_model, target.nan_to_num().abs().max(), ulps=4 * module.num_layers)
    torch.testing.assert_close(got_mean, want_mean, **tolerance)
    torch.testing.assert_close(got_nll, want_nll, **float32_tolerance(module.d_model, want_nll.abs(), ulps=16))


def test_joint_variates_change_the_forecast(etth1):
    """Mode M is not channel independence in disguise: another variate's values move the forecast."""
    module = load_tiny_moirai()
    target = etth1[:, :CONTEXT, :3]
    joint = msft.wrap(module, scales=[1], patch_size=PATCH, mode="M", point_forecast="mean")
    with torch.no_grad():
        before = joint.predict(target, HORIZON)
        changed = target.clone()
        changed[:, :, 2] = changed[:, :, 2] * 3 + 1
        after = joint.predict(changed, HORIZON)
    assert not torch.allclose(before[..., 0], after[..., 0])


def test_single_scale_mode_s_with_covariates_is_moirai_forecast_per_target(etth1):
    """Mode "S" with covariates: each target variate with all covariates, as uni2ts forecasts one
    target (``target_dim=1``) with ``feat_dynamic_real`` and ``past_feat_dynamic_real``."""
    module = load_tiny_moirai()
    targets, known, past = 2, 2, 3
    target, known_cov = etth1[:, :CONTEXT, :targets], etth1[..., targets : targets + known]
    past_cov = etth1[:, :CONTEXT, targets + known :]
    fc = uni2ts_forecast(module, 1, known, past)
    model = msft.wrap(
        module, scales=[1], patch_size=PATCH, point_forecast="mean", known_covariates=known, past_covariates=past
    )
    with torch.no_grad():
        got = model.predict(target, HORIZON, known_covariates=known_cov, past_covariates=past_cov)
        n_ctx, n_hor = -(-CONTEXT // PATCH), -(-HORIZON // PATCH)
        for j in range(targets):
            column = target[..., j : j + 1]
            distr = fc._get_distr(
                PATCH,
                torch.nan_to_num(column),
                ~torch.isnan(column),
                torch.zeros(column.shape[:2], dtype=torch.bool),
                torch.nan_to_num(known_cov),
                ~torch.isnan(known_cov),
                torch.nan_to_num(past_cov),
                ~torch.isnan(past_cov),
            )
            want = distr.mean[:, n_ctx : n_ctx + n_hor, :PATCH].flatten(1)[:, :HORIZON]  # (batch, H)
            # as in the mode "M" test above: another token order, float32 rounding per layer
            tolerance = float32_tolerance(module.d_model, column.nan_to_num().abs().max(), ulps=4 * module.num_layers)
            torch.testing.assert_close(got[..., j], want, **tolerance)
