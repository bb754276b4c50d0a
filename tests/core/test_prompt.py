"""Soft prompt tuning (``prompt_tokens``) through the core on the toy backbone."""

import pytest
import torch

import msft
from msft.registry import BackboneSpec

from .test_wrap import HORIZON, backbone_state, make_backbone, randomize_msft, sine_batch

PROMPT_ONLY = dict(adapters=False, lora=False, c2f=False, f2c=False, learned_fusion=False)


def test_prompt_is_prepended_per_scale():
    model = msft.wrap(make_backbone(), scales=[1, 2, 4], prompt_tokens=3)
    assert model.msft_prompt.shape == (3, 3, model.spec.d_model())
    seen = []
    add_prefix = model.spec.add_prefix

    def spy(tokens, prefix):
        out = add_prefix(tokens, prefix)
        seen.append((tokens, prefix, out))
        return out

    model.spec.add_prefix = spy
    past, _ = sine_batch(batch=2, variates=2)
    model.predict(past, HORIZON)
    assert len(seen) == 3
    for idx, (before, prefix, after) in enumerate(seen):
        assert after.layout == (before.num_prefix + 3, before.num_context, before.num_horizon)
        assert torch.equal(after.hidden[:, :3], prefix)
        assert torch.equal(prefix[0], model.msft_prompt[idx].detach())
        assert torch.equal(after.hidden[:, 3:], before.hidden)
        assert bool(after.aux.key_valid[:, :3].all())
        assert torch.equal(after.aux.key_valid[:, 3:], before.aux.key_valid)


def test_training_changes_only_the_prompt():
    backbone = make_backbone()
    before = backbone_state(backbone)
    model = msft.wrap(backbone, scales=[1, 2], prompt_tokens=4, **PROMPT_ONLY)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"msft_prompt"}
    start = model.msft_prompt.detach().clone()
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    past, future = sine_batch()
    for _ in range(3):
        optim.zero_grad()
        model.loss(past, future).backward()
        optim.step()
    assert not torch.equal(model.msft_prompt.detach(), start)
    after = backbone.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_blocked_and_dense_attention_agree_with_prompts():
    past, future = sine_batch()
    blocked = msft.wrap(make_backbone(), scales=[1, 2, 4], prompt_tokens=2)
    randomize_msft(blocked)
    dense = msft.wrap(make_backbone(), scales=[1, 2, 4], prompt_tokens=2, attention_impl="dense")
    dense.load_state_dict(blocked.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(blocked.loss(past, future), dense.loss(past, future), rtol=1e-5, atol=1e-6)


def test_prompt_changes_the_forecast():
    past, _ = sine_batch()
    plain = msft.wrap(make_backbone(), scales=[1], **PROMPT_ONLY)
    prompted = msft.wrap(make_backbone(), scales=[1], prompt_tokens=2, **PROMPT_ONLY)
    with torch.no_grad():
        assert not torch.allclose(plain.predict(past, HORIZON), prompted.predict(past, HORIZON))


def test_backbone_without_prefix_support_fails_at_wrap(monkeypatch):
    backbone = make_backbone()
    spec = msft.registry.spec_for(backbone)
    monkeypatch.setattr(spec, "supports_prefix", False)
    monkeypatch.setattr(spec, "add_prefix", BackboneSpec.add_prefix)
    with pytest.raises(ValueError, match="the toy backbone does not support prompt_tokens"):
        msft.wrap(backbone, prompt_tokens=2)
    assert all(p.requires_grad for p in backbone.parameters())  # untouched: not frozen, not flagged
    msft.wrap(backbone, prompt_tokens=0)


@pytest.mark.parametrize("value", [-1, 1.5, True, "4", None])
def test_bad_prompt_tokens_raise(value):
    with pytest.raises(ValueError, match="prompt_tokens"):
        msft.MSFTConfig(prompt_tokens=value)


def test_save_load_round_trip_includes_the_prompt(tmp_path):
    past, _ = sine_batch()
    model = msft.wrap(make_backbone(), scales=[1, 2], prompt_tokens=3)
    randomize_msft(model)
    model.save_adapter(tmp_path)
    loaded = msft.load_adapter(make_backbone(), tmp_path)
    assert loaded.config.prompt_tokens == 3
    assert torch.equal(loaded.msft_prompt, model.msft_prompt)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(past, HORIZON), model.predict(past, HORIZON))
