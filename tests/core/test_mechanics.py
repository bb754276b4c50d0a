"""Intra-scale attention, aggregation, fusion and the ablation switches."""

import pytest
import torch

import msft
from msft.layers import CrossScaleAggregation
from tests.conftest import float32_tolerance

from .test_wrap import HORIZON, make_backbone, randomize_msft, sine_batch, train


def _perturb_scale_adapter(model, scale_idx):
    with torch.no_grad():
        model.backbone.in_proj.msft_adapter_weight[scale_idx].normal_(0, 0.5)


@pytest.mark.parametrize("impl", ["blocked", "dense"])
def test_other_scales_do_not_reach_scale_one_without_aggregation(impl):
    """Changing only scale 2's tokens leaves scale 1's output untouched (intra-scale attention)."""
    past, _ = sine_batch()
    model = msft.wrap(make_backbone(), scales=[1, 2, 4], c2f=False, f2c=False, attention_impl=impl)
    before = model.predict_scales(past, HORIZON)
    _perturb_scale_adapter(model, 1)
    after = model.predict_scales(past, HORIZON)
    # Bitwise: the other scales' tokens go through the same ops on the same shapes; scale 1's
    # reach them only as masked keys (weight exactly 0) in the dense case.
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.allclose(after[1], before[1])


def test_without_intra_scale_attention_scales_do_mix():
    """The same perturbation leaks into scale 1 when tokens attend across scales (the test above can fail)."""
    past, _ = sine_batch()
    model = msft.wrap(make_backbone(), scales=[1, 2, 4], c2f=False, f2c=False, intra_scale_attention=False)
    before = model.predict_scales(past, HORIZON)
    _perturb_scale_adapter(model, 1)
    assert not torch.allclose(model.predict_scales(past, HORIZON)[0], before[0])


def test_aggregation_by_hand():
    """C2F repeats the coarse map onto the fine tokens it covers; F2C averages the fine map onto coarse."""
    agg = CrossScaleAggregation([1, 2], d_model=1, c2f=True, f2c=True)
    with torch.no_grad():
        for phi in (agg.msft_c2f[0], agg.msft_f2c[0]):
            phi.weight.fill_(1.0)
            phi.bias.zero_()
    # fine: 3 context tokens + 2 horizon tokens; coarse: 2 context + 1 horizon (layout: prefix, ctx, hor)
    fine = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0]).view(1, 5, 1)
    coarse = torch.tensor([100.0, 200.0, 1000.0]).view(1, 3, 1)
    new_fine, new_coarse = agg([fine, coarse], [(0, 3, 2), (0, 2, 1)])
    # context is aligned at its right end: coarse ctx [100, 200] covers fine ctx [(pad, 1), (2, 3)]
    # horizon at its left end: coarse hor [1000] covers fine hor [10, 20]
    assert new_fine.flatten().tolist() == [1 + 100, 2 + 200, 3 + 200, 10 + 1000, 20 + 1000]
    assert new_coarse.flatten().tolist() == [100 + 1.0, 200 + 2.5, 1000 + 15.0]


def test_low_rank_aggregation_is_identity_at_init_and_smaller():
    past, _ = sine_batch()
    full = msft.wrap(make_backbone(), scales=[1, 2, 4])
    low = msft.wrap(make_backbone(), scales=[1, 2, 4], aggregation_rank=4)
    count = lambda m: sum(p.numel() for p in m.msft_aggregation.parameters())  # noqa: E731
    assert count(low) < count(full) / 2
    torch.testing.assert_close(low.predict(past, HORIZON), full.predict(past, HORIZON), rtol=0, atol=0)


