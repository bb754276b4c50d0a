"""TimeDistill's training recipe (lr schedule, early stopping), the channel-independent teacher and the
benchmark's search: invariants on synthetic data (no real data, seconds)."""

import numpy as np
import pytest
import torch

from msft.data import Windows
from msft.distill import (
    ChannelIndependent,
    DistillConfig,
    MLPStudent,
    StudentConfig,
    cache_teacher,
    epoch_lr,
    evaluate_mse,
    fit_student,
)
from msft.protocols import SeasonalNaive


def windows(n_time=300, variates=3, seed=0, stride=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n_time)[:, None]
    values = np.sin(2 * np.pi * t / 12) + 0.5 * rng.standard_normal((n_time, variates))
    return Windows(values.astype(np.float32), 48, 24, stride=stride, mode="M")


def test_type1_schedule_halves_the_learning_rate_after_every_epoch():
    assert [epoch_lr(0.01, e, "type1") for e in range(4)] == [0.01, 0.005, 0.0025, 0.00125]
    assert epoch_lr(0.01, 7, "constant") == 0.01
    with pytest.raises(ValueError, match="lr_schedule"):
        epoch_lr(0.01, 0, "cosine")


def test_early_stopping_keeps_the_best_validation_epoch_and_stops_after_patience(monkeypatch):
    import msft.distill.train as train

    script = iter([0.9, 0.5, 0.7, 0.4, 0.6, 0.8, 0.45, 0.3, 0.2])
    kept: dict[int, dict] = {}
    real_evaluate = train.evaluate_mse

    def scripted(student, val):
        real_evaluate(student, val)  # the real call still runs (and must not break training)
        epoch = len(kept)
        kept[epoch] = {k: v.clone() for k, v in student.state_dict().items()}
        return next(script)

    monkeypatch.setattr(train, "evaluate_mse", scripted)
    torch.manual_seed(0)
    student = MLPStudent(StudentConfig(48, 24, hidden=8, channels=3))
    result = fit_student(
        student, windows(), epochs=20, batch_size=16, lr=1e-2, val_windows=windows(seed=1), patience=3,
        lr_schedule="type1",
    )  # fmt: skip
    # epochs 0..6 ran: the best (0.4) at epoch 3, then 3 epochs without a lower value -> stop
    assert result.val_mse == [0.9, 0.5, 0.7, 0.4, 0.6, 0.8, 0.45]
    assert result.epochs_run == 7 and result.stopped_early
    assert result.best_epoch == 3 != result.epochs_run - 1
    assert result.lrs == [1e-2 * 0.5**e for e in range(7)]
    for name, value in student.state_dict().items():  # the weights of the best epoch, not the last
        torch.testing.assert_close(value, kept[3][name], msg=name)


def test_without_patience_every_epoch_runs_and_patience_needs_validation():
    student = MLPStudent(StudentConfig(48, 24, hidden=8, channels=3))
    result = fit_student(student, windows(), epochs=3, batch_size=64, val_windows=windows(seed=1))
    assert result.epochs_run == 3 and not result.stopped_early and len(result.val_mse) == 3
    with pytest.raises(ValueError, match="patience needs val_windows"):
        fit_student(student, windows(), epochs=2, patience=2)
    with pytest.raises(ValueError, match="patience"):
        fit_student(student, windows(), epochs=2, patience=0, val_windows=windows(seed=1))


def test_every_training_window_is_visited_once_per_epoch():
    """Stride-1 windows are trained on, all of them: each epoch's batches cover every index once."""
    train = windows(stride=1)
    assert len(train) == 300 - 48 - 24 + 1  # stride 1: a window at every time step

    seen: list[torch.Tensor] = []

    class Recording:
        def __len__(self):
            return len(train)

        def __getitem__(self, index):
            seen.append(torch.as_tensor(index))
            return train[index]

    fit_student(MLPStudent(StudentConfig(48, 24, hidden=8, channels=3)), Recording(), epochs=2, batch_size=50)
    visited = torch.cat(seen)
    assert len(visited) == 2 * len(train)
    for epoch in visited.split(len(train)):
        assert sorted(epoch.tolist()) == list(range(len(train)))


