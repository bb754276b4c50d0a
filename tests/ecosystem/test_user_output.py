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


def test_an_uncached_hub_id_fails_at_the_hub_check_with_msfts_error(monkeypatch):
    """`msft.hub.check_hub` (what a loader calls before importing its library): offline at once, and
    online after one metadata request when the hub does not answer, naming the repository."""
    from huggingface_hub import constants

    from msft.hub import HubUnreachableError, check_hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="MOMENT checkpoint 'AutonLab/MOMENT-1-small'.*HF_HUB_OFFLINE"):
        check_hub("AutonLab/MOMENT-1-small", what="MOMENT checkpoint")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(*args, **kwargs):
        calls.append(kwargs.get("timeout"))
        raise OSError("connection refused")

    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", unreachable)
    with pytest.raises(HubUnreachableError, match="OSError: connection refused.*pass that folder"):
        check_hub("AutonLab/MOMENT-1-small", what="MOMENT checkpoint", timeout=1.5)
    assert calls == [1.5]  # one request, with the timeout


def test_an_unreachable_hub_fails_a_download_after_one_request(monkeypatch):
    from huggingface_hub import HfApi, constants

    from msft.hub import HubUnreachableError, download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(kwargs.get("timeout"))
        raise OSError("connection refused")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    with pytest.raises(HubUnreachableError, match="hub cannot be reached .OSError: connection refused"):
        download("someone/not-cached-msft-adapter", timeout=2.0)
    assert calls == [2.0]


def test_the_cli_backbone_config_raises_the_loaders_error_unwrapped(monkeypatch):
    """``msft-train backbone=moirai_1.1_small`` offline: the loader's own error, not Hydra's wrapper."""
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    from msft_runner.backbones import build_backbone

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    import pathlib

    from msft_runner.configs import __file__ as configs

    cfg = OmegaConf.load(pathlib.Path(configs).parent / "backbone" / "moirai_1.1_small.yaml")
    with pytest.raises(OSError, match="moirai-1.1-R-small.*HF_HUB_OFFLINE") as raised:
        build_backbone(cfg)
    assert not isinstance(raised.value, InstantiationException)
    assert type(raised.value).__module__.startswith("msft")
