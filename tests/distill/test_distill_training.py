"""Student, teachers, cache, training loop and command line, on synthetic data (no real data needed)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from einops import rearrange

import msft
from msft.data import Windows
from msft.distill import (
    DistillConfig,
    HookTeacher,
    MLPStudent,
    MSFTTeacher,
    StudentConfig,
    TeacherCache,
    cache_teacher,
    fit_student,
    load_student,
    load_teacher,
    msft_teacher,
    save_teacher,
    teacher_outputs,
)
from msft.protocols import SeasonalNaive, evaluate_lsf
from msft_backbones.toy import ToyForecaster


def noise_windows(n_time=400, context=48, horizon=24, variates=2, seed=0):
    rng = np.random.default_rng(seed)
    return Windows(rng.standard_normal((n_time, variates)).astype(np.float32), context, horizon, stride=3)


# -- student ------------------------------------------------------------------------------------------
def test_student_predict_shapes_and_revin_equivariance():
    torch.manual_seed(0)
    student = MLPStudent(context_length=32, horizon=8, hidden=16, num_layers=2).eval()
    past = torch.randn(5, 40, 3)
    out = student.predict(past, 8)
    assert out.shape == (5, 8, 3)
    assert student.predict(past, 5).shape == (5, 5, 3)
    assert student.features(past).shape == (5, 3, 16)
    # RevIN: an affine change of the input is an affine change of the forecast.
    torch.testing.assert_close(student.predict(3.0 * past + 2.0, 8), 3.0 * out + 2.0, rtol=1e-4, atol=1e-4)
    # channel independence: variate 1 alone gives the same forecast
    torch.testing.assert_close(student.predict(past[:, :, 1:2], 8), out[:, :, 1:2])


def test_student_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    student = MLPStudent(context_length=32, horizon=8, hidden=16, dropout=0.1)
    with torch.no_grad():
        student.affine_weight.fill_(1.5)
    student.save(tmp_path / "s")
    loaded = load_student(tmp_path / "s")
    assert loaded.config == student.config
    past = torch.randn(4, 32, 1)
    torch.testing.assert_close(loaded.predict(past, 8), student.eval().predict(past, 8))


def test_dmlp_student_is_timedistills_decomposed_mlp():
    from msft.distill.student import moving_average

    torch.manual_seed(0)
    student = MLPStudent(context_length=32, horizon=8, hidden=16, moving_avg=5).eval()
    assert student.config.arch == "dmlp"
    x = torch.randn(3, 32)
    # the moving average replicates the ends (k - 1) / 2 = 2 steps, as Autoformer's series_decomp
    padded = torch.cat([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], dim=1)
    torch.testing.assert_close(moving_average(x, 5), torch.stack([padded[:, i : i + 5].mean(1) for i in range(32)], 1))
    with torch.no_grad():  # forward by hand from the student's own layers (eval: BatchNorm's running stats)
        out, feats = student(x)
        loc, scale = x.mean(1, keepdim=True), (x.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
        z = (x - loc) / scale
        trend = moving_average(z, 5)
        h_s, h_t = student.seasonal[0](z - trend), student.trend[0](trend)
        bn_s, bn_t = student.seasonal_norm, student.trend_norm
        norm = lambda h, bn: (h - bn.running_mean) / (bn.running_var + bn.eps).sqrt() * bn.weight + bn.bias  # noqa: E731
        expected = student.seasonal[1](torch.relu(norm(h_s, bn_s))) + student.trend[1](torch.relu(norm(h_t, bn_t)))
    torch.testing.assert_close(feats, h_s + h_t)  # features: before the BatchNorm
    torch.testing.assert_close(out, expected * scale + loc)
    assert student.seasonal_norm.num_features == 1
    mlp = MLPStudent(context_length=32, horizon=8, hidden=16, arch="mlp")
    assert not hasattr(mlp, "seasonal") and mlp.predict(torch.randn(2, 32, 1), 8).shape == (2, 8, 1)


def test_dmlp_batch_norm_per_channel_and_old_students_load_as_mlps(tmp_path):
    import json

    student = MLPStudent(context_length=32, horizon=8, hidden=16, channels=3).train()
    assert student.predict(torch.randn(4, 32, 3), 8).shape == (4, 8, 3)
    assert student.seasonal_norm.running_mean.shape == (3,)
    with pytest.raises(ValueError, match="channels=3"):
        student.predict(torch.randn(4, 32, 2), 8)
    old = MLPStudent(context_length=32, horizon=8, hidden=16, arch="mlp")
    old.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "student_config.json").read_text())
    for key in ("arch", "moving_avg", "channels"):  # a student saved before these existed
        del meta["config"][key]
    (tmp_path / "old" / "student_config.json").write_text(json.dumps(meta))
    assert load_student(tmp_path / "old").config.arch == "mlp"


@pytest.mark.parametrize(
    "options, match",
    [
        ({"context_length": 0, "horizon": 8}, "context_length"),
        ({"context_length": 8, "horizon": 8, "hidden": 1.5}, "hidden"),
        ({"context_length": 8, "horizon": 8, "dropout": 1.0}, "dropout"),
        ({"context_length": 8, "horizon": 8, "arch": "dlinear"}, "arch"),
        ({"context_length": 8, "horizon": 8, "moving_avg": 24}, "moving_avg"),
    ],
)
def test_student_config_rejects_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        StudentConfig(**options)


def test_student_rejects_bad_input(tmp_path):
    student = MLPStudent(context_length=32, horizon=8)
    with pytest.raises(ValueError, match="at least 32"):
        student.predict(torch.randn(2, 16, 1), 8)
    with pytest.raises(ValueError, match="horizon=9"):
        student.predict(torch.randn(2, 32, 1), 9)
    with pytest.raises(ValueError, match="batch, time, variate"):
        student.predict(torch.randn(2, 32), 8)
    with pytest.raises(FileNotFoundError, match="MLPStudent.save"):
        load_student(tmp_path)


# -- teachers and cache -------------------------------------------------------------------------------
def tiny_msft_teacher():
    torch.manual_seed(0)
    return msft.wrap(ToyForecaster(d_model=16, num_layers=2, patch_size=4), scales=[1, 2]).eval()


def test_msft_teacher_features_are_the_finest_scales_pooled_hidden_states():
    model = tiny_msft_teacher()
    with torch.no_grad():  # non-zero aggregation, so the last layer's raw output and msft's hidden differ
        for p in model.msft_parameters().values():
            p.add_(0.1 * torch.randn_like(p))
    past = torch.randn(3, 48, 2)
    with torch.no_grad():
        forecast, feats = teacher_outputs(model, past, 24)
        out = model.forward_features(past, 24)
    torch.testing.assert_close(forecast, model.predict(past, 24))
    assert feats.shape == (3, 2, 16)
    expected = rearrange(out.scales[0].hidden.mean(1), "(b v) d -> b v d", v=2)  # every token holds data here
    torch.testing.assert_close(feats, expected)
    assert isinstance(msft_teacher(model), MSFTTeacher)
    with pytest.raises(ValueError, match="msft.MSFTModel"):
        msft_teacher(SeasonalNaive(12))


def test_teacher_without_features_and_custom_features():
    past = torch.randn(4, 48, 1)
    forecast, feats = teacher_outputs(SeasonalNaive(12), past, 24)
    assert feats is None and forecast.shape == (4, 24, 1)

    class WithFeatures:
        def predict(self, past_target, horizon):
            return past_target[:, -horizon:]

        def features(self, past_target):
            return past_target[:, -5:, 0]  # (batch * variate, 5)

    _, feats = teacher_outputs(WithFeatures(), past, 24)
    assert feats.shape == (4, 1, 5)
    with pytest.raises(ValueError, match="forecast of shape"):
        teacher_outputs(lambda p: p[:, :3], past, 24)
    with pytest.raises(ValueError, match="layer must be"):
        HookTeacher(SeasonalNaive(12), "layers.1")


def test_cache_teacher_aligns_with_windows_and_round_trips(tmp_path):
    windows = noise_windows()
    model = tiny_msft_teacher()
    path = tmp_path / "cache.safetensors"
    cache = cache_teacher(model, windows, 24, batch_size=50, path=path)
    assert cache.forecast.shape == (len(windows), 24, 1) and cache.features.shape == (len(windows), 1, 16)
    with torch.no_grad():
        torch.testing.assert_close(cache.forecast[7:9], model.predict(windows[7:9]["past_target"], 24))
    assert path.is_file()
    again = cache_teacher(None, windows, 24, path=path)  # loaded, the teacher is not called
    torch.testing.assert_close(again.features, cache.features)
    with pytest.raises(ValueError, match="holds"):
        cache_teacher(None, noise_windows(n_time=300), 24, path=path)


def test_save_and_load_teacher(tmp_path):
    model = tiny_msft_teacher()
    with torch.no_grad():
        for p in model.msft_parameters().values():
            p.add_(0.05 * torch.randn_like(p))
    save_teacher(model, tmp_path / "t")
    loaded = load_teacher(tmp_path / "t")
    past = torch.randn(2, 48, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(past, 24), model.predict(past, 24))


# -- training -----------------------------------------------------------------------------------------
def test_zero_weights_train_exactly_like_plain_mse():
    windows = noise_windows()
    garbage = TeacherCache(torch.randn(len(windows), 24, 1) * 100, torch.randn(len(windows), 1, 5))
    torch.manual_seed(0)
    distilled = MLPStudent(context_length=48, horizon=24, hidden=16)
    reference = MLPStudent(context_length=48, horizon=24, hidden=16)
    reference.load_state_dict(distilled.state_dict())
    fit_student(distilled, windows, DistillConfig(alpha=0.0, beta=0.0), garbage, epochs=2, batch_size=32, seed=3)

    # the documented loop, written out with plain MSE
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        order = torch.randperm(len(windows), generator=generator)
        for start in range(0, len(windows), 32):
            batch = windows[order[start : start + 32]]
            pred, _ = reference(batch["past_target"][:, :, 0])
            loss = (pred - batch["future_target"][:, :, 0]).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for (name, a), b in zip(distilled.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


class SineWindows:
    """Contexts: a sine of period 12 with a random phase plus noise; futures: pure noise (no period)."""

    def __init__(self, n, context=48, horizon=48, seed=0):
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(context + horizon, dtype=torch.float32)
        phase = torch.rand(n, 1, generator=g) * 2 * math.pi
        sine = torch.sin(2 * math.pi * t / 12 + phase)  # (n, time)
        noise = 0.3 * torch.randn(n, context + horizon, generator=g)
        past = (sine + noise)[:, :context]
        future = noise[:, context:]
        self.data = {
            "past_target": past[..., None],
            "future_target": future[..., None],
            "past_observed": torch.ones_like(past[..., None], dtype=torch.bool),
            "future_observed": torch.ones_like(future[..., None], dtype=torch.bool),
        }

    def __len__(self):
        return self.data["past_target"].shape[0]

    def __getitem__(self, index):
        return {key: value[index] for key, value in self.data.items()}


def dominant_bin(forecast):
    amplitude = torch.fft.rfft(forecast[..., 0], dim=-1).abs()[:, 1:].mean(0)
    return int(amplitude.argmax()) + 1, amplitude


def test_student_learns_the_periodicity_of_a_fixed_teacher():
    train, test = SineWindows(512, seed=0), SineWindows(64, seed=1)
    teacher = SeasonalNaive(12)  # continues the period-12 cycle of the context
    cache = cache_teacher(teacher, train, 48)
    students = {}
    for name, cfg in (("distilled", DistillConfig(beta=0.0)), ("plain", DistillConfig(alpha=0.0, beta=0.0))):
        torch.manual_seed(0)
        students[name] = MLPStudent(context_length=48, horizon=48, hidden=64)
        fit_student(students[name], train, cfg, cache, epochs=30, batch_size=64, lr=3e-3)
    with torch.no_grad():
        bin_d, amp_d = dominant_bin(students["distilled"].predict(test[:]["past_target"], 48))
        _, amp_p = dominant_bin(students["plain"].predict(test[:]["past_target"], 48))
    assert bin_d == 48 // 12  # the teacher's period: 48 steps / 12 = frequency bin 4
    assert amp_d[3] > 5 * amp_p[3]  # the plain student has no reason to oscillate


def test_fit_student_validates_its_inputs():
    windows = noise_windows()
    student = MLPStudent(context_length=48, horizon=24, hidden=8)
    with pytest.raises(ValueError, match="teacher cache"):
        fit_student(student, windows, DistillConfig())
    no_features = TeacherCache(torch.zeros(len(windows), 24, 1))
    with pytest.raises(ValueError, match="no features"):
        fit_student(student, windows, DistillConfig(), no_features)
    with pytest.raises(ValueError, match="holds"):
        fit_student(student, windows, DistillConfig(beta=0), TeacherCache(torch.zeros(3, 24, 1)))
    with pytest.raises(ValueError, match="epochs"):
        fit_student(student, windows, epochs=0)


def test_fit_with_features_trains_a_regressor_and_keeps_the_best_epoch():
    windows, val = noise_windows(seed=0), noise_windows(seed=1)
    cache = cache_teacher(tiny_msft_teacher(), windows, 24)
    student = MLPStudent(context_length=48, horizon=24, hidden=8)
    result = fit_student(student, windows, DistillConfig(), cache, epochs=3, batch_size=64, val_windows=val)
    # TimeDistill's two-layer regressor: Linear(teacher 16 -> student 8) -> ReLU -> Linear(8 -> 8)
    first, act, second = result.regressor
    assert (first.in_features, first.out_features, second.in_features, second.out_features) == (16, 8, 8, 8)
    assert isinstance(act, torch.nn.ReLU)
    linear = fit_student(
        MLPStudent(context_length=48, horizon=24, hidden=8),
        windows,
        DistillConfig(regressor="linear"),
        cache,
        epochs=1,
        batch_size=64,
    )
    assert isinstance(linear.regressor, torch.nn.Linear)
    assert {"mse", "prediction", "feature", "total"} <= set(result.history[0])
    assert result.best_epoch == int(np.argmin(result.val_mse))


# -- the protocol API and the command line ------------------------------------------------------------
def synthetic_csv(path, rows=1200):
    t = np.arange(rows)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2020-01-01", periods=rows, freq="h"),
            "a": np.sin(2 * np.pi * t / 24) + 0.1 * np.random.default_rng(0).standard_normal(rows),
            "OT": np.cos(2 * np.pi * t / 24) + 0.01 * t,
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_student_runs_through_evaluate_lsf(tmp_path):
    csv = synthetic_csv(tmp_path / "toy.csv")
    student = MLPStudent(context_length=96, horizon=24).eval()
    result = evaluate_lsf(student, str(csv), horizon=24, context_length=96, mode="S")
    assert result["windows"] > 0 and math.isfinite(result["mse"])


def test_command_line_writes_results_and_a_loadable_student(tmp_path):
    from msft_runner.distill_cli import main

    csv = synthetic_csv(tmp_path / "toy.csv")
    out = tmp_path / "out"
    assert (
        main(
            [
                "--teacher",
                "seasonal_naive:24",
                "--dataset",
                str(csv),
                "--horizon",
                "24",
                "--context-length",
                "96",
                "--epochs",
                "2",
                "--hidden",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert [r["model"] for r in result["rows"]] == ["teacher", "student (distilled)", "student (no distillation)"]
    assert result["setup"]["distill"]["beta"] == 0.0  # seasonal naive gives no features
    assert result["command"].startswith("msft-distill --teacher seasonal_naive:24")
    assert load_student(out / "student").config.horizon == 24
    with pytest.raises(ValueError, match="--teacher"):
        main(["--teacher", "nope", "--out", str(out)])


def test_run_distill_on_real_etth1(data_dir):
    from msft_runner.distill import markdown_table, run_distill

    result = run_distill(
        SeasonalNaive(24),
        "ETTh1",
        96,
        336,
        "S",
        data_dir,
        train_stride=64,
        student={"hidden": 32},
        epochs=1,
        throughput_batch=32,
    )
    teacher, distilled, plain = result["rows"]
    assert teacher["windows"] == distilled["windows"] == 7 * (2880 - 96 + 1)  # the full test split, stride 1
    assert teacher["mse"] == pytest.approx(evaluate_lsf(SeasonalNaive(24), "ETTh1", 96, 336, "S", data_dir)["mse"])
    # DMLP: two branches Linear(336, 32) -> BatchNorm1d(1) -> Linear(32, 96), plus the RevIN affine
    assert distilled["params"] == plain["params"] == 2 * (336 * 32 + 32 + 2 + 32 * 96 + 96) + 2
    assert "| teacher |" in markdown_table(result)


def test_run_distill_variants_share_the_initialisation(tmp_path):
    """A variant identical to the main distilled config trains to the same student, step for step."""
    from msft_runner.distill import run_distill

    csv = synthetic_csv(tmp_path / "toy.csv")
    same = DistillConfig(beta=0.0)
    result = run_distill(
        SeasonalNaive(24),
        str(csv),
        24,
        96,
        "S",
        distill=same,
        epochs=2,
        student={"hidden": 16},
        throughput_batch=8,
        variants={"same": same, "summed KL": DistillConfig(beta=0.0, period_reduction="sum")},
    )
    rows = {row["model"]: row for row in result["rows"]}
    assert list(rows) == ["teacher", "student (distilled)", "student (no distillation)", "same", "summed KL"]
    assert rows["same"]["mse"] == rows["student (distilled)"]["mse"]
    assert rows["summed KL"]["mse"] != rows["student (distilled)"]["mse"]
    assert result["setup"]["variants"]["summed KL"]["period_reduction"] == "sum"
    assert set(result["setup"]["best_epoch"]) == set(rows) - {"teacher"}
