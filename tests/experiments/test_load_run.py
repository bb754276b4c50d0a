"""`msft_runner.train.load_run`, the one loader of finished runs: it returns exactly the weights the
run's record scored (the checkpoint it names, or the zero-shot weights the guard kept)."""

import json

import pytest
import torch

from msft_runner.train import load_run, run

from .conftest import TINY, compose, small_csv


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load_run")
    cfg = compose([*TINY, "data=csv", f"data.path={small_csv(tmp / 's.csv')}", "data.target=x1", "method=msft"])
    run(cfg, tmp / "run", {"backbone": "toy_tiny"})
    return tmp / "run"


def _msft_state(model):
    return {n: p.detach().clone() for n, p in model.msft_parameters().items()}


def _checkpoint_state(path):
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {n.removeprefix("model."): t for n, t in state.items()}


def _record(run_dir, **changes):
    record = json.loads((run_dir / "metrics.json").read_text())
    return {**record, **changes}


def test_the_checkpoint_the_record_names_is_loaded(finished):
    record = _record(finished)
    ckpt = _checkpoint_state(finished / "checkpoints" / record["checkpoint"])
    loaded = _msft_state(load_run(finished).model)
    assert loaded.keys() <= ckpt.keys()
    for name, value in loaded.items():
        assert torch.equal(value, ckpt[name]), name  # the same tensors, copied: identical by construction


def test_a_record_naming_last_ckpt_loads_last_ckpt(finished, tmp_path):
    # A last.ckpt whose weights differ from best.ckpt's in every msft parameter.
    source = torch.load(finished / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    source["state_dict"] = {n: t + 1.0 for n, t in source["state_dict"].items()}
    torch.save(source, finished / "checkpoints" / "last.ckpt")
    loaded = _msft_state(load_run(finished, _record(finished, checkpoint="last.ckpt")).model)
    best = _checkpoint_state(finished / "checkpoints" / "best.ckpt")
    for name, value in loaded.items():
        assert torch.equal(value, best[name] + 1.0), name


def test_the_zero_shot_weights_when_the_guard_kept_them(finished):
    trained = load_run(finished).model
    kept = load_run(finished, _record(finished, guard="zero_shot_kept")).model
    past = torch.randn(4, 32, 1)
    base = kept.backbone.forecast(past, 8)  # the wrapped backbone called directly is the original
    assert any(bool(p.abs().sum() > 0) for n, p in trained.msft_parameters().items() if "lora_B" in n)
    assert all(bool((p == 0).all()) for n, p in kept.msft_parameters().items() if "lora_B" in n)
    # the identity wrap forecasts what the backbone does (same ops on the same shapes: exact)
    assert torch.equal(kept.predict(past, 8), base)


def test_a_directory_that_is_not_a_finished_run_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ValueError, match="has no metrics.json: expected the directory of a finished msft-train run"):
        load_run(tmp_path)


def test_a_run_is_not_loaded_on_other_pretrained_weights(finished):
    # the record names the weights the run was finetuned from; its checkpoint holds only the trained
    # parameters, which on another checkpoint of the same backbone would load silently and mean nothing
    record = _record(finished)
    assert record["base_fingerprint"].startswith("sha256:")
    load_run(finished, record)  # the same weights: loads
    with pytest.raises(ValueError, match="finetuned from backbone weights sha256:0000"):
        load_run(finished, _record(finished, base_fingerprint="sha256:" + "0" * 64))
    load_run(finished, {k: v for k, v in record.items() if k != "base_fingerprint"})  # older runs: not checkable
