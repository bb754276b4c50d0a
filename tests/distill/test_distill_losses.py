"""The distillation losses against hand computations on small tensors."""

import math

import pytest
import torch

from msft.distill import DistillConfig, distillation_loss, period_loss, scale_loss
from msft.losses import masked_mse


def hand_amplitudes(x: list[float]) -> list[float]:
    """|DFT| at bins 1 .. n//2 (DC dropped), written out from the definition."""
    n = len(x)
    amps = []
    for k in range(1, n // 2 + 1):
        re = sum(v * math.cos(2 * math.pi * k * t / n) for t, v in enumerate(x))
        im = -sum(v * math.sin(2 * math.pi * k * t / n) for t, v in enumerate(x))
        amps.append(math.hypot(re, im))
    return amps


def hand_softmax(values: list[float], tau: float) -> list[float]:
    exps = [math.exp(v / tau) for v in values]
    return [e / sum(exps) for e in exps]


def hand_period(student: list[float], teacher: list[float], tau: float) -> float:
    p = hand_softmax(hand_amplitudes(teacher), tau)  # the target distribution
    q = hand_softmax(hand_amplitudes(student), tau)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


STUDENT = [1.0, 2.0, 0.0, 1.0, 3.0, 0.0]
TEACHER = [0.0, 1.0, 0.0, -1.0, 2.0, 2.0]


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_period_loss_equals_hand_kl(tau):
    s, t = torch.tensor([STUDENT], dtype=torch.float64), torch.tensor([TEACHER], dtype=torch.float64)
    kl = hand_period(STUDENT, TEACHER, tau)
    assert period_loss(s, t, tau, reduction="sum").item() == pytest.approx(kl, rel=1e-10)
    # The default: the KL per frequency bin; 6 points -> rFFT bins 0..3, DC dropped -> 3 bins.
    assert period_loss(s, t, tau).item() == pytest.approx(kl / 3, rel=1e-10)
    assert period_loss(s, t, tau, reduction="mean").item() == pytest.approx(kl / 3, rel=1e-10)


def test_config_period_reduction_reaches_the_loss():
    torch.manual_seed(2)
    pred, target, teacher = torch.randn(3, 16), torch.randn(3, 16), torch.randn(3, 16)
    summed, _ = distillation_loss(pred, target, DistillConfig(beta=0, scale=False, period_reduction="sum"), teacher)
    mean, _ = distillation_loss(pred, target, DistillConfig(beta=0, scale=False), teacher)
    mse = ((pred - target) ** 2).mean()
    assert (summed - mse).item() == pytest.approx(8 * (mean - mse).item(), rel=1e-5)  # 16 points -> 8 non-DC bins
    with pytest.raises(ValueError, match="reduction"):
        period_loss(pred, teacher, reduction="max")


def test_period_loss_averages_over_leading_axes():
    other_s, other_t = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0], [2.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    s = torch.tensor([[STUDENT], [other_s]], dtype=torch.float64)  # (2, 1, 6)
    t = torch.tensor([[TEACHER], [other_t]], dtype=torch.float64)
    expected = (hand_period(STUDENT, TEACHER, 0.5) + hand_period(other_s, other_t, 0.5)) / 2
    assert period_loss(s, t, reduction="sum").item() == pytest.approx(expected, rel=1e-10)
    assert period_loss(s, t).item() == pytest.approx(expected / 3, rel=1e-10)


def test_period_loss_drops_the_dc_bin():
    s, t = torch.tensor([STUDENT]), torch.tensor([TEACHER])
    base = period_loss(s, t)
    # A level shift changes only the DC bin: the loss must not see it (it would, strongly, with DC kept).
    assert period_loss(s + 7.0, t).item() == pytest.approx(base.item(), abs=1e-5)
    assert period_loss(s, t - 3.0).item() == pytest.approx(base.item(), abs=1e-5)
    assert period_loss(s, s + 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_period_loss_kl_direction_teacher_is_target():
    s, t = torch.tensor([STUDENT], dtype=torch.float64), torch.tensor([TEACHER], dtype=torch.float64)
    amp_s = torch.fft.rfft(s).abs()[..., 1:]
    amp_t = torch.fft.rfft(t).abs()[..., 1:]
    # F.kl_div(input=log q, target=log p, log_target=True) = sum p (log p - log q) = KL(p || q).
    reference = torch.nn.functional.kl_div(
        torch.log_softmax(amp_s / 0.5, -1), torch.log_softmax(amp_t / 0.5, -1), log_target=True, reduction="sum"
    )
    assert period_loss(s, t, reduction="sum").item() == pytest.approx(reference.item(), rel=1e-10)
    assert period_loss(s, t).item() != pytest.approx(period_loss(t, s).item(), rel=1e-3)  # KL is not symmetric


def test_period_loss_mean_matches_kl_div_mean_over_bins_and_series():
    """The default equals the TimeDistill code's ``F.kl_div(log q, p, reduction="mean")``: a mean over
    every (series, bin) element."""
    torch.manual_seed(3)
    s, t = torch.randn(5, 24, dtype=torch.float64), torch.randn(5, 24, dtype=torch.float64)
    log_q = torch.log_softmax(torch.fft.rfft(s).abs()[..., 1:] / 0.5, -1)
    p = torch.softmax(torch.fft.rfft(t).abs()[..., 1:] / 0.5, -1)
    reference = torch.nn.functional.kl_div(log_q, p, reduction="mean")
    assert period_loss(s, t).item() == pytest.approx(reference.item(), rel=1e-10)


def test_scale_loss_equals_hand_pooling():
    s = [1.0, 3.0, 2.0, 2.0, 0.0, 4.0, 5.0, 1.0]
    t = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]

    def pool(x, f):
        return [sum(x[i : i + f]) / len(x[i : i + f]) for i in range(0, len(x), f)]

    def mse(a, b):
        return sum((u - v) ** 2 for u, v in zip(a, b)) / len(a)

    expected = sum(mse(pool(s, f), pool(t, f)) for f in (1, 2, 4, 8)) / 4
    assert scale_loss(torch.tensor([s]), torch.tensor([t])).item() == pytest.approx(expected, rel=1e-6)
    expected_24 = (mse(pool(s, 2), pool(t, 2)) + mse(pool(s, 4), pool(t, 4))) / 2
    assert scale_loss(torch.tensor([s]), torch.tensor([t]), (2, 4)).item() == pytest.approx(expected_24, rel=1e-6)


def test_scale_loss_partial_window_averages_its_own_points():
    s, t = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0] * 6
    # factor 4 on 6 points: windows [1, 2, 3, 4] and [5, 6] -> means 2.5 and 5.5
    partial = scale_loss(torch.tensor([s]), torch.tensor([t]), (4,), pooling="partial")
    assert partial.item() == pytest.approx((2.5**2 + 5.5**2) / 2)


