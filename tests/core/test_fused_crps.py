"""fusion_objective="fused_crps": the fusion logits fitted by the CRPS of the fused distribution
(`msft.losses.fused_crps`), the score the PF protocol reads."""

import pytest
import torch

import msft
from msft.losses import fused_crps
from msft_backbones.moirai.spec import MoiraiSpec


def _empirical_crps(samples: torch.Tensor, probs: torch.Tensor, y: float) -> float:
    """CRPS of a discrete distribution by integrating (F(z) - 1[z >= y])^2 over z, piece by piece."""
    points = torch.cat([samples.double(), torch.tensor([y], dtype=torch.float64)])
    order = points.sort().values
    total = 0.0
    for left, right in zip(order[:-1].tolist(), order[1:].tolist()):
        cdf = float(probs.double()[samples.double() <= left].sum())
        total += (cdf - float(left >= y)) ** 2 * (right - left)
    return total


def _batch(scales=3, series=4, paths=5, horizon=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(scales, series, paths, horizon, generator=g) * torch.rand(scales, 1, 1, 1, generator=g) * 2
    target = torch.randn(series, horizon, generator=g)
    past = torch.randn(series, 20, generator=g)
    return sample, target, past


@pytest.mark.parametrize("fusion", ["mixture", "linear", "quantile", "location"])
def test_fused_crps_is_the_crps_of_the_fused_empirical_distribution(fusion):
    """fair=False: exactly the CRPS of the paths' empirical distribution (the mixture's, or the fused
    paths' built here by hand), computed by integrating the CDF; in context-std units."""
    paths, target, past = _batch()
    weights = torch.tensor([0.5, 0.3, 0.2])
    seen, past_seen = torch.ones_like(target, dtype=torch.bool), torch.ones_like(past, dtype=torch.bool)
    got = fused_crps(paths, weights, target, seen, past, past_seen, fusion, fair=False)
    n = paths.shape[2]
    by_hand = []
    for b in range(target.shape[0]):
        for t in range(target.shape[1]):
            step = paths[:, b, :, t]  # (scales, n)
            probs = torch.full((n,), 1.0 / n)
            if fusion == "mixture":
                samples = step.reshape(-1)
                probs = (weights[:, None] / n).expand(-1, n).reshape(-1)
            elif fusion == "linear":
                samples = torch.einsum("s,sn->n", weights, step)
            elif fusion == "quantile":  # the weighted average of the scales' order statistics
                samples = torch.einsum("s,sn->n", weights, step.sort(dim=1).values)
            else:  # scale 0's paths, moved to the weighted mean of the scales' means
                samples = step[0] - step[0].mean() + (weights * step.mean(1)).sum()
            by_hand.append(_empirical_crps(samples, probs, float(target[b, t])))
    unit = past.var(1, unbiased=False).mean().sqrt()
    assert got.item() == pytest.approx(sum(by_hand) / len(by_hand) / unit.item(), rel=1e-4)


def test_the_fair_estimator_leaves_out_each_paths_pair_with_itself():
    paths, target, past = _batch(scales=1)
    seen, past_seen = torch.ones_like(target, dtype=torch.bool), torch.ones_like(past, dtype=torch.bool)
    one = torch.ones(1)
    biased = fused_crps(paths, one, target, seen, past, past_seen, "mixture", fair=False)
    fair = fused_crps(paths, one, target, seen, past, past_seen, "mixture")
    unit = past.var(1, unbiased=False).mean().sqrt()
    error = (paths[0] - target[:, None]).abs().mean(1).mean() / unit
    n = paths.shape[2]
    # biased = error - spread/2 with spread averaged over n^2 pairs; fair divides the same sum by n(n-1)
    assert fair.item() == pytest.approx(error.item() - (error.item() - biased.item()) * n / (n - 1), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        fused_crps(paths[:, :, :1], one, target, seen, past, past_seen, "mixture")


@pytest.mark.parametrize("factor", [1e-3, 1e4, 1e30])
def test_fused_crps_is_scale_free_and_masks_unobserved_points(factor):
    paths, target, past = _batch()
    weights = torch.tensor([0.2, 0.5, 0.3])
    g = torch.Generator().manual_seed(1)
    seen, past_seen = torch.rand(target.shape, generator=g) > 0.3, torch.rand(past.shape, generator=g) > 0.2
    ref = fused_crps(paths, weights, target, seen, past, past_seen, "mixture")
    scaled = fused_crps(paths * factor, weights, target * factor, seen, past * factor, past_seen, "mixture")
    assert torch.isfinite(scaled) and scaled.item() == pytest.approx(ref.item(), rel=1e-4)
    moved = target.clone()
    moved[~seen] += 1e3  # an unobserved point cannot change the score
    assert fused_crps(paths, weights, moved, seen, past, past_seen, "mixture").item() == pytest.approx(ref.item())


@pytest.mark.parametrize("fusion", ["mixture", "linear", "quantile", "location"])
def test_descending_fused_crps_moves_weight_to_the_calibrated_scale(fusion):
    """Scale 0's paths are draws around the target, the others' are biased: descending the CRPS
    moves the weights to scale 0, for every fusion of the paths."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(32, 6, generator=g)
    draws = target[:, None] + 0.3 * torch.randn(3, 32, 16, 6, generator=g)  # independent per scale
    paths = draws + torch.tensor([0.0, 1.0, 0.8])[:, None, None, None]
    past = torch.randn(32, 20, generator=g)
    seen, past_seen = torch.ones_like(target, dtype=torch.bool), torch.ones_like(past, dtype=torch.bool)
    logits = torch.zeros(3, requires_grad=True)
    optimiser = torch.optim.SGD([logits], lr=1.0)
    for _ in range(200):
        optimiser.zero_grad()
        fused_crps(paths, torch.softmax(logits, 0), target, seen, past, past_seen, fusion).backward()
        optimiser.step()
    assert torch.softmax(logits, 0)[0] > 0.9


def _moirai(**options):
    setup = MoiraiSpec.tiny()
    model = msft.wrap(setup.backbone, scales=[1, 2, 4], **{**setup.options, **options})
    g = torch.Generator().manual_seed(0)
    past = torch.randn(3, setup.context_length, 2, generator=g).cumsum(1)
    future = torch.randn(3, setup.horizon, 2, generator=g).cumsum(1) + past[:, -1:]
    return model, past, future


def _grads(model, past, future, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    model.loss(past, future).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("sample_fusion", ["linear", "mixture", "quantile", "location"])
def test_fused_crps_changes_only_the_logits_gradient_of_the_fused_objective(sample_fusion):
    """Every other parameter trains exactly as with "fused" (sum_s sg(w_s) loss_s); the logits get
    the gradient of the fused distribution's CRPS, which differs from the squared error's."""
    fused, past, future = _moirai(fusion_objective="fused", sample_fusion=sample_fusion)
    crps, _, _ = _moirai(fusion_objective="fused_crps", sample_fusion=sample_fusion)
    crps.load_state_dict(fused.state_dict())
    with torch.no_grad():
        for model in (fused, crps):
            model.msft_fusion.msft_fusion_logits.copy_(torch.tensor([0.4, -0.2, 0.1]))
    a, b = _grads(fused, past, future), _grads(crps, past, future)
    logits = "msft_fusion.msft_fusion_logits"
    assert set(a) == set(b) and logits in b and torch.isfinite(b[logits]).all()
    for name in a:
        if name != logits:
            torch.testing.assert_close(a[name], b[name], msg=name)
    assert not torch.allclose(a[logits], b[logits])


def test_fused_crps_needs_a_probabilistic_backbone_and_a_known_name():
    from tests.core.test_mechanics import make_backbone

    with pytest.raises(ValueError, match="fusion_objective='fused_crps'.*point forecasts"):
        msft.wrap(make_backbone(), scales=[1, 2], fusion_objective="fused_crps")
    with pytest.raises(ValueError, match="fusion_objective='crps'"):
        msft.MSFTConfig(fusion_objective="crps")