@pytest.mark.parametrize("coarse_paths", ["repeat", "residual"])
def test_fusion_upsamples_and_weights_scale_forecasts(coarse_paths):
    past, _ = sine_batch()
    model = msft.wrap(make_backbone(), scales=[1, 2, 4], coarse_paths=coarse_paths)
    with torch.no_grad():
        model.msft_fusion.msft_fusion_logits.copy_(torch.tensor([0.3, -0.2, 0.1]))
    per_scale = model.predict_scales(past, HORIZON)
    w = model.fusion_weights
    fine = per_scale[0][:, :HORIZON]  # (b, H, v)

    def residual(s: int) -> torch.Tensor:  # scale 1's deviation from its own s-step block means, by hand
        blocks = [fine[:, i : i + s] - fine[:, i : i + s].mean(1, keepdim=True) for i in range(0, HORIZON, s)]
        return torch.cat(blocks, dim=1) if coarse_paths == "residual" else torch.zeros_like(fine)

    expected = sum(
        w[i] * (p.repeat_interleave(s, dim=1)[:, :HORIZON] + residual(s))
        for i, (s, p) in enumerate(zip([1, 2, 4], per_scale))
    )
    torch.testing.assert_close(model.predict(past, HORIZON), expected)


def test_fusion_prior_and_uniform_fusion():
    model = msft.wrap(make_backbone(), scales=[1, 2], fusion_prior=2.0)
    assert model.fusion_weights[0] > 0.85
    fixed = msft.wrap(make_backbone(), scales=[1, 2, 4], learned_fusion=False)
    torch.testing.assert_close(fixed.fusion_weights, torch.full((3,), 1 / 3))
    assert "msft_fusion.msft_fusion_logits" not in dict(fixed.named_parameters())


def test_a_fixed_fusion_prior_is_honoured_not_ignored():
    pinned = msft.wrap(make_backbone(), scales=[1, 2, 4], learned_fusion=False, fusion_prior=9.0)
    expected = torch.softmax(torch.tensor([9.0, 0.0, 0.0]), dim=0)
    torch.testing.assert_close(pinned.fusion_weights, expected)
    assert "msft_fusion.msft_fusion_logits" not in dict(pinned.named_parameters())


def _loss_and_grads(model, past, future):
    model.zero_grad()
    loss = model.loss(past, future)
    loss.backward()
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_fusion_objective_fits_the_logits_to_the_fused_forecast():
    """fusion_objective="fused": every other parameter gets the gradient of sum_s sg(w_s) loss_s,
    and the logits exactly the gradient of the fused point forecast's (scale-free) squared error."""
    from einops import rearrange

    from msft.losses import scale_free_mse
    from msft.sampling import downsample, upsample_paths

    past, future = sine_batch()
    per_scale = msft.wrap(make_backbone(), scales=[1, 2, 4], fusion_prior=0.3, fusion_objective="per_scale")
    fused = msft.wrap(make_backbone(), scales=[1, 2, 4], fusion_prior=0.3, fusion_objective="fused")
    randomize_msft(per_scale, seed=1)
    randomize_msft(fused, seed=1)
    _, grads_fused = _loss_and_grads(fused, past, future)
    # The reference: per-scale losses with constant weights, done by hand on the per_scale model.
    per_scale.zero_grad()
    weights = per_scale.fusion_weights.detach()
    outputs = per_scale._forward(*per_scale._check_past(past, None), HORIZON)
    flat = rearrange(future, "b t v -> (b v) t")
    seen = torch.ones_like(flat, dtype=torch.bool)
    reference = sum(
        w * out.loss(*downsample(flat, seen, s, side="right")) for w, s, out in zip(weights, per_scale.scales, outputs)
    )
    reference.backward()
    logits = "msft_fusion.msft_fusion_logits"
    for name, p in per_scale.named_parameters():
        if p.grad is not None and name != logits:
            torch.testing.assert_close(grads_fused[name], p.grad, msg=name)
    theta = per_scale.msft_fusion.msft_fusion_logits.detach().clone().requires_grad_(True)
    points = [out.point().detach() for out in outputs]
    assert fused.config.coarse_paths == "residual"  # the default: coarse points gain scale 1's within-block shape
    fused_point = sum(
        w * upsample_paths(pt, s, HORIZON, points[0])
        for w, s, pt in zip(torch.softmax(theta, 0), per_scale.scales, points)
    )
    context = rearrange(past, "b t v -> (b v) t")
    scale_free_mse(fused_point, flat, seen, context, torch.ones_like(context, dtype=torch.bool)).backward()
    torch.testing.assert_close(grads_fused[logits], theta.grad)
    # The published objective gives the logits a different gradient (the one of sum_s w_s loss_s).
    _, grads_default = _loss_and_grads(per_scale, past, future)
    assert not torch.allclose(grads_default[logits], grads_fused[logits])


