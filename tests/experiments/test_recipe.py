"""Issue 14: selection on the fused validation score, scoring as published, backbone-trainable
patterns resolved by the spec, the authors' presets, the zero-shot guard and the resumable sweep."""

import json
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import msft
from msft.layers import injected_parameter_names
from msft.registry import registered_backbones
from msft_runner.methods import build_model
from msft_runner.train import run

from .conftest import TINY, cli, compose, small_csv


def _csv_cfg(path, *extra):
    return compose(
        [
            *TINY,
            "data=csv",
            f"data.path={path}",
            "data.target=x1",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=3",
            *extra,
        ]
    )


# -- selection ---------------------------------------------------------------------------------------
def test_selection_follows_the_fused_score_where_the_objective_disagrees(tmp_path):
    """Only the fusion logits train (lr 0 elsewhere) with the published objective: sum_s w_s * loss_s
    falls as weight drifts to the coarse scale while the fused forecast gets worse. The run keeps
    the epoch with the best fused validation MSE, not the best objective."""
    import numpy as np
    import pandas as pd

    # a slow cycle plus a period-2 alternation that pooling by 2 averages away: scale 2's target is
    # smooth (low NLL), its up-sampled forecast misses the alternation (high MSE)
    t = np.arange(800)
    noise = 0.05 * np.random.default_rng(0).standard_normal(800)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2021", periods=800, freq="h"),
            "x1": np.sin(2 * np.pi * t / 24) + 0.8 * (-1.0) ** t + noise,
        }
    )
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    cfg = _csv_cfg(
        path,
        "backbone=tiny_moirai",
        "backbone.wrap_options.patch_size=16",
        "data.context_length=128",
        "data.horizon=32",
        "method=msft",
        "method.options.scales=[1,2]",
        "method.options.coarse_paths=repeat",  # flat coarse blocks: scale 2 cannot carry the alternation
        "data.lr.lr=0.0",
        "data.lr.scale_weight_lr=0.3",
        "trainer.patience=5",
        "trainer.limit_train_batches=2",
        "trainer.max_epochs=2",
    )
    record = run(cfg, tmp_path / "run", {"backbone": "tiny_moirai"})
    curves = [row for row in _csv_rows(tmp_path / "run" / "metrics.csv") if row.get("val_score")]
    by_loss = min(range(len(curves)), key=lambda i: float(curves[i]["val_loss"]))
    by_score = min(range(len(curves)), key=lambda i: float(curves[i]["val_score"]))
    assert by_loss != by_score, "the two criteria agree here: the test would not tell them apart"
    assert record["best_epoch"] == int(curves[by_score]["epoch"])
    assert record["val_score"] == pytest.approx(float(curves[by_score]["val_score"]))
    assert {"val_mse_scale1", "val_mse_scale2"} <= set(record)  # per-scale scores of the kept epoch


def _csv_rows(path):
    import csv

    with open(path) as handle:
        return list(csv.DictReader(handle))


# -- scoring -----------------------------------------------------------------------------------------
def test_lsf_scores_mse_on_the_mean_and_mae_on_the_median():
    import numpy as np
    import pandas as pd

    from msft.protocols import evaluate_lsf

    values = np.sin(np.arange(400) / 5.0)
    data = pd.DataFrame({"date": pd.date_range("2020", periods=400, freq="h"), "x": values})
    point = evaluate_lsf(lambda past: past[:, -8:], data, 8, 16)
    both = evaluate_lsf(lambda past: {"mean": past[:, -8:], "median": past[:, -8:] * 0}, data, 8, 16)
    assert both["mse"] == pytest.approx(point["mse"])
    zero = evaluate_lsf(lambda past: past[:, -8:] * 0, data, 8, 16)
    assert both["mae"] == pytest.approx(zero["mae"]) and both["mae"] != pytest.approx(point["mae"])


def test_predict_all_matches_predict_and_predict_scales():
    from msft_backbones.moirai import load_tiny_moirai

    torch.manual_seed(0)
    past = torch.randn(2, 256, 1).cumsum(1)
    model = msft.wrap(load_tiny_moirai(), scales=[1, 2], patch_size=32, point_forecast="mean")
    out = model.predict_all(past, 40, num_samples=20)
    assert torch.allclose(out["point"], model.predict(past, 40)) and torch.equal(out["point"], out["mean"])
    assert out["median"].shape == (2, 40, 1) and not torch.equal(out["median"], out["mean"])
    assert [tuple(s.shape) for s in out["scales"]] == [(2, 40, 1), (2, 20, 1)]


