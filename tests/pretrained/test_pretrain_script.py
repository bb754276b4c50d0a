"""The pretraining command: MOIRAI-layout masked batches, a loss that trains, exact resumption."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("uni2ts")
from safetensors.torch import load_file  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pretrain_tiny_moirai.py"
TINY = [
    "--d-model",
    "64",
    "--num-layers",
    "1",
    "--batch-size",
    "4",
    "--max-tokens",
    "8",
    "--pool",
    "4",
    "--s2-length",
    "128",
    "--s2-time-limit",
    "0.5",
    "--warmup",
    "1",
]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("pretrain_tiny_moirai", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pool(script, tiny_s2_cache, monkeypatch_module):
    """The tiny S2 pool (tests/conftest.py), through the script's own loader."""
    monkeypatch_module.setenv("MSFT_CACHE_DIR", str(tiny_s2_cache.parent))
    return script.SeriesPool.from_s2(4, 128, seed=0)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def s2_env(tiny_s2_cache, monkeypatch):
    monkeypatch.setenv("MSFT_CACHE_DIR", str(tiny_s2_cache.parent))


def recipe(script, **kwargs):
    return script.Recipe(**({"batch_size": 4, "patch_sizes": (16, 32, 64), "max_tokens": 8, "max_patch": 64} | kwargs))


def test_pool_holds_excitations_and_responses(pool):
    assert pool.values.shape == (8, 128) and np.isfinite(pool.values).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_masked_batch_has_moirai_layout(script, pool, seed):
    batch = script.masked_batch(np.random.default_rng([0, seed]), pool, recipe(script))
    n, tokens, max_patch = batch["target"].shape
    ps = int(batch["patch_size"][0, 0])
    assert (n, max_patch) == (4, 64) and ps in (16, 32, 64)
    assert (batch["patch_size"] == ps).all()
    assert (batch["sample_id"] >= 1).all(), "sample id 0 is uni2ts padding: the scaler would be skipped"
    assert not batch["observed_mask"][..., ps:].any(), "points beyond the patch size must be unobserved"
    masked = batch["prediction_mask"]
    n_masked = int(masked[0].sum())
    assert 1 <= n_masked < tokens and masked[:, tokens - n_masked :].all()  # the last patches only
    assert torch.equal(batch["time_id"][0], torch.arange(tokens))


def test_synthetic_series_are_finite_and_varied(script, pool):
    x = script.synthetic_batch(np.random.default_rng(0), pool, 64, 512)
    assert x.shape == (64, 512) and np.isfinite(x).all()
    scales = np.log10(x.std(axis=1) + 1e-12)
    assert scales.max() - scales.min() > 2  # many orders of magnitude, left to MOIRAI's scaler


