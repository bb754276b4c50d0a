"""The shipped tiny MOIRAI: it loads through MOIRAI's loading path, is small, and forecasts exactly
what it forecast when it was committed (catches silent weight, config or loading changes).

Regenerate the stored forecast after a deliberate re-pretraining with
``python -m tests.pretrained.test_tiny_moirai --regenerate``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("uni2ts")

from msft_backbones.moirai import TINY_MOIRAI_DIR, load_tiny_moirai  # noqa: E402

REFERENCE = Path(__file__).with_name("tiny_moirai_reference.json")
CONTEXT, HORIZON, PATCH = 512, 96, 32


def probe_series() -> torch.Tensor:
    """(2, CONTEXT) deterministic inputs: a daily cycle with trend, and a weekly-modulated one."""
    t = torch.arange(CONTEXT, dtype=torch.float64)
    daily = torch.sin(2 * math.pi * t / 24) + 0.002 * t + 0.3 * torch.cos(2 * math.pi * t / 168)
    weekly = (
        10 + 3 * torch.sin(2 * math.pi * t / 24) * (1 + 0.5 * torch.sin(2 * math.pi * t / 168)) + 0.1 * torch.cos(t)
    )
    return torch.stack([daily, weekly]).float()


def mean_forecast(module, series: torch.Tensor, horizon: int = HORIZON, patch: int = PATCH) -> torch.Tensor:
    """(series, horizon) mixture mean of ``MoiraiModule.forward`` (uni2ts' own entry point)."""
    n, length = series.shape
    n_ctx, n_hor = length // patch, math.ceil(horizon / patch)
    tokens, max_patch = n_ctx + n_hor, max(module.patch_sizes)
    target = torch.zeros(n, tokens, max_patch)
    observed = torch.zeros(n, tokens, max_patch, dtype=torch.bool)
    target[:, :n_ctx, :patch] = series.reshape(n, n_ctx, patch)
    observed[:, :, :patch] = True
    prediction_mask = torch.arange(tokens).expand(n, tokens) >= n_ctx
    ones = torch.ones(n, tokens, dtype=torch.long)  # one sample per row; uni2ts reads sample id 0 as padding
    with torch.no_grad():
        distr = module(
            target=target,
            observed_mask=observed,
            sample_id=ones,
            time_id=torch.arange(tokens).expand(n, tokens),
            variate_id=0 * ones,
            prediction_mask=prediction_mask,
            patch_size=torch.full((n, tokens), patch),
        )
        mean = distr.mean[:, n_ctx:, :patch]  # (series, n_hor, patch)
    return mean.reshape(n, n_hor * patch)[:, :horizon]


def weight_checksum(module) -> float:
    return float(sum(p.double().abs().sum() for p in module.state_dict().values() if p.is_floating_point()))


@pytest.fixture(scope="module")
def module():
    return load_tiny_moirai()


def test_checkpoint_files_and_size():
    names = {p.name for p in TINY_MOIRAI_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "README.md"} <= names
    size = sum(p.stat().st_size for p in TINY_MOIRAI_DIR.iterdir() if p.is_file())
    assert size <= 20 * 2**20, f"checkpoint is {size / 2**20:.1f} MiB; the limit is 20 MiB"


def test_config_is_a_moirai_config_with_the_mixture_head(module):
    config = json.loads((TINY_MOIRAI_DIR / "config.json").read_text())
    reference_keys = {
        "attn_dropout_p",
        "d_model",
        "distr_output",
        "dropout_p",
        "max_seq_len",
        "num_layers",
        "patch_sizes",
        "scaling",
    }
    assert set(config) == reference_keys
    targets = [c["_target_"].rsplit(".", 1)[1] for c in config["distr_output"]["components"]]
    assert targets == ["StudentTOutput", "NormalFixedScaleOutput", "NegativeBinomialOutput", "LogNormalOutput"]
    assert module.d_model == config["d_model"] and module.num_layers == config["num_layers"]
    assert tuple(module.patch_sizes) == tuple(config["patch_sizes"])
    assert not module.training


def test_model_card_records_how_it_was_made():
    card = (TINY_MOIRAI_DIR / "README.md").read_text()
    for needle in ("scripts/pretrain_tiny_moirai.py", "--seed", "steps", "synthetic", "zero-shot", "wall"):
        assert needle in card, f"model card does not mention {needle!r}"


def test_fixed_forecast_matches_the_stored_values(module):
    reference = json.loads(REFERENCE.read_text())
    assert weight_checksum(module) == pytest.approx(reference["weight_abs_sum"], rel=1e-6)
    forecast = mean_forecast(module, probe_series())
    expected = torch.tensor(reference["mean_forecast"])
    torch.testing.assert_close(forecast, expected, rtol=1e-4, atol=1e-4)


def test_forecast_follows_the_input_scale(module):
    """MOIRAI's scaler makes the forecast equivariant to an affine change of the input."""
    series = probe_series()
    base = mean_forecast(module, series)
    shifted = mean_forecast(module, 100.0 * series + 7.0)
    torch.testing.assert_close(shifted, 100.0 * base + 7.0, rtol=1e-3, atol=1e-2)


def future_nll(module, series: torch.Tensor, patch: int = PATCH) -> float:
    """Mean NLL of the last ``HORIZON`` points of ``series (n, CONTEXT + HORIZON)`` given the rest."""
    n, length = series.shape
    tokens, n_ctx, max_patch = length // patch, CONTEXT // patch, max(module.patch_sizes)
    target = torch.zeros(n, tokens, max_patch)
    observed = torch.zeros(n, tokens, max_patch, dtype=torch.bool)
    target[..., :patch] = series.reshape(n, tokens, patch)
    observed[..., :patch] = True
    ones = torch.ones(n, tokens, dtype=torch.long)
    with torch.no_grad():
        distr = module(
            target=target,
            observed_mask=observed,
            sample_id=ones,
            time_id=torch.arange(tokens).expand(n, tokens),
            variate_id=0 * ones,
            prediction_mask=torch.arange(tokens).expand(n, tokens) >= n_ctx,
            patch_size=torch.full((n, tokens), patch),
        )
        return float(-distr.log_prob(target)[:, n_ctx:, :patch].mean())


def test_pretrained_weights_forecast_far_better_than_random_weights(module):
    """The shipped weights are trained: a random-weight MOIRAI of the same config is far less likely
    to produce the true continuation of noisy seasonal series."""
    from uni2ts.model.moirai.module import MoiraiModule, decode_distr_output

    config = json.loads((TINY_MOIRAI_DIR / "config.json").read_text())
    config["distr_output"] = decode_distr_output(config["distr_output"])
    torch.manual_seed(0)
    random_module = MoiraiModule(**config).eval()
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(CONTEXT + HORIZON, dtype=torch.float32)
    series = 5 + torch.sin(2 * math.pi * t / 24) + 0.3 * torch.randn(8, len(t), generator=generator)
    trained, untrained = future_nll(module, series), future_nll(random_module, series)
    assert trained < untrained - 0.5, (trained, untrained)


def test_continues_a_clean_daily_cycle(module):
    """The shipped weights continue a period-24 cycle instead of forecasting its mean (the stage-2
    checkpoint did the latter: results/pretrained/seasonal_probe.md): the forecast error is a small
    fraction of the error of the context mean."""
    generator = torch.Generator().manual_seed(1)
    t = torch.arange(CONTEXT + HORIZON, dtype=torch.float64)
    phase = 6.28 * torch.rand(16, 1, generator=generator, dtype=torch.float64)
    series = torch.sin(2 * math.pi * t / 24 + phase) + 0.5 * torch.sin(4 * math.pi * t / 24 + 2 * phase)
    series = series + 0.1 * torch.randn(series.shape, generator=generator, dtype=torch.float64)
    past, future = series[:, :CONTEXT], series[:, CONTEXT:]
    forecast = mean_forecast(module, past).double()
    model_mse = float((forecast - future).square().mean())
    mean_mse = float((past.mean(1, keepdim=True) - future).square().mean())
    assert model_mse < 0.25 * mean_mse, (model_mse, mean_mse)


@pytest.mark.skipif(
    importlib.util.find_spec("msft_backbones.moirai") is None, reason="MOIRAI backbone spec not present"
)
def test_loads_through_the_moirai_backbone_loader_and_wraps_to_the_same_forecast(module):
    import msft
    from msft_backbones.moirai import load_moirai

    loaded = load_moirai(TINY_MOIRAI_DIR)
    for (name, a), b in zip(module.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    model = msft.wrap(
        loaded, scales=[1], adapters=False, lora=False, c2f=False, f2c=False, learned_fusion=False, patch_size=PATCH
    )
    series = probe_series()
    torch.manual_seed(0)
    samples = model.predict_samples(series.unsqueeze(-1), HORIZON, num_samples=2000)  # (2, S, H, 1)
    # The wrapped model samples the same distribution: its sample mean is near the mixture mean.
    mean = mean_forecast(module, series)
    spread = samples.std(dim=1)[..., 0]
    assert ((samples.mean(dim=1)[..., 0] - mean).abs() <= 0.2 * spread + 1e-3).float().mean() > 0.9


def _regenerate() -> None:
    module = load_tiny_moirai()
    forecast = mean_forecast(module, probe_series())
    REFERENCE.write_text(
        json.dumps(
            {
                "weight_abs_sum": weight_checksum(module),
                "mean_forecast": [[round(v, 6) for v in row] for row in forecast.tolist()],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        _regenerate()