# -- backbone-trainable patterns ---------------------------------------------------------------------
AUTHORS_FREEZE_FFN = (
    "self_attn.out_proj.",
    "self_attn.q_norm.",
    "self_attn.k_norm.",
    "self_attn.var_attn_bias.",
    ".norm1.",
    ".norm2.",
    "encoder.norm.",
    "mask_encoding.",
    "param_proj.",
)


def test_freeze_ffn_trains_exactly_the_authors_modules():
    from msft_backbones.moirai import load_tiny_moirai

    backbone = load_tiny_moirai()
    names = [n for n, _ in backbone.named_parameters()]
    built = build_model(
        backbone, "msft", 96, {"scales": [1, 2]}, wrap_options={"patch_size": 32}, backbone_trainable="freeze_ffn"
    )
    trainable = {
        n.removeprefix("backbone.") for n, p in built.model.named_parameters() if p.requires_grad and "msft_" not in n
    }
    expected = {n for n in names if any(part in n for part in AUTHORS_FREEZE_FFN)}
    assert trainable == expected
    assert all(
        any(f"layers.{i}.{m}" in " ".join(trainable) for i in range(4))
        for m in ("self_attn.out_proj", "norm1", "norm2")
    )
    assert not any(re.search(r"in_proj|q_proj|k_proj|v_proj|ffn", n) for n in trainable)
    # msft's own parts still train, and the optimiser sees the backbone ones (head group)
    assert any(p.requires_grad for n, p in built.model.named_parameters() if "msft_" in n)
    groups = {g["name"]: g for g in built.model.parameter_groups(lr=1e-3)}
    assert sum(p.numel() for p in groups["head"]["params"]) == sum(
        p.numel() for n, p in backbone.named_parameters() if n.removeprefix("backbone.") in expected
    )


# an offline backbone config per registered spec (with test_configs' tiny overrides)
OFFLINE = {
    "toy": ["backbone=toy_tiny"],
    "moirai": ["backbone=tiny_moirai"],
    "moment": ["backbone=moment_random", "data.horizon=8"],
    "time_dpd": ["backbone=time_dpd_tiny", "data.context_length=32", "data.horizon=8"],
    "chronos2": ["backbone=chronos2_tiny"],
    "moirai2": ["backbone=moirai2_tiny"],
}


def test_every_registered_backbone_has_an_offline_config():
    assert set(registered_backbones()) <= set(OFFLINE)


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_generic_trainable_patterns_for_every_backbone(name):
    from msft_runner.backbones import build_backbone

    cfg = compose(OFFLINE[name])
    backbone, wrap_options = build_backbone(cfg.backbone)
    model = msft.wrap(backbone, horizon=cfg.data.horizon, **{**(wrap_options or {}), "scales": [1]})
    try:
        injected = injected_parameter_names(model.backbone)
        unused = tuple(f"{m}." for m in model.spec.unused_modules)  # never run by msft's forward
        every = [n for n, _ in model.backbone.named_parameters() if n not in injected and not n.startswith(unused)]
        assert all(any(n.startswith(u) for n, _ in model.backbone.named_parameters()) for u in unused)
        assert model.spec.trainable_parameters("none") == []
        assert model.spec.trainable_parameters("all") == every
        with pytest.raises(ValueError, match="backbone_trainable='no_such'"):
            model.spec.trainable_parameters("no_such")
    finally:
        msft.unwrap(model)


# -- presets -----------------------------------------------------------------------------------------
# The authors' values (docs/runner.md "The MSFT authors' recipe"): context, patch, MOIRAI-small lr.
AUTHORS = {
    "ETTh1": (5000, 64, 5e-7),
    "ETTh2": (3000, 64, 5e-7),
    "ETTm1": (4000, 128, 5e-6),
    "ETTm2": (3000, 64, 5e-6),
    "Weather": (2000, 128, 5e-6),
    "Electricity": (5000, 64, 1e-4),
}
FUSION = {
    "ETTh1": (9.0, 1e-5),
    "ETTh2": (9.0, 1e-2),
    "ETTm1": (0.0, 1e-2),
    "ETTm2": (0.0, 1e-2),
    "Weather": (0.0, 1e-5),
    "Electricity": (0.0, 1e-2),
}


