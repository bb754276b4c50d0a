"""Reproducible forecasts and no side effects on the caller: a deterministic mean, seeded sample
paths (same seed, same paths; the global RNG untouched), and `finetune` training a copy of a module."""

import numpy as np
import pytest
import torch

import msft
from msft_runner.backbones import resolve_backbone

from .conftest import long_frame

H = 8
FAST = dict(context_length=128, batch_size=16, max_epochs=1, progress=False, num_samples=20)


@pytest.fixture(scope="module")
def moirai():
    """The embedded tiny MOIRAI, zero-shot (a `Forecaster` without training)."""
    return msft.finetune("tiny_moirai", long_frame(items=2, length=200), H, method="zero_shot", **FAST)


def test_the_mean_column_is_the_closed_form_mean_and_the_same_on_every_call(moirai):
    data = long_frame(items=2, length=200)
    first, second = moirai.predict_df(data, seed=None), moirai.predict_df(data, seed=None)
    # the same computation twice, no sampling: bitwise equal
    np.testing.assert_array_equal(first["mean"].to_numpy(), second["mean"].to_numpy())
    assert not np.array_equal(first["0.1"].to_numpy(), second["0.1"].to_numpy())  # unseeded paths do differ
    past = torch.tensor(np.stack([data[data.item_id == i].target.to_numpy()[-128:] for i in ("s0", "s1")]))
    closed_form = moirai.model.predict_all(past.float()[..., None], H)["mean"][..., 0].numpy()
    np.testing.assert_array_equal(first["mean"].to_numpy(), closed_form.reshape(-1))


def test_the_same_seed_gives_the_same_quantile_columns_and_another_seed_others(moirai):
    data = long_frame(items=2, length=200)
    a, b, c = (moirai.predict_df(data, seed=s) for s in (7, 7, 8))
    levels = [str(round(0.1 * i, 1)) for i in range(1, 10)]
    np.testing.assert_array_equal(a[levels].to_numpy(), b[levels].to_numpy())
    assert not np.array_equal(a[levels].to_numpy(), c[levels].to_numpy())


def test_seeded_sampling_leaves_the_global_rng_as_it_was(moirai):
    past = torch.randn(3, 128, 1)
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    one = moirai.model.predict_samples(past, H, num_samples=10, seed=3)
    two = moirai.model.predict_quantiles(past, H, (0.1, 0.5, 0.9), num_samples=10, seed=3)
    torch.testing.assert_close(torch.rand(5), expected, rtol=0, atol=0)  # the caller's stream goes on unchanged
    again = moirai.model.predict_samples(past, H, num_samples=10, seed=3)
    torch.testing.assert_close(one, again, rtol=0, atol=0)
    order = torch.tensor([round(9 * q) for q in (0.1, 0.5, 0.9)])
    torch.testing.assert_close(two, one.sort(dim=1).values[:, order], rtol=0, atol=0)
    with pytest.raises(ValueError, match="seed=1.5"):
        moirai.model.predict_samples(past, H, seed=1.5)


def test_the_gluonts_predictor_takes_a_seed(moirai):
    from gluonts.dataset.common import ListDataset

    data = ListDataset(
        [{"start": "2024-01-01", "target": np.sin(np.arange(150) / 4) + 0.1 * i} for i in range(5)], freq="h"
    )
    predictor = moirai.model.create_predictor(H, batch_size=2, num_samples=10, context_length=128, seed=5)
    first = [f.samples for f in predictor.predict(data)]
    second = [f.samples for f in predictor.predict(data)]
    other = [f.samples for f in moirai.model.create_predictor(H, batch_size=2, num_samples=10, seed=6).predict(data)]
    assert len(first) == 5
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_finetune_trains_a_copy_of_the_callers_module():
    module, _, _ = resolve_backbone("toy_tiny", horizon=H, freq=None, context_length=64)
    before = {n: p.detach().clone() for n, p in module.state_dict().items()}
    names = [n for n, _ in module.named_modules()]
    options = dict(context_length=64, batch_size=16, max_epochs=1, progress=False, max_steps=2)
    first = msft.finetune(module, long_frame(), H, method="full", **options)
    assert [n for n, _ in module.named_modules()] == names  # nothing injected into the caller's module
    after = module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert any(p.requires_grad for p in module.parameters())
    trained = first.model.backbone.state_dict()
    assert any(not torch.equal(before[n], trained[n]) for n in before)  # the copy did train
    second = msft.finetune(module, long_frame(), H, method="msft", scales=[1, 2], **options)  # "already wrapped" before
    assert second.model.backbone is not module
