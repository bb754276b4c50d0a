"""sample_fusion="mixture": fused sample path j is one scale's path j, scale s with probability w_s,
so the fused distribution keeps each scale's spread (the linear fusion averages independent draws)."""

import pytest
import torch

import msft
from msft.fusion import fuse_paths
from msft.sampling import upsample
from msft_backbones.moirai.spec import MoiraiSpec


def _model(scales=(1, 2, 4), **options):
    """The fusions compared under the published up-sampling (each coarse draw repeated over its block:
    independent flat paths, the case the fusions were built for); coarse_paths="residual" has its own
    tests in test_coarse_paths.py."""
    setup = MoiraiSpec.tiny()
    options = {"coarse_paths": "repeat", **options}
    model = msft.wrap(setup.backbone, scales=list(scales), **{**setup.options, **options}).eval()
    g = torch.Generator().manual_seed(0)
    past = torch.randn(3, setup.context_length, 2, generator=g).cumsum(1)
    return model, past, setup.horizon


def test_every_mixture_path_is_one_scales_path_drawn_with_the_fusion_weights():
    model, past, horizon = _model(sample_fusion="mixture")
    with torch.no_grad():
        model.msft_fusion.msft_fusion_logits.copy_(torch.tensor([0.0, 0.0, -30.0]))  # w = (0.5, 0.5, ~0)
        outputs = model._forward(*model._check_past(past, None), horizon)
        torch.manual_seed(1)
        per_scale = [upsample(out.sample(400), s, horizon) for out, s in zip(outputs, model.scales)]
        torch.manual_seed(1)
        fused = model._fused_samples(outputs, horizon, past.shape[2], 400)  # (b, S, H, v)
    flat = fused.permute(0, 3, 1, 2).reshape(-1, 400, horizon)  # (b v, S, H): the per-scale layout
    same = torch.stack([(flat == p).all(-1) for p in per_scale])  # (scales, series, S)
    assert bool(same.any(0).all())  # each fused path is some scale's path, unchanged
    share = same[0].float().mean().item()
    assert 0.44 < share < 0.56 and not bool(same[2].any())  # picked with the weights 0.5 / 0.5 / 0


def _gini(paths):
    """Gini mean difference E|X - X'| per point of ``(batch, S, H, v)`` paths (from the order statistics):
    a spread that needs only a finite mean (the MOIRAI head's Student-t may have no variance)."""
    n = paths.shape[1]
    rank = torch.arange(1, n + 1, dtype=paths.dtype).view(1, n, 1, 1)
    return (2 * (2 * rank - n - 1) * paths.sort(dim=1).values).sum(1) / (n * (n - 1))


def test_mixture_keeps_the_spread_and_the_mean_of_the_linear_fusion():
    """The mixture's E|X - X'| is at least sum_s w_s E|X_s - X_s'| (energy distance >= 0), the linear
    fusion's at most that (triangle inequality): wider in distribution, here by ~1.45x at the median
    point; single points can invert by sampling noise, so the median ratio is what is asserted."""
    torch.manual_seed(0)
    model, past, horizon = _model()
    with torch.no_grad():
        linear = model.predict_samples(past, horizon, num_samples=2000)
        model.set_sample_fusion("mixture")
        mixture = model.predict_samples(past, horizon, num_samples=2000)
        mean = model.predict_all(past, horizon)["mean"]
    assert (_gini(mixture) / _gini(linear)).median() > 1.2
    for paths in (mixture, linear):  # both are unbiased for the closed-form mean: |z| is about 0.8 on average
        z = (paths.mean(1) - mean).abs() / (paths.std(1) / paths.shape[1] ** 0.5)
        assert z.mean() < 1.5, z.mean()


def test_one_scale_mixture_is_the_linear_fusion_and_bad_values_are_named():
    model, past, horizon = _model(scales=[1], sample_fusion="mixture")
    torch.manual_seed(3)
    a = model.predict_samples(past, horizon, num_samples=8)
    model.set_sample_fusion("linear")
    torch.manual_seed(3)
    assert torch.equal(a, model.predict_samples(past, horizon, num_samples=8))
    with pytest.raises(ValueError, match="sample_fusion='average'"):
        msft.MSFTConfig(sample_fusion="average")
    with pytest.raises(ValueError, match="sample_fusion='average'"):
        model.set_sample_fusion("average")


# -- quantile and location fusions (msft.fusion.fuse_paths) --------------------------------------------

N = 20000


