"""coarse_paths="residual": a coarse scale's draws of s-step means reach the original resolution as the
block's draw plus scale 1's within-block deviation, instead of the draw repeated s times."""

import pytest
import torch

import msft
from msft.sampling import upsample, upsample_paths
from msft_backbones.moirai.spec import MoiraiSpec

# float32 sums of a handful of O(1) values: each rounding is at most 2^-24 relative, a block of at
# most 8 steps and three terms make a few 1e-7; 1e-5 leaves two orders of magnitude of room.
TOL = 1e-5


def test_repeat_is_the_published_upsampling():
    coarse = torch.randn(3, 5, 4)
    assert torch.equal(upsample_paths(coarse, 4, 14), upsample(coarse, 4, 14))
    fine = torch.randn(3, 5, 14)
    assert torch.equal(upsample_paths(fine, 1, 14, fine), fine)  # scale 1 is its own paths


@pytest.mark.parametrize("scale,horizon", [(2, 8), (4, 14), (8, 8), (3, 10)])
def test_residual_keeps_the_coarse_block_means_and_the_fine_deviations(scale, horizon):
    g = torch.Generator().manual_seed(scale)
    blocks = -(-horizon // scale)
    coarse = torch.randn(2, 7, blocks, generator=g) * 3 + 1
    fine = torch.randn(2, 7, horizon, generator=g).cumsum(-1)
    out = upsample_paths(coarse, scale, horizon, fine)
    assert out.shape == (2, 7, horizon)
    for b in range(blocks):
        lo, hi = b * scale, min((b + 1) * scale, horizon)  # the last block is partial when scale ∤ horizon
        torch.testing.assert_close(out[..., lo:hi].mean(-1), coarse[..., b], rtol=0, atol=TOL)
        deviation = fine[..., lo:hi] - fine[..., lo:hi].mean(-1, keepdim=True)
        torch.testing.assert_close(out[..., lo:hi] - coarse[..., b : b + 1], deviation, rtol=0, atol=TOL)


def test_a_shorter_horizon_is_the_prefix_of_a_longer_one_when_the_fine_forecast_covers_the_block():
    """A fine forecast longer than the horizon keeps a partial last block whole: H=10 at scale 4 is the
    first 10 steps of H=12 (as with repetition), not a mean over the 2 steps inside the horizon."""
    g = torch.Generator().manual_seed(1)
    coarse, fine = torch.randn(3, 3, generator=g), torch.randn(3, 12, generator=g)
    torch.testing.assert_close(upsample_paths(coarse, 4, 10, fine), upsample_paths(coarse, 4, 12, fine)[:, :10])


def test_residual_checks_the_fine_length_and_the_option_is_validated():
    with pytest.raises(ValueError, match="fine paths of length 5: expected at least the horizon 8"):
        upsample_paths(torch.randn(2, 4), 2, 8, torch.randn(2, 5))
    with pytest.raises(ValueError, match="coarse_paths='spline'"):
        msft.MSFTConfig(coarse_paths="spline")


def _model(**options):
    setup = MoiraiSpec.tiny()
    model = msft.wrap(setup.backbone, scales=[1, 2, 4], **{**setup.options, **options}).eval()
    past = torch.randn(3, setup.context_length, 2, generator=torch.Generator().manual_seed(0)).cumsum(1)
    return model, past, setup.horizon


@pytest.mark.parametrize("fusion", ["linear", "mixture", "quantile", "location"])
def test_residual_paths_are_unbiased_for_the_fused_mean_and_vary_inside_blocks(fusion):
    """The fused paths' mean is `predict_all`'s mean (the fusion of the means, up-sampled the same way),
    and a coarse scale no longer makes paths flat inside its blocks."""
    torch.manual_seed(0)
    model, past, horizon = _model(sample_fusion=fusion, coarse_paths="residual")
    with torch.no_grad():
        paths = model.predict_samples(past, horizon, num_samples=2000)
        mean = model.predict_all(past, horizon)["mean"]
        model.set_coarse_paths("repeat")
        repeat_mean = model.predict_all(past, horizon)["mean"]
    z = (paths.mean(1) - mean).abs() / (paths.std(1) / paths.shape[1] ** 0.5)
    assert z.mean() < 1.5, z.mean()  # |z| is about 0.8 on average for an unbiased mean
    assert not torch.allclose(mean, repeat_mean)  # the coarse means gained scale 1's within-block shape


def test_coarse_paths_survives_save_and_load(tmp_path):
    pytest.importorskip("msft_runner")  # msft.from_pretrained reloads the recorded base by its name
    model = msft.wrap(msft.load_backbone("tiny_moirai"), scales=[1, 2], patch_size=16, coarse_paths="residual")
    loaded = msft.from_pretrained(model.save_pretrained(tmp_path))
    assert loaded.config.coarse_paths == "residual"
    with pytest.raises(ValueError, match="coarse_paths='spline'"):
        loaded.set_coarse_paths("spline")