@pytest.mark.parametrize("backbone", ["moirai_1.0_small", "moirai_1.1_small", "moirai_1.0_base", "moirai_1.1_base"])
@pytest.mark.parametrize("dataset", sorted(AUTHORS))
def test_presets_resolve_to_the_authors_values(backbone, dataset):
    cfg = compose([f"backbone={backbone}", f"data={dataset}", "method=msft_authors"])
    context, patch, small_lr = AUTHORS[dataset]
    assert cfg.data.context_length == context and cfg.backbone.wrap_options.patch_size == patch
    assert cfg.data.lr.lr == (small_lr if "small" in backbone else 1e-7)
    assert list(cfg.optimizer.betas) == [0.9, 0.98] and cfg.optimizer.eps == 1e-6 and cfg.weight_decay == 0.1
    assert cfg.data.batch_size == 512 and cfg.trainer.patience == 3 and cfg.trainer.gradient_clip_val == 1.0
    method = OmegaConf.to_container(cfg.method, resolve=True)
    assert method["options"]["scales"] == [1, 2, 4, 8] and method["backbone_trainable"] == "freeze_ffn"
    assert (method["options"]["fusion_prior"], method["lr"]["scale_weight_lr"]) == FUSION[dataset]
    assert method["options"]["fusion_objective"] == "per_scale"


def test_the_committed_presets_are_the_generators_table():
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "moirai_presets.py"
    spec = importlib.util.spec_from_file_location("moirai_presets", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module.presets()) == 24
    assert module.main(["--check"]) == 0  # edit the table and rerun the script, never a yaml alone


def test_command_line_overrides_a_preset():
    cfg = compose(["backbone=moirai_1.1_small", "data=ETTh1", "weight_decay=0.0", "data.context_length=512"])
    assert cfg.weight_decay == 0.0 and cfg.data.context_length == 512 and cfg.data.lr.lr == 5e-7


# -- zero-shot guard ---------------------------------------------------------------------------------
def test_guard_keeps_the_zero_shot_weights_when_finetuning_is_worse(tmp_path):
    path = small_csv(tmp_path / "s.csv")
    zero = run(_csv_cfg(path, "method=zero_shot"), tmp_path / "zero", {"backbone": "toy_tiny"})
    # a learning rate far too high: finetuning ends worse than the backbone on validation
    worse = ["method=full", "lr_scale=300", "trainer.max_epochs=1"]
    off = run(_csv_cfg(path, *worse), tmp_path / "off", {"backbone": "toy_tiny"})
    assert off["guard"] == "off" and off["val_score"] > off["zero_shot_val_score"] == zero["val_score"]
    on = run(_csv_cfg(path, *worse, "guard=true"), tmp_path / "on", {"backbone": "toy_tiny"})
    assert on["guard"] == "zero_shot_kept" and on["finetuned_val_score"] == pytest.approx(off["val_score"])
    assert on["val_score"] == zero["val_score"]
    assert (on["mse"], on["mae"]) == pytest.approx((zero["mse"], zero["mae"]))


def test_guard_keeps_the_finetuned_weights_when_they_are_better(tmp_path):
    path = small_csv(tmp_path / "s.csv")
    record = run(_csv_cfg(path, "method=lora", "guard=true"), tmp_path / "run", {"backbone": "toy_tiny"})
    assert record["val_score"] < record["zero_shot_val_score"] and record["guard"] == "finetuned"
    assert (tmp_path / "run" / "metrics.json").exists()


# -- resumable sweep ---------------------------------------------------------------------------------
def test_lr_sweep_selects_on_validation_and_resumes(tmp_path, data_dir):
    tiny = [o for o in TINY if not o.startswith("names.")]
    args = (
        "-m",
        "method=lora",
        "lr_scale=0.5,2",
        *tiny,
        "trainer.max_epochs=1",
        "experiment=lrs",
        "results_dir=tables",
        "skip_finished=true",
        "select=true",
        "hydra.sweep.subdir=${method.name}/lr${lr_scale}/seed${seed}",
    )
    env = {"MSFT_DATA_DIR": str(data_dir)}
    first = cli(*args, cwd=tmp_path, env_extra=env)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = sorted((tmp_path / "runs" / "lrs").rglob("metrics.json"))
    assert len(runs) == 2
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    second = cli(*args, cwd=tmp_path, env_extra=env)
    assert second.returncode == 0 and {p: p.stat().st_mtime_ns for p in runs} == stamps  # nothing re-ran
    records = [json.loads(p.read_text()) for p in runs]
    table = (tmp_path / "tables" / "lrs.md").read_text()
    chosen = min(records, key=lambda r: r["val_score"])
    assert max(r["val_score"] for r in records) > chosen["val_score"]  # the grid points differ
    row = next(line for line in table.splitlines() if "| lora |" in line)
    assert f"| {chosen['lr_scale']:g} |" in row and f"{chosen['mse']:.4f}" in row and row.endswith("| 2 |")