def _two_gaussians(sigma=(1.0, 1.0), centre=(0.0, 2.0), horizon=3, seed=0):
    """``(2, series=2, N, horizon)`` independent Gaussian paths per scale."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(2, 2, N, horizon, generator=g, dtype=torch.float64)
    return noise * torch.tensor(sigma, dtype=torch.float64).view(2, 1, 1, 1) + torch.tensor(
        centre, dtype=torch.float64
    ).view(2, 1, 1, 1)


# the standard deviation of N Gaussian draws is off by about sigma / sqrt(2N) = 0.005 sigma: 6 of those
SPREAD_TOL = 6 / (2 * N) ** 0.5


@pytest.mark.parametrize("fusion", ["linear", "mixture", "quantile", "location"])
def test_one_scale_fuses_to_its_own_paths(fusion):
    """By construction: a single scale's paths come back unchanged (fusion weight 1), bit for bit."""
    paths = _two_gaussians()[:1]
    assert torch.equal(fuse_paths(paths, torch.ones(1), fusion), paths[0])
    model, past, horizon = _model(scales=[1], sample_fusion=fusion)
    outputs = model._forward(*model._check_past(past, None), horizon)
    torch.manual_seed(4)
    expected = outputs[0].sample(16)  # (series, S, H)
    torch.manual_seed(4)
    got = model._fused_samples(outputs, horizon, past.shape[2], 16)  # (b, S, H, v)
    assert torch.equal(got.permute(0, 3, 1, 2).reshape(-1, 16, horizon), expected)


def test_quantile_fusion_keeps_the_spread_of_scales_of_one_shape_and_linear_shrinks_it():
    """Two Gaussians of the same sigma, w = (0.5, 0.5): Vincentization gives N(1, sigma) (spread
    sum w sigma), the linear fusion N(1, sqrt(sum w^2) sigma) = N(1, 0.71 sigma)."""
    paths, w = _two_gaussians(), torch.tensor([0.5, 0.5], dtype=torch.float64)
    quantile, linear = fuse_paths(paths, w, "quantile"), fuse_paths(paths, w, "linear")
    assert torch.allclose(quantile.std(1), torch.tensor(1.0, dtype=torch.float64), atol=SPREAD_TOL, rtol=0)
    assert torch.allclose(linear.std(1), torch.full((), 0.5**0.5, dtype=torch.float64), atol=SPREAD_TOL, rtol=0)
    assert torch.allclose(
        quantile.mean(1), torch.tensor(1.0, dtype=torch.float64), atol=6 / N**0.5, rtol=0
    )  # 6 standard errors
    # the spread is sum_s w_s sigma_s for other shapes too: sigma (1, 3), w (0.25, 0.75) -> 2.5
    wide = fuse_paths(_two_gaussians(sigma=(1.0, 3.0)), torch.tensor([0.25, 0.75], dtype=torch.float64), "quantile")
    assert torch.allclose(wide.std(1), torch.full((), 2.5, dtype=torch.float64), atol=2.5 * SPREAD_TOL, rtol=0)


def test_quantile_fusion_averages_order_statistics_in_scale_ones_order():
    paths, w = _two_gaussians(centre=(0.0, 5.0)), torch.tensor([0.3, 0.7], dtype=torch.float64)
    fused = fuse_paths(paths, w, "quantile")
    expected = 0.3 * paths[0].sort(1).values + 0.7 * paths[1].sort(1).values
    torch.testing.assert_close(fused.sort(1).values, expected, rtol=0, atol=1e-12)  # float64 rounding
    assert torch.equal(fused.argsort(1), paths[0].argsort(1))  # path j keeps scale 1's rank at every step


def test_location_fusion_keeps_scale_ones_spread_and_moves_its_mean():
    paths, w = _two_gaussians(sigma=(1.0, 4.0)), torch.tensor([0.25, 0.75], dtype=torch.float64)
    means = torch.stack([torch.zeros(2, 3), torch.full((2, 3), 2.0)]).double()  # closed-form means
    fused = fuse_paths(paths, w, "location", means)
    shift = fused - paths[0]  # the same at every path: (series, S, H)
    torch.testing.assert_close(shift, torch.full_like(shift, 1.5), rtol=0, atol=1e-12)  # 0.75 * 2, float64 rounding
    torch.testing.assert_close(fused.std(1), paths[0].std(1), rtol=1e-12, atol=0)
    estimated = fuse_paths(paths, w, "location")  # without means: the paths' own averages
    torch.testing.assert_close(estimated.mean(1), (w[:, None, None] * paths.mean(2)).sum(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fusion", ["quantile", "location"])
def test_model_fusions_are_unbiased_for_the_closed_form_mean(fusion):
    torch.manual_seed(0)
    model, past, horizon = _model(sample_fusion=fusion)
    with torch.no_grad():
        paths = model.predict_samples(past, horizon, num_samples=2000)
        mean = model.predict_all(past, horizon)["mean"]
        model.set_sample_fusion("linear")
        linear = model.predict_samples(past, horizon, num_samples=2000)
    assert paths.shape == (3, 2000, horizon, 2)
    z = (paths.mean(1) - mean).abs() / (paths.std(1) / paths.shape[1] ** 0.5)
    assert z.mean() < 1.5, z.mean()  # |z| is about 0.8 on average for an unbiased mean
    assert (_gini(paths) / _gini(linear)).median() > 1.2  # wider than the published fusion
