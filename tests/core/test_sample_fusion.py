"""sample_fusion="mixture": fused sample path j is one scale's path j, scale s with probability w_s,
so the fused distribution keeps each scale's spread (the linear fusion averages independent draws)."""

import pytest
import torch

import msft
from msft.sampling import upsample
from msft_backbones.moirai.spec import MoiraiSpec


def _model(scales=(1, 2, 4), **options):
    setup = MoiraiSpec.tiny()
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


def test_mixture_keeps_the_spread_and_the_mean_of_the_linear_fusion():
    torch.manual_seed(0)
    model, past, horizon = _model()
    with torch.no_grad():
        linear = model.predict_samples(past, horizon, num_samples=2000)
        model.set_sample_fusion("mixture")
        mixture = model.predict_samples(past, horizon, num_samples=2000)
        mean = model.predict_all(past, horizon)["mean"]
    assert bool((mixture.std(1) > linear.std(1)).float().mean() > 0.9)  # wider nearly everywhere
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
