"""PF runs of a point backbone with quantile heads: scored through its quantiles (CRPS exact)."""

import numpy as np
import torch

from msft.protocols.metrics import sample_quantiles
from msft_runner.train import quantile_paths, run

from .test_pf import _pf_cfg, wide_csv

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_quantile_paths_reproduce_the_quantiles_under_gluonts_sample_quantiles():
    q = torch.sort(torch.randn(4, 9, 6, 1), dim=1).values
    paths = quantile_paths(q, LEVELS, 101)
    assert paths.shape == (4, 101, 6, 1)
    np.testing.assert_allclose(sample_quantiles(paths.numpy(), LEVELS), q.permute(1, 0, 2, 3).numpy(), atol=1e-6)


def test_a_point_backbone_with_quantile_heads_runs_the_pf_protocol(tmp_path):
    levels = "[" + ",".join(map(str, LEVELS)) + "]"
    cfg = _pf_cfg(
        wide_csv(tmp_path / "wide.csv"),
        "toy_tiny",
        "method=msft",
        f"+method.options.quantile_levels={levels}",
        "method.options.scales=[1,2]",
        "plots=false",
    )
    record = run(cfg, tmp_path / "run", {"backbone": "toy_tiny"})
    assert record["status"] == "ok" and record["protocol"] == "pf"
    for metric in ("crps", "msis", "mase"):
        assert np.isfinite(record[metric]) and record[metric] >= 0, metric