@pytest.mark.parametrize("factor", [1e-3, 7.0, 1e4, 1e30])
def test_the_fused_objective_is_scale_free(factor):
    """The fused forecast's squared error is measured in units of the batch's context variance: the
    same for a series in any units (a raw-scale term would swamp a global gradient-norm clip)."""
    from msft.losses import masked_mse, scale_free_mse

    gen = torch.Generator().manual_seed(0)
    past, future, guess = (torch.randn(6, n, generator=gen) for n in (40, 12, 12))
    past_seen, seen = torch.rand(6, 40, generator=gen) > 0.2, torch.rand(6, 12, generator=gen) > 0.2
    reference = scale_free_mse(guess, future, seen, past, past_seen)
    scaled = scale_free_mse(guess * factor, future * factor, seen, past * factor, past_seen)
    assert torch.isfinite(scaled) and torch.allclose(scaled, reference, rtol=1e-5)
    unit = torch.stack([past[i][past_seen[i]].var(unbiased=False) for i in range(6)]).mean()
    assert torch.allclose(reference, masked_mse(guess, future, seen) / unit, rtol=1e-5)  # by hand


def test_fused_fusion_objective_with_fixed_weights_is_the_per_scale_loss():
    past, future = sine_batch()
    a = msft.wrap(make_backbone(), scales=[1, 2], learned_fusion=False)
    b = msft.wrap(make_backbone(), scales=[1, 2], learned_fusion=False, fusion_objective="fused")
    torch.testing.assert_close(a.loss(past, future), b.loss(past, future))
    with pytest.raises(ValueError, match="fusion_objective"):
        msft.wrap(make_backbone(), scales=[1, 2], fusion_objective="sum")


ABLATIONS = [
    {},
    {"adapters": False},
    {"lora": False},
    {"intra_scale_attention": False},
    {"c2f": False},
    {"f2c": False},
    {"c2f": False, "f2c": False},
    {"learned_fusion": False},
    {"fusion_objective": "per_scale"},
    {"aggregation_rank": 4},
    {"attention_impl": "dense"},
]


@pytest.mark.parametrize("options", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "full")
def test_every_ablation_trains(options):
    model = msft.wrap(make_backbone(), scales=[1, 2, 4], **options)
    losses = train(model, steps=40, lr=1e-2)
    assert all(torch.isfinite(torch.tensor(losses)))
    # 10% in 40 steps: the published objective (fusion_objective="per_scale") also lowers its loss by
    # moving weight to the easiest scale; the default fused objective cannot (adapters alone: -15%)
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses


def test_missing_values_give_finite_loss():
    past, future = sine_batch(length=100)
    past[0, :30, 0] = float("nan")
    past[1, 40:60, 1] = float("nan")
    future[2, :5, 0] = float("nan")
    model = msft.wrap(make_backbone(), scales=[1, 2, 4])
    loss = model.loss(past, future)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.msft_parameters().values() if p.grad is not None)