def test_loss_is_the_masked_nll_and_decreases(script, pool):
    torch.manual_seed(0)
    module = script.make_module(script.tiny_config(64, 1, (16, 32, 64), 64))
    batch = script.masked_batch(np.random.default_rng(0), pool, recipe(script, batch_size=8, patch_sizes=(32,)))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = script.masked_nll(module, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_resumed_run_equals_a_straight_run(script, tmp_path, s2_env):
    script.main(["--out", str(tmp_path / "straight"), "--steps", "3", *TINY])
    script.main(["--out", str(tmp_path / "resumed"), "--steps", "3", "--stop-after", "1", *TINY])
    assert not (tmp_path / "resumed" / "model").exists()
    script.main(["--out", str(tmp_path / "resumed"), "--steps", "3", *TINY])
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    config = json.loads((tmp_path / "straight" / "model" / "config.json").read_text())
    assert config["d_model"] == 64 and config["patch_sizes"] == [16, 32, 64]
    # The output directory is an ordinary MOIRAI checkpoint.
    from uni2ts.model.moirai import MoiraiModule

    MoiraiModule.from_pretrained(str(tmp_path / "straight" / "model"))


def test_bad_patch_weights_are_rejected(script, tmp_path):
    with pytest.raises(ValueError, match="patch-weights"):
        script.main(["--out", str(tmp_path), "--patch-weights", "1", "2", *TINY])


def test_init_from_starts_at_the_checkpoint_and_rejects_another_architecture(script, tmp_path, s2_env):
    script.main(["--out", str(tmp_path / "first"), "--steps", "2", *TINY])
    source = tmp_path / "first" / "model"
    # --steps 0: nothing trained, so the exported weights are exactly the ones --init-from loaded.
    script.main(["--out", str(tmp_path / "second"), "--steps", "0", "--init-from", str(source), *TINY])
    a, b = load_file(source / "model.safetensors"), load_file(tmp_path / "second" / "model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    log = json.loads((tmp_path / "second" / "train_log.json").read_text())
    assert log["args"]["init_from"] == str(source)
    wider = [arg if arg != "64" else "128" for arg in TINY]  # --d-model 128
    with pytest.raises(ValueError, match="d_model"):
        script.main(["--out", str(tmp_path / "third"), "--steps", "1", "--init-from", str(source), *wider])


def test_clean_seasonal_share(script, pool):
    """share 0 draws nothing extra (older recipes keep their batches); share 1 gives periodic series."""
    plain = script.synthetic_batch(np.random.default_rng(5), pool, 16, 256)
    same = script.synthetic_batch(np.random.default_rng(5), pool, 16, 256, seasonal_share=0.0)
    np.testing.assert_array_equal(plain, same)
    x = script.clean_seasonal(np.random.default_rng(6), 256, 768)
    x = x - x.mean(1, keepdims=True)
    # Most clean series repeat: some lag up to a third of the length nearly reproduces the series.
    best = np.array([max(np.corrcoef(row[:-lag], row[lag:])[0, 1] for lag in range(2, 256)) for row in x])
    assert np.median(best) > 0.9


@pytest.mark.parametrize("scale", [1, 2, 8])
def test_multi_scale_copies_are_pooled_series(script, pool, monkeypatch, scale):
    """Scale s generates s times as many points and averages each s consecutive ones (msft's down-sampling)."""
    asked = []

    def ramp(rng, pool, n, length, *args):
        asked.append(length)
        return np.tile(np.arange(length, dtype=float), (n, 1))

    monkeypatch.setattr(script, "synthetic_batch", ramp)
    r = recipe(script, patch_sizes=(16,), scales=(scale,), min_tokens=8, max_tokens=8)
    batch = script.masked_batch(np.random.default_rng(3), pool, r)
    x, seen = batch["target"][..., :16].flatten(1), batch["observed_mask"][..., :16].flatten(1)
    assert asked == [8 * 16 * scale]
    expected = torch.arange(8 * 16, dtype=torch.float32) * scale + (scale - 1) / 2  # mean of each block of s
    torch.testing.assert_close(x[seen], expected.expand_as(x)[seen])


def test_long_contexts_keep_the_tokens_per_batch(script, pool):
    r = recipe(script, max_tokens=128, token_sampling="log", tokens_per_batch=256, batch_size=64, patch_sizes=(16,))
    shapes = [script.masked_batch(np.random.default_rng([1, k]), pool, r)["target"].shape[:2] for k in range(12)]
    tokens = [t for _, t in shapes]
    assert max(tokens) > 40 and min(tokens) < 20  # log-uniform over [6, 128]
    for n, t in shapes:
        assert n == max(4, min(64, 256 // t))


def test_series_longer_than_the_pool_are_compositions(script, pool):
    x = script.synthetic_batch(np.random.default_rng(0), pool, 8, 4 * pool.length, s2_share=1.0)
    assert x.shape == (8, 4 * pool.length) and np.isfinite(x).all()


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--scales", "1", "2", "--scale-weights", "1"], "scale-weights"),
        (["--scales", "0"], "scales"),
        (["--min-tokens", "9"], "min-tokens"),
        (["--max-tokens", "600"], "max-seq-len"),
    ],
)
def test_bad_recipe_flags_are_rejected(script, tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        script.parse_args(["--out", str(tmp_path), *TINY, *flags])


def test_cuda_stage_flags(script, tmp_path):
    """The GPU stage's flags parse; without a GPU, --device cuda is refused before any work."""
    args = ["--out", str(tmp_path), *TINY, "--bf16"]
    if torch.cuda.is_available():
        assert script.parse_args([*args, "--device", "cuda"]).bf16
    else:
        with pytest.raises(ValueError, match="CUDA"):
            script.parse_args([*args, "--device", "cuda"])
    assert script.parse_args(args).device == "cpu"


def test_short_horizon_share(script, pool):
    """Share 1: every batch masks 1-3 patches however long the context; share 0 keeps 15-50%."""

    def masked(share):
        r = recipe(script, max_tokens=64, min_tokens=40, short_horizon_share=share, patch_sizes=(16,))
        return [
            int(script.masked_batch(np.random.default_rng([2, k]), pool, r)["prediction_mask"][0].sum())
            for k in range(8)
        ]

    assert all(1 <= n <= 3 for n in masked(1.0))
    assert all(n >= 6 for n in masked(0.0))


# -- issue 33: the broader mix, LSF horizons, batch workers and the GPU stage's dry run ----------------
GPU_STAGE = [
    "--steps",
    "3000",
    "--batch-size",
    "256",
    "--tokens-per-batch",
    "16384",
    "--min-tokens",
    "8",
    "--max-tokens",
    "64",
    "--token-sampling",
    "log",
    "--horizon-sampling",
    "lsf",
    "--max-context",
    "4096",
    "--scales",
    "1",
    "2",
    "--mix",
    "0.5",
    "--val-batches",
    "8",
    "--device",
    "cuda",
    "--bf16",
]


def test_dry_run_trains_two_steps_and_writes_nothing(script, tmp_path):
    """The GPU stage's flags (--device cuda too, on a machine without one): 2 CPU steps with 4 series,
    a checkpoint, a validation snapshot and an export, all in a temporary directory."""
    out = tmp_path / "stage"
    flags = ["--dry-run", "--dry-run-batches", "1", "--dry-run-report", str(tmp_path / "report.json")]
    report = script.main(["--out", str(out), *TINY, *GPU_STAGE, *flags])  # GPU_STAGE's flags win
    assert not out.exists()
    assert report["steps"] == 2 and np.isfinite(report["losses"]).all() and report["device_asked"] == "cuda"
    assert {"state.pt", "model/model.safetensors", "snapshots/step_000002/model.safetensors"} <= set(report["written"])
    assert all(t <= 4 * 64 for t in report["tokens"])  # 4 series of at most 64 tokens, not 16384 tokens
    # The data path is timed on a full-size batch of the command's recipe: many more series than 4.
    assert report["full_batches"]["count"] == 1 and report["full_batches"]["tokens_per_batch"] > 4 * 64
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["command"].endswith(" ".join(flags)) and saved["losses"] == report["losses"]


def test_batches_from_workers_equal_batches_in_process(script, pool):
    r = recipe(script, mix_share=0.5, horizon_sampling="lsf", max_tokens=16, patch_sizes=(32,))
    here = list(script.batches(3, pool, r, range(4, 7)))
    there = list(script.batches(3, pool, r, range(4, 7), workers=2))
    assert len(there) == 3
    for a, b in zip(here, there):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_lsf_horizons_mask_what_the_protocol_predicts(script, pool):
    """Patch 64, no pooling: the masked tokens are ceil(H / 64) for H in 96/192/336/720, the points
    past H in the last patch are unobserved, and the context is at most 4096 steps."""
    r = recipe(script, patch_sizes=(64,), max_tokens=128, token_sampling="log", horizon_sampling="lsf")
    seen_horizons = set()
    for k in range(40):
        batch = script.masked_batch(np.random.default_rng([4, k]), pool, r)
        masked = int(batch["prediction_mask"][0].sum())
        tokens = batch["target"].shape[1]
        assert tokens - masked <= 4096 // 64
        horizon = {2: 96, 3: 192, 6: 336, 12: 720}[masked]  # KeyError: not an LSF horizon
        seen_horizons.add(horizon)
        observed = batch["observed_mask"][:, tokens - masked :, :64].flatten(1)  # (batch, masked * 64)
        assert not observed[:, horizon:].any()
    assert seen_horizons == set(script.LSF_HORIZONS)


def test_lsf_horizons_are_pooled_with_the_series(script, pool):
    r = recipe(script, patch_sizes=(16,), max_tokens=128, scales=(4,), horizon_sampling="lsf", max_context=1024)
    for k in range(10):
        batch = script.masked_batch(np.random.default_rng([5, k]), pool, r)
        masked, tokens = int(batch["prediction_mask"][0].sum()), batch["target"].shape[1]
        assert masked in (2, 3, 6, 12)  # ceil(H / 4 / 16)
        assert (tokens - masked) * 16 * 4 <= 1024


def test_mix_replaces_the_asked_share(script):
    r = recipe(script, mix_share=1.0, mix_weights=(("intermittent", 1.0),))
    x = script.with_mix(np.random.default_rng(0), np.full((16, 256), np.nan), r)
    assert np.isfinite(x).all() and (x >= 0).all() and (x == np.round(x)).all() and (x == 0).mean() > 0.2
    none = script.with_mix(np.random.default_rng(0), np.full((16, 256), np.nan), recipe(script, mix_share=0.0))
    assert np.isnan(none).all()


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--mix-weights", "walk_heldout=1"], "held out"),
        (["--mix-weights", "walk"], "FAMILY=WEIGHT"),
        (["--mix-weights", "ETTh1=1"], "unknown families"),
        (["--mix", "1.5"], "--mix"),
        (["--horizon-sampling", "lsf", "--max-tokens", "40"], "max-tokens"),  # H=720 at patch 16: 45 tokens
    ],
)
def test_bad_mix_flags_are_rejected(script, tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        script.parse_args(["--out", str(tmp_path), *TINY, *flags])
