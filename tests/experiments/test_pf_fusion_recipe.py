"""benchmarks.pf_fusion_recipe chooses msft's probabilistic default on validation CRPS only, relative to
each dataset's best (datasets on their own raw scales are not averaged directly)."""

import pytest

recipe = pytest.importorskip("benchmarks.pf_fusion_recipe")


def _row(dataset, seed, config, val, test):
    scores = {"val": {"crps": val, "cov80": 0.8}, "test": {"crps": test, "cov80": 0.8}}
    return recipe._row(dataset, seed, *config, [1 / 3] * 3, scores)


A, B, C = ("fused", "linear", "residual"), ("fused", "mixture", "repeat"), ("per_scale", "linear", "repeat")


def test_choice_is_the_lowest_mean_relative_validation_crps_and_ignores_test():
    rows = []
    # dataset "big" on a 100x larger scale: a direct average would let it decide alone
    for seed, noise in ((0, 0.0), (1, 0.002)):
        rows += [_row("small", seed, A, 1.00 + noise, 9.0), _row("small", seed, B, 1.10 + noise, 0.1)]
        rows += [_row("small", seed, C, 1.20 + noise, 0.1)]
        rows += [_row("big", seed, A, 103.0 + noise, 0.1), _row("big", seed, B, 100.0 + noise, 0.1)]
        rows += [_row("big", seed, C, 130.0 + noise, 0.1)]
    chosen, relative = recipe.choose(rows)
    # A: (1 + 1.03) / 2 = 1.015; B: (1.10 + 1) / 2 = 1.05; C: (1.2 + 1.3) / 2 = 1.25 (seed means)
    assert chosen == A
    assert relative[A] == pytest.approx(1.015, abs=1e-3) and relative[B] == pytest.approx(1.05, abs=1e-3)
    table = recipe.table(rows, "cmd")
    assert "**Chosen: fusion_objective='fused', sample_fusion='linear', coarse_paths='residual'**" in table


def test_every_objective_fusion_and_upsampling_is_compared():
    configs = recipe.configurations()
    assert len(configs) == len(set(configs)) == 3 * 4 * 2
    assert {c[0] for c in configs} == {"per_scale", "fused", "fused_crps"}
