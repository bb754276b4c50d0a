"""The spec registry (docs/design.md §3): one spec per name and per module type, the most specific
class wins, and msft's parameters are found by module type, not by their names."""

import pytest
import torch
from torch import nn

import msft
from msft import registry
from msft.layers import ScaleLayer, injected_parameter_names
from msft_backbones.toy import ToyForecaster, ToySpec


class SubToy(ToyForecaster):
    """A subclass of a registered backbone type: a spec registered for it must win over the parent's."""


@pytest.fixture
def clean_registry():
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def _subclass_spec(name: str, types: tuple[str, ...]) -> type:
    return type(f"Spec_{name}", (ToySpec,), {"name": name, "module_types": types, "__module__": __name__})


def test_a_second_spec_under_an_existing_name_raises(clean_registry):
    impostor = _subclass_spec("toy", (f"{__name__}.SubToy",))
    with pytest.raises(ValueError, match="'toy' is already registered by msft_backbones.toy.ToySpec"):
        registry.register_backbone(impostor)
    assert registry.registered_backbones()["toy"] is ToySpec


def test_registering_the_same_class_again_is_a_no_op(clean_registry):
    assert registry.register_backbone(ToySpec) is ToySpec
    assert registry.registered_backbones()["toy"] is ToySpec


def test_two_specs_cannot_claim_one_module_type(clean_registry):
    rival = _subclass_spec("rival_toy", ToySpec.module_types)
    with pytest.raises(ValueError, match="already handles"):
        registry.register_backbone(rival)


def test_the_most_specific_class_wins_whatever_the_registration_order(clean_registry):
    sub_spec = registry.register_backbone(_subclass_spec("sub_toy", (f"{__name__}.SubToy",)))
    assert registry.spec_for(SubToy(d_model=16, num_layers=1, num_heads=2)) is sub_spec
    assert registry.spec_for(ToyForecaster(d_model=16, num_layers=1, num_heads=2)) is ToySpec


def test_msft_parameters_are_found_by_module_type_not_by_name():
    torch.manual_seed(0)
    backbone = ToyForecaster(d_model=16, num_layers=2, num_heads=2)
    # A backbone parameter whose name happens to contain "msft_" stays the backbone's.
    backbone.register_parameter("msft_lookalike", nn.Parameter(torch.zeros(3)))
    model = msft.wrap(backbone, scales=[1, 2])
    own = set(model.msft_parameters())
    assert "backbone.msft_lookalike" not in own
    injected = injected_parameter_names(model.backbone, "backbone")
    assert injected and injected <= own
    wrappers = [m for m in model.backbone.modules() if isinstance(m, ScaleLayer)]
    assert {id(p) for m in wrappers for p in m.parameters(recurse=False)} <= {id(p) for p in own_params(model)}
    assert "msft_lookalike" in model.spec.own_parameters()
    assert not set(model.spec.own_parameters()) & {n.removeprefix("backbone.") for n in injected}
    saved = set(model.msft_state_names())
    assert "backbone.msft_lookalike" not in saved and "msft_fusion.msft_fusion_logits" in saved


def own_params(model):
    return model.msft_parameters().values()


def test_threads_that_ask_while_the_entry_points_load_wait_for_all_of_them(monkeypatch):
    """The evidence driver asks for the registry from several threads at once: one that comes while
    another thread imports the entry points must get every backbone, not the empty registry of the
    moment (the bug: a flag set before loading sent it away at once)."""
    import threading
    from types import SimpleNamespace

    started, release = threading.Event(), threading.Event()
    fake_registry: dict = {}

    def slow_load():  # an entry point whose import takes a while
        started.set()
        release.wait(timeout=10)
        fake_registry["late"] = ToySpec

    entry_point = SimpleNamespace(name="late", value="tests.late", load=slow_load)
    monkeypatch.setattr(registry, "_REGISTRY", fake_registry)
    monkeypatch.setattr(registry, "_entry_points_state", "unloaded")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [entry_point])

    seen: list[set[str]] = []
    first = threading.Thread(target=lambda: seen.append(set(registry.registered_backbones())))
    first.start()
    assert started.wait(timeout=10)
    later = threading.Thread(target=lambda: seen.append(set(registry.registered_backbones())))
    later.start()
    later.join(timeout=0.5)  # the bug returned here at once, with nothing registered; the fix waits
    release.set()
    first.join(timeout=10)
    later.join(timeout=10)
    assert seen == [{"late"}, {"late"}]
    assert registry._entry_points_state == "loaded"