def test_channel_independent_teacher_feeds_each_channel_as_its_own_series():
    class PerSeries:
        """A univariate forecaster that refuses more than one variate (as a mode-S teacher)."""

        def predict(self, past, horizon):
            assert past.shape[2] == 1
            return past[:, -horizon:] * 2

        def features(self, past):
            return past[:, -4:, 0]  # (series, 4)

    past = torch.randn(5, 48, 3)
    teacher = ChannelIndependent(PerSeries())
    forecast = teacher.predict(past, 24)
    torch.testing.assert_close(forecast, past[:, -24:] * 2)
    _, feats = teacher.predict_with_features(past, 24)
    assert feats.shape == (15, 4)
    torch.testing.assert_close(feats.reshape(5, 3, 4)[:, 1], past[:, -4:, 1])
    cache = cache_teacher(teacher, windows(), 24, batch_size=32)
    assert cache.forecast.shape == (len(windows()), 24, 3) and cache.features.shape == (len(windows()), 3, 4)


def test_per_channel_student_trains_on_multivariate_windows_with_a_teacher():
    train, val = windows(), windows(seed=1)
    cache = cache_teacher(ChannelIndependent(SeasonalNaive(12)), train, 24)
    student = MLPStudent(StudentConfig(48, 24, hidden=16, channels=3))
    result = fit_student(
        student, train, DistillConfig(beta=0.0), cache, epochs=3, batch_size=32, lr=1e-2, val_windows=val,
        lr_schedule="type1", patience=5,
    )  # fmt: skip
    assert min(result.val_mse) == pytest.approx(evaluate_mse(student, val), rel=1e-6)


def test_the_benchmark_search_gives_both_students_as_many_candidates():
    bench = pytest.importorskip("benchmarks.bench_distill")
    assert len(bench.DISTILLED_GRID) == len(bench.PLAIN_GRID) >= 2
    assert all(alpha == beta == 0 for _, alpha, beta in bench.PLAIN_GRID)
    assert all(alpha > 0 and beta > 0 for _, alpha, beta in bench.DISTILLED_GRID)
    assert len(set(bench.DISTILLED_GRID)) == len(bench.DISTILLED_GRID)
    assert len({lr for lr, _, _ in bench.PLAIN_GRID}) == len(bench.PLAIN_GRID)
    assert bench.TRAIN_STRIDE["ETTh1"] == bench.TRAIN_STRIDE["ETTh2"] == 1  # TimeDistill's stride-1 windows


def test_the_benchmark_keeps_only_sections_distilled_from_the_current_weights():
    # a teacher run is rebuilt on today's backbone weights (load_run), so a section whose teacher was
    # finetuned from other tiny MOIRAI weights must not survive into the regenerated report
    bench = pytest.importorskip("benchmarks.bench_distill")
    now = bench.weights_tag("tiny_moirai")
    assert now.startswith("tiny_moirai-") and now == bench.weights_tag("tiny_moirai")
    section = {"search": {}, "teacher": {"backbone": "tiny_moirai", "weights": now}}
    stale = {"search": {}, "teacher": {"backbone": "tiny_moirai", "weights": "tiny_moirai-000000000000"}}
    unlabelled = {"search": {}, "teacher": {"run_dir": "runs/distill_teachers/ETTh1_H96"}}  # before weights tags
    random_init = {"search": {}, "teacher": {"backbone": "time_dpd_tiny", "weights": "time_dpd_tiny"}}
    kept = bench.current({"ETTh1": section, "ETTh2": stale, "ETTm1": unlabelled, "x": random_init})
    assert list(kept) == ["ETTh1", "x"]
    assert bench.report_key("ETTh1", "tiny_moirai") == "ETTh1" != bench.report_key("ETTh1", "time_dpd_tiny")
