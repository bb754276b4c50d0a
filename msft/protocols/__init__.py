"""Benchmark protocols (LSF, PF), their metrics and reference baselines; not imported by ``import msft``."""

from msft.protocols.baselines import LastValue, SeasonalNaive, default_period, last_value, seasonal_naive
from msft.protocols.lsf import evaluate_lsf
from msft.protocols.pf import evaluate_pf

__all__ = [
    "LastValue",
    "SeasonalNaive",
    "default_period",
    "evaluate_lsf",
    "evaluate_pf",
    "last_value",
    "seasonal_naive",
]
