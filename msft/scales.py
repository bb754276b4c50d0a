"""``scales="auto"``: the down-sampling factors chosen from the training data alone (no validation or
test data is read).

A coarse scale helps when it still resolves the series' dominant seasonality and leaves the backbone
tokens to attend over: factors double from 1 while the dominant period keeps at least
``min_per_period`` samples at the coarser resolution and the context keeps at least ``min_tokens``
patch tokens. The dominant period is the peak of the periodogram (averaged over the series, each
detrended and standardised) among periods of 2 steps up to half the context; a peak that does not
stand out (``min_peak_ratio`` times the median power) means no seasonality to keep, and then only the
token budget decides, up to the paper's ``[1, 2, 4]``.

The thresholds (8 samples per period, 2 tokens) are the ones that agree best with the evidence search's
validation scores of the fixed sets on the five LSF datasets; `benchmarks.scales_auto` shows every
pair tried and a leave-one-dataset-out check of choosing them that way
(``results/long_context/scales_auto.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: without a dominant period, no coarser factor than this (the paper's default set is [1, 2, 4])
APERIODIC_MAX_SCALE = 4


@dataclass(frozen=True)
class ScaleChoice:
    """What `choose_scales` picked and why (logged, and saved with a finetuned forecaster)."""

    scales: tuple[int, ...]
    period: float | None  # the dominant period in steps, None when no peak stands out
    reason: str


def choose_scales(
    series: Sequence[np.ndarray],
    context_length: int,
    patch_size: int,
    *,
    max_scale: int = 16,
    min_per_period: int = 8,
    min_tokens: int = 2,
    min_peak_ratio: float = 10.0,
) -> ScaleChoice:
    """Scales for series of training data (1-D arrays, NaN for missing) seen through ``context_length``
    steps with ``patch_size``-step tokens; see the module docstring for the rule."""
    numbers = dict(context_length=context_length, patch_size=patch_size, max_scale=max_scale)
    numbers.update(min_per_period=min_per_period, min_tokens=min_tokens)
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    period = dominant_period(series, max_period=context_length // 2, min_peak_ratio=min_peak_ratio)
    scales, why = scales_for_period(period, context_length, patch_size, max_scale, min_per_period, min_tokens)
    found = "no dominant period" if period is None else f"dominant period {period:.1f} steps"
    choice = ScaleChoice(scales, period, f"{found}; stopped at {scales[-1]}: {why}")
    logger.info("scales='auto': %s -> %s", choice.reason, list(choice.scales))
    return choice


def scales_for_period(
    period: float | None,
    context_length: int,
    patch_size: int,
    max_scale: int = 16,
    min_per_period: int = 8,
    min_tokens: int = 2,
) -> tuple[tuple[int, ...], str]:
    """The factors `choose_scales` keeps for a dominant ``period`` (None: none found), and why it stopped."""
    scales = [1]
    while True:
        s = scales[-1] * 2
        if s > max_scale:
            return tuple(scales), f"max_scale={max_scale}"
        tokens = context_length // (s * patch_size)
        if tokens < min_tokens:
            why = f"scale {s} would leave {tokens} tokens of {patch_size} steps (< {min_tokens}) in {context_length}"
            return tuple(scales), why
        if period is None and s > APERIODIC_MAX_SCALE:
            return tuple(scales), f"no dominant period: at most scale {APERIODIC_MAX_SCALE}"
        if period is not None and period / s < min_per_period:
            why = f"scale {s} would leave {period / s:.1f} samples per period {period:.1f} (< {min_per_period})"
            return tuple(scales), why
        scales.append(s)


def dominant_period(series: Sequence[np.ndarray], max_period: int, min_peak_ratio: float = 10.0) -> float | None:
    """The period (steps) of the periodogram's peak averaged over ``series``, among periods in
    ``[2, max_period]``; None when the peak is below ``min_peak_ratio`` times the median power."""
    powers = []
    for values in series:
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]  # gaps shift phases a little; the peak's period is what matters
        if len(x) < 2 * max(max_period, 2):
            continue
        t = np.arange(len(x))
        x = x - np.polyval(np.polyfit(t, x, 1), t)  # a trend is not a season
        std = x.std()
        if std == 0:
            continue
        spectrum = np.abs(np.fft.rfft(x / std)) ** 2
        freqs = np.fft.rfftfreq(len(x))
        keep = (freqs >= 1.0 / max_period) & (freqs <= 0.5)
        powers.append(np.interp(np.linspace(1.0 / max_period, 0.5, 2048), freqs[keep], spectrum[keep]))
    if not powers:
        return None
    mean = np.mean(powers, axis=0)
    grid = np.linspace(1.0 / max_period, 0.5, 2048)
    peak = int(np.argmax(mean))
    if mean[peak] < min_peak_ratio * np.median(mean):
        return None
    return float(1.0 / grid[peak])