def test_scale_loss_drop_is_timedistills_repeated_avgpool_by_two():
    """TimeDistill pools by AvgPool1d(2) three times (each drops an odd last step) and averages the four
    MSEs; by hand on 13 steps: 13 -> 6 -> 3 -> 1 windows."""
    s = [1.0, 3.0, 2.0, 2.0, 0.0, 4.0, 5.0, 1.0, 7.0, -1.0, 2.0, 6.0, 9.0]
    t = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 0.0, 2.0, -4.0]

    def halve(x):
        return [(x[i] + x[i + 1]) / 2 for i in range(0, len(x) - 1, 2)]

    def mse(a, b):
        return sum((u - v) ** 2 for u, v in zip(a, b)) / len(a)

    expected, a, b = mse(s, t), s, t
    for _ in range(3):
        a, b = halve(a), halve(b)
        expected += mse(a, b)
    assert len(a) == 1
    got = scale_loss(torch.tensor([s]), torch.tensor([t]))  # default: factors 1, 2, 4, 8, pooling "drop"
    assert got.item() == pytest.approx(expected / 4, rel=1e-6)
    # AvgPool1d itself (the reference's layer), applied three times
    pool, x, y, total = torch.nn.AvgPool1d(2), torch.tensor([[s]]), torch.tensor([[t]]), 0.0
    for level in range(4):
        total += float((x - y).square().mean())
        x, y = (pool(x), pool(y)) if level < 3 else (x, y)
    assert got.item() == pytest.approx(total / 4, rel=1e-6)
    with pytest.raises(ValueError, match="shorter than the pooling factor 8"):
        scale_loss(torch.zeros(1, 7), torch.zeros(1, 7))


def test_distillation_loss_combines_the_terms_and_switches():
    torch.manual_seed(0)
    pred, target, teacher = torch.randn(3, 16), torch.randn(3, 16), torch.randn(3, 16)
    feats, teacher_feats = torch.randn(3, 8), torch.randn(3, 8)
    cfg = DistillConfig(alpha=0.3, beta=2.0, tau=0.7)
    total, parts = distillation_loss(pred, target, cfg, teacher, feats, teacher_feats)
    on_pred = period_loss(pred, teacher, 0.7) + scale_loss(pred, teacher)
    on_feat = period_loss(feats, teacher_feats, 0.7) + scale_loss(feats, teacher_feats)
    expected = ((pred - target) ** 2).mean() + 0.3 * on_pred + 2.0 * on_feat
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["prediction"] == pytest.approx(on_pred.item(), rel=1e-6)

    only_scale, _ = distillation_loss(pred, target, DistillConfig(period=False), teacher, feats, teacher_feats)
    expected = ((pred - target) ** 2).mean() + scale_loss(pred, teacher) + scale_loss(feats, teacher_feats)
    assert only_scale.item() == pytest.approx(expected.item(), rel=1e-6)
    only_period, _ = distillation_loss(pred, target, DistillConfig(scale=False, beta=0), teacher)
    expected = ((pred - target) ** 2).mean() + period_loss(pred, teacher)
    assert only_period.item() == pytest.approx(expected.item(), rel=1e-6)


def test_zero_weights_is_exactly_masked_mse():
    torch.manual_seed(1)
    pred, target = torch.randn(4, 12, requires_grad=True), torch.randn(4, 12)
    observed = torch.rand(4, 12) > 0.3
    total, parts = distillation_loss(pred, target, DistillConfig(alpha=0, beta=0), observed=observed)
    assert torch.equal(total, masked_mse(pred, target, observed))
    assert set(parts) == {"mse", "total"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("alpha", -1.0),
        ("beta", "1"),
        ("tau", 0.0),
        ("period", 1),
        ("scale_factors", (0, 2)),
        ("scale_factors", ()),
        ("period_reduction", "batchmean"),
        ("scale_pooling", "ceil"),
        ("regressor", "conv"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        DistillConfig(**{field: value})


def test_losses_reject_mismatched_shapes_and_missing_teacher():
    with pytest.raises(ValueError, match="equal shapes"):
        period_loss(torch.zeros(2, 8), torch.zeros(2, 9))
    with pytest.raises(ValueError, match="teacher_prediction"):
        distillation_loss(torch.zeros(2, 8), torch.zeros(2, 8), DistillConfig(beta=0))
    with pytest.raises(ValueError, match="features"):
        distillation_loss(torch.zeros(2, 8), torch.zeros(2, 8), DistillConfig(alpha=0), torch.zeros(2, 8))
