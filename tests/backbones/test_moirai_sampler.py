"""MOIRAI's mixture sampler (`sample_mixture`): only the chosen component is drawn, at the positions a
path reads, and the draws follow the same distribution as uni2ts' `Mixture.sample`."""

import math

import pytest
import torch
from scipy.stats import ks_2samp

import msft
from msft_backbones.moirai.spec import MoiraiSpec

PATHS = 3000


def _output(seed=0, horizon=24):
    setup = MoiraiSpec.tiny()
    model = msft.wrap(setup.backbone, scales=[1], **setup.options).eval()
    g = torch.Generator().manual_seed(seed)
    past = torch.randn(3, setup.context_length, 1, generator=g).cumsum(1)
    with torch.no_grad():
        return model._forward(*model._check_past(past, None), horizon)[0]


def _uni2ts_paths(output, num_samples):
    """uni2ts' own sampler: every component at every packed position, then one kept."""
    draws = output.distr.sample(torch.Size((num_samples,)))  # (samples, series, n_horizon, max_patch)
    draws = draws[..., : output.patch_size].permute(1, 0, 2, 3).flatten(2)  # (series, samples, n * patch)
    return draws[..., : output.horizon]


def _largest_ks(a, b):
    """The largest two-sample Kolmogorov-Smirnov statistic over (series, step)."""
    points = [(i, t) for i in range(a.shape[0]) for t in range(a.shape[2])]
    return max(ks_2samp(a[i, :, t].numpy(), b[i, :, t].numpy()).statistic for i, t in points), len(points)


def _critical(tests, n, alpha=0.01):
    """KS critical value for two samples of n at family-wise level alpha (Bonferroni over tests):
    the asymptotic sqrt(-ln(a / 2) / 2) * sqrt(2 / n), a = alpha / tests."""
    return math.sqrt(-math.log(alpha / tests / 2) / 2) * math.sqrt(2 / n)


def test_chosen_component_sampling_draws_the_same_distribution_as_uni2ts():
    output = _output()
    torch.manual_seed(0)
    ours = output.sample(PATHS)  # (series, S, H)
    theirs = _uni2ts_paths(output, PATHS)
    statistic, tests = _largest_ks(ours, theirs)
    assert statistic < _critical(tests, PATHS), (statistic, _critical(tests, PATHS))


def test_the_two_sample_test_sees_a_mixture_with_other_weights():
    """The same statistic rejects a wrong sampler: the component weights rolled by one."""
    output = _output()
    torch.manual_seed(0)
    ours = output.sample(PATHS)
    logits = output.params["weights_logits"]
    output.params["weights_logits"] = logits.roll(1, dims=-1)
    other = output.sample(PATHS)
    output.params["weights_logits"] = logits
    statistic, tests = _largest_ks(ours, other)
    assert statistic > _critical(tests, PATHS), (statistic, _critical(tests, PATHS))


@pytest.mark.parametrize("component", [0, 1, 2, 3])
def test_a_position_draws_only_its_chosen_component(component):
    """With all weight on one component, every draw comes from it: the fixed-scale normal (1) stays
    within 6e-3 standard units of its location, the negative binomial (2) is a whole number before the
    affine map, the others are checked against that component's own sampler."""
    output = _output()
    logits = output.params["weights_logits"]
    output.params["weights_logits"] = torch.full_like(logits, -1e4).index_fill(-1, torch.tensor([component]), 0.0)
    torch.manual_seed(1)
    ours = output.sample(PATHS)
    params = output.params["components"][component]
    own = output.distr_output.components[component]._distribution(
        {k: v for k, v in params.items() if v.shape == logits.shape[:-1]}
    )
    loc, scale = output.distr.transforms[0].loc, output.distr.transforms[0].scale  # (series, n, 1)
    direct = (own.sample((PATHS,)) * scale + loc)[..., : output.patch_size].permute(1, 0, 2, 3).flatten(2)
    direct = direct[..., : output.horizon]
    if component == 1:
        standard = (ours - direct.mean(1, keepdim=True)) / scale[:, :1, 0, None]
        assert float(standard.abs().max()) < 6e-3  # N(loc, 0.001): 6 sigma
    elif component == 2:
        base = (ours - loc[:, :1, 0, None]) / scale[:, :1, 0, None]
        assert torch.allclose(base, base.round(), atol=1e-3 * (1 + base.abs().max().item()))
    statistic, tests = _largest_ks(ours, direct)
    assert statistic < _critical(tests, PATHS), statistic


@pytest.mark.parametrize("spread", [False, True])
def test_index_gathers_draw_exactly_what_boolean_mask_gathers_draw(spread):
    """Bitwise, by construction: both hand each component the chosen positions' parameters in
    row-major order and consume the generator in the same order. ``spread`` flattens the mixture
    weights so that every component is chosen somewhere (the tiny model puts ~all weight on one)."""
    from msft_backbones.moirai.sampling import masked_sample_mixture, sample_mixture

    output = _output(horizon=40)
    if spread:
        output.params["weights_logits"] = torch.zeros_like(output.params["weights_logits"])
    args = (output.distr_output, output.params, output.distr, 50, output.patch_size)
    torch.manual_seed(3)
    expected = masked_sample_mixture(*args)
    torch.manual_seed(3)
    assert torch.equal(sample_mixture(*args), expected)


def test_the_same_seed_draws_the_same_paths_and_another_seed_others():
    output = _output()
    torch.manual_seed(5)
    a = output.sample(64)
    torch.manual_seed(5)
    b = output.sample(64)
    torch.manual_seed(6)
    c = output.sample(64)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
