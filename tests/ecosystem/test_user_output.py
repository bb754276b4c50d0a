"""What a user reads: quiet training by default, errors that name items and the real cause, and a
plot that shows every item (or says how many), titled by item id, with truth checked against the forecast."""

import logging

import numpy as np
import pytest

import msft

from .conftest import long_frame

H = 8
FAST = dict(context_length=64, batch_size=16, max_epochs=1, progress=False)


@pytest.fixture(scope="module")
def toy():
    return msft.finetune("toy_tiny", long_frame(items=5, length=160), H, method="zero_shot", **FAST)


@pytest.mark.parametrize("verbose", [False, True])
def test_lightning_notices_only_when_verbose(caplog, verbose):
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        msft.finetune("toy_tiny", long_frame(items=2), H, max_steps=1, verbose=verbose, **FAST)
        assert logging.getLogger("lightning.pytorch").level == logging.INFO  # restored after training
    notices = [r for r in caplog.records if r.name.startswith("lightning") and "available" in r.getMessage()]
    assert bool(notices) == verbose  # "GPU available: False ...", "TPU available: ..."


def test_errors_name_items_with_no_observed_values(toy):
    data = long_frame(items=3, length=160)
    data.loc[data.item_id == "s1", "target"] = np.nan
    with pytest.raises(ValueError, match="item.s. 's1' have no observed values") as raised:
        toy.predict_df(data, quantile_levels=None)
    assert "past_target[" not in str(raised.value)
    with pytest.raises(ValueError, match="train_data: item.s. 's1' have no observed values"):
        msft.finetune("toy_tiny", data, H, max_steps=1, **FAST)


def test_a_hub_backbone_offline_gives_the_loaders_own_error(monkeypatch):
    from hydra.errors import InstantiationException

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(Exception, match="HF_HUB_OFFLINE") as raised:
        msft.finetune("moirai_1.1_small", long_frame(items=2), H, max_steps=1, **FAST)
    assert not isinstance(raised.value, InstantiationException)
    assert type(raised.value).__module__.startswith("msft")


def test_the_plot_shows_every_item_titled_by_id_with_the_legend_outside(toy):
    data = long_frame(items=5, length=160)
    fig = toy.plot(data)
    assert [ax.get_title() for ax in fig.axes] == [f"item_id = s{i}" for i in range(5)]
    assert "all 5 items" in fig._suptitle.get_text()
    legend = fig.axes[0].get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= fig.axes[0].get_window_extent().x1 - 1
    subset = toy.plot(data, max_items=2)
    assert len(subset.axes) == 2 and "2 of 5 items" in subset._suptitle.get_text()
    chosen = toy.plot(data, item_ids=["s3"])
    assert [ax.get_title() for ax in chosen.axes] == ["item_id = s3"] and "1 of 5 items" in chosen._suptitle.get_text()


def test_truth_from_another_period_is_refused(toy):
    data = long_frame(items=2, length=200)
    history, truth = data[data.timestamp < "2024-01-08"], data[data.timestamp >= "2024-01-08"]
    toy.plot(history, truth)  # the steps after history: accepted
    elsewhere = long_frame(items=2, length=40, start="1990-01-01")
    with pytest.raises(ValueError, match="truth for item 's0' covers 1990-01-01.*do not overlap"):
        toy.plot(history, elsewhere)
