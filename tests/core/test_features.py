"""`MSFTModel.forward_features`: per-scale hidden states, their token layout and which tokens hold data."""

import torch

import msft
from msft_backbones.toy import ToyForecaster


def perturbed_toy(**options):
    torch.manual_seed(0)
    model = msft.wrap(ToyForecaster(d_model=16, num_layers=2, patch_size=4), scales=[1, 2], **options)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero LoRA, adapters and cross-scale aggregation
        for p in model.msft_parameters().values():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_forward_features_is_predicts_forward_pass():
    model = perturbed_toy()
    past = torch.randn(3, 48, 2)
    with torch.no_grad():
        out = model.forward_features(past, 24)
        assert torch.equal(out.forecast, model.predict(past, 24))
    fine, coarse = out.scales
    assert fine.layout == (0, 12, 6) and coarse.layout == (0, 6, 3)  # 48 / 4 context, 24 / 4 horizon tokens
    assert fine.hidden.shape == (6, 18, 16) and coarse.hidden.shape == (6, 9, 16)
    assert fine.valid.all() and coarse.valid.all()
    torch.testing.assert_close(fine.pooled(), fine.hidden.mean(1))


def test_left_padding_is_invalid_and_leaves_the_pooled_features_unchanged():
    """16 NaN steps in front are 4 empty patches at scale 1 and 2 at scale 2: the toy masks them as keys,
    so the forecast and every real token are unchanged, and so is the pooled feature; a mean over all
    tokens is not."""
    model = perturbed_toy()
    past = torch.randn(3, 48, 2)
    padded = torch.cat([torch.full((3, 16, 2), float("nan")), past], dim=1)
    with torch.no_grad():
        out, out_padded = model.forward_features(past, 24), model.forward_features(padded, 24)
    torch.testing.assert_close(out_padded.forecast, out.forecast)
    for scale, (plain, pad) in enumerate(zip(out.scales, out_padded.scales)):
        empty = 4 // (scale + 1)
        assert pad.layout == (0, plain.layout[1] + empty, plain.layout[2])
        assert pad.valid[:, :empty].logical_not().all() and pad.valid[:, empty:].all()
        torch.testing.assert_close(pad.pooled(), plain.pooled())
        assert not torch.allclose(pad.hidden.mean(1), plain.hidden.mean(1), atol=1e-3)


def test_a_partial_patch_is_valid_and_a_missing_one_is_not():
    model = perturbed_toy()
    past = torch.randn(1, 46, 1)  # 46 steps: the first patch of scale 1 has 2 real steps and 2 of padding
    past[0, 10:14, 0] = float("nan")  # steps 12..15 of the padded series: patch 3, fully missing
    with torch.no_grad():
        fine = model.forward_features(past, 8).scales[0]
    assert fine.valid[0].tolist() == [True, True, True, False] + [True] * 8 + [True] * 2


def test_soft_prompt_tokens_are_a_prefix_left_out_of_the_pooling():
    model = perturbed_toy(prompt_tokens=3)
    with torch.no_grad():
        fine = model.forward_features(torch.randn(2, 48, 1), 24).scales[0]
    assert fine.layout == (3, 12, 6) and fine.valid.all()
    assert not fine.series_mask()[:, :3].any() and fine.series_mask()[:, 3:].all()
    torch.testing.assert_close(fine.pooled(), fine.hidden[:, 3:].mean(1))
