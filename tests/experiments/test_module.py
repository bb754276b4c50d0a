"""ForecastModule's loss on batches with unusable windows (no observed context or future)."""

import torch

import msft
from msft_backbones.toy import ToyForecaster
from msft_runner.module import ForecastModule


def batch(rows=4, context=32, horizon=8):
    past, future = torch.randn(rows, context, 1), torch.randn(rows, horizon, 1)
    return {
        "past_target": past,
        "future_target": future,
        "past_observed": torch.ones_like(past, dtype=torch.bool),
        "future_observed": torch.ones_like(future, dtype=torch.bool),
    }


def module():
    torch.manual_seed(0)
    return ForecastModule(msft.wrap(ToyForecaster(d_model=16), scales=[1, 2]), {"lr": 1e-3})


def test_windows_without_observed_context_or_future_are_dropped():
    full = batch()
    gappy = {k: v.clone() for k, v in full.items()}
    gappy["past_observed"][1] = False  # a series that has not started yet
    gappy["future_observed"][2] = False  # nothing to score
    m = module()
    kept = {k: v[[0, 3]] for k, v in full.items()}
    torch.testing.assert_close(m._loss(gappy), m._loss(kept))


def test_a_batch_with_nothing_usable_gives_a_zero_loss_with_a_graph():
    empty = batch()
    empty["past_observed"][:] = False
    loss = module()._loss(empty)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_lr_decay_multiplies_every_learning_rate_after_each_epoch():
    import pytest

    m = ForecastModule(
        msft.wrap(ToyForecaster(d_model=16), scales=[1, 2]), {"lr": 1e-3, "scale_weight_lr": 1e-2}, lr_decay=0.5
    )
    config = m.configure_optimizers()
    optimizer, decay = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "epoch"
    first = [g["lr"] for g in optimizer.param_groups]
    for _ in range(2):  # two epochs
        optimizer.step()
        decay.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([lr / 4 for lr in first])
    assert isinstance(module().configure_optimizers(), torch.optim.AdamW)  # no decay: the optimiser alone
    with pytest.raises(ValueError, match="lr_decay"):
        ForecastModule(msft.wrap(ToyForecaster(d_model=16), scales=[1]), {"lr": 1e-3}, lr_decay=2.0)