# -- fast paths equal their plain references -----------------------------------------------------------
def _reference_aggregation(agg, hidden, layouts):
    """The plain definition: zero-filled updates, F2C maps every fine token and then averages."""
    from msft.layers import _fit, _segment

    updates = [torch.zeros_like(h) for h in hidden]
    for i, f in enumerate(agg.factors):
        for segment in (0, 1):
            fs, cs = _segment(layouts[i], segment), _segment(layouts[i + 1], segment)
            n_fine, n_coarse, right = fs.stop - fs.start, cs.stop - cs.start, segment == 0
            if n_fine == 0 or n_coarse == 0:
                continue
            if agg.msft_c2f is not None:
                up = agg.msft_c2f[i](hidden[i + 1][:, cs]).repeat_interleave(f, dim=1)
                updates[i][:, fs] += _fit(up, n_fine, right)
            if agg.msft_f2c is not None:
                down = agg.msft_f2c[i](hidden[i][:, fs])
                counts = torch.ones_like(down[..., :1])
                down = _fit(down, n_coarse * f, right).unflatten(1, (n_coarse, f)).sum(2)
                counts = _fit(counts, n_coarse * f, right).unflatten(1, (n_coarse, f)).sum(2)
                updates[i + 1][:, cs] += down / counts.clamp(min=1)
    return [h + u for h, u in zip(hidden, updates)]


@pytest.mark.parametrize("rank", [None, 3])
@pytest.mark.parametrize(
    "layouts",
    [[(0, 8, 2), (0, 4, 1), (0, 2, 1)], [(2, 7, 3), (2, 3, 2), (2, 1, 1)], [(0, 5, 0), (0, 9, 0), (0, 1, 0)]],
    ids=["aligned", "prefix-ragged", "coarse-longer"],
)
def test_aggregation_equals_its_plain_definition(rank, layouts):
    torch.manual_seed(0)
    agg = CrossScaleAggregation([1, 2, 4], d_model=6, c2f=True, f2c=True, rank=rank)
    with torch.no_grad():
        for p in agg.parameters():
            p.normal_()
    hidden = [torch.randn(2, sum(layout), 6, requires_grad=True) for layout in layouts]
    got, expected = agg(hidden, layouts), _reference_aggregation(agg, hidden, layouts)
    # The fast path groups the same products differently (one matmul over all tokens, sums of f
    # fine tokens before or after the map), so results differ by float32 rounding: each output
    # element is a d_model-long dot product plus a short average, of the size of the outputs.
    out = max(e.abs().max() for e in expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, **float32_tolerance(6, out))
    grads = torch.autograd.grad(sum((g * torch.cos(g)).sum() for g in got), [*hidden, *agg.parameters()])
    ref = torch.autograd.grad(sum((e * torch.cos(e)).sum() for e in expected), [*hidden, *agg.parameters()])
    # A gradient entry sums, over the batch's tokens, products of an upstream gradient
    # (|cos g - g sin g| <= 1 + |g|) and a forward value (<= the outputs here), which can cancel to a
    # small result: rounding of batch * tokens terms of size (1 + max|out|) * max|out|.
    tokens = 2 * max(sum(layout) for layout in layouts)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, **float32_tolerance(tokens, (1 + out) * out))


@pytest.mark.parametrize("segments", [[(0, 5), (1, 3), (2, 2)], [(2, 4), (0, 3)], [(1, 6)]])
def test_lora_over_segments_equals_one_pair_per_block(segments):
    from msft.layers import ScaleLoRA, ScaleState

    torch.manual_seed(0)
    state = ScaleState()
    lora = ScaleLoRA(torch.nn.Linear(8, 5), 3, rank=2, alpha=4.0, dropout=0.0, state=state)
    with torch.no_grad():
        lora.msft_lora_B.normal_()
    x = torch.randn(2, sum(n for _, n in segments), 8, requires_grad=True)
    with state.use(segments):
        got = lora(x)
    blocks = x.split([n for _, n in segments], dim=1)
    expected = []
    for block, (idx, _) in zip(blocks, segments):
        with state.use(idx):
            expected.append(lora(block))
    expected = torch.cat(expected, dim=1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    params = [x, lora.msft_lora_A, lora.msft_lora_B]
    grads = torch.autograd.grad(got.square().sum(), params)
    for g, e in zip(grads, torch.autograd.grad(expected.square().sum(), params)):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
