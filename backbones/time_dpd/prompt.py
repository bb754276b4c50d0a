"""Prompt-as-prefix text of Time-DPD: what the frozen LLM is told about each series.

Statistics are computed per series on the RevIN-standardised context (before the learnable
affine, so the text does not drift while the affine trains), over observed points only. Two modes:

``"msft"`` (default, `prompt_statistics` + `format_prompt`), deliberately different from Time-LLM:

- min / max / median with 3 decimals (the median interpolates between the two middle values, as numpy does);
- trend: the sign of the least-squares slope over the observed points ("upward" if > 0);
- lags: the ``top_k`` lags in ``1 .. time // 2`` with the largest circular autocorrelation, computed
  with the FFT as ``irfft(|rfft(x)|^2)`` (unobserved points count as 0, the standardised mean);
  lag 0 and the mirrored lags ``time - k`` are left out, ties go to the smaller lag.

``"reference"`` (`reference_prompts`): Time-LLM's prompt exactly (KimMeen/Time-LLM ``models/TimeLLM.py``):
its start/end markers, the description directly followed by "Task description", numbers printed in
full (Python's repr of the float32 value), the lower median (``torch.median``), trend = sign of
last minus first value (the sum of differences), and the top 5 of ``irfft(|rfft(x)|^2)`` over all
lags ``0 .. n - 1`` as a Python list (lag 0, always the largest, included; ``n`` = ``time`` for even
lengths, ``time - 1`` for odd ones, as ``irfft`` without ``n`` gives).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

TEMPLATE = (
    "Dataset description: {description} "
    "Task description: forecast the next {horizon} steps given the previous {context} steps information; "
    "Input statistics: min value {minimum:.3f}, max value {maximum:.3f}, median value {median:.3f}, "
    "the trend of input is {trend}, top {num_lags} lags are : {lags}"
)


REFERENCE_TEMPLATE = (
    "<|start_prompt|>Dataset description: {description}"
    "Task description: forecast the next {horizon} steps given the previous {context} steps information; "
    "Input statistics: min value {minimum}, max value {maximum}, median value {median}, "
    "the trend of input is {trend}, top 5 lags are : {lags}<|<end_prompt>|>"
)
PROMPT_MODES = ("msft", "reference")


@dataclass(frozen=True)
class PromptStatistics:
    minimum: float
    maximum: float
    median: float
    trend: str  # "upward" or "downward"
    lags: tuple[int, ...]


def prompt_statistics(series: Tensor, observed: Tensor, top_k: int = 5) -> list[PromptStatistics]:
    """One `PromptStatistics` per row of ``series``/``observed`` ``(series, time)``; each row must
    have at least one observed point."""
    series = series.detach().float()
    observed = observed & ~torch.isnan(series)
    values = torch.where(observed, series, torch.full_like(series, float("nan")))
    minimum = torch.where(observed, series, torch.full_like(series, float("inf"))).amin(-1)
    maximum = torch.where(observed, series, torch.full_like(series, float("-inf"))).amax(-1)
    median = torch.nanquantile(values, 0.5, dim=-1)
    slope = _slope(series, observed)
    lags = top_lags(torch.where(observed, series, torch.zeros_like(series)), top_k)
    columns = torch.stack([minimum, maximum, median, slope], dim=1).tolist()  # one device-to-host copy
    return [
        PromptStatistics(lo, hi, mid, "upward" if s > 0 else "downward", tuple(lag))
        for (lo, hi, mid, s), lag in zip(columns, lags.tolist())
    ]


def top_lags(series: Tensor, top_k: int) -> Tensor:
    """``(series, min(top_k, time // 2))`` lags of largest circular FFT autocorrelation."""
    time = series.shape[-1]
    spectrum = torch.fft.rfft(series, dim=-1)
    autocorr = torch.fft.irfft(spectrum * spectrum.conj(), n=time, dim=-1)  # (series, time)
    candidates = autocorr[:, 1 : time // 2 + 1]  # lags 1 .. time // 2
    order = torch.sort(candidates, dim=-1, descending=True, stable=True).indices
    return order[:, : min(top_k, candidates.shape[-1])] + 1


def _slope(series: Tensor, observed: Tensor) -> Tensor:
    """Least-squares slope per row over the observed points (0 with fewer than two)."""
    t = torch.arange(series.shape[-1], dtype=series.dtype, device=series.device).expand_as(series)
    w = observed.to(series.dtype)
    count = w.sum(-1).clamp(min=1)
    t_mean = (w * t).sum(-1) / count
    x_mean = (w * torch.where(observed, series, torch.zeros_like(series))).sum(-1) / count
    dt = (t - t_mean[:, None]) * w
    cov = (dt * torch.where(observed, series - x_mean[:, None], torch.zeros_like(series))).sum(-1)
    var = (dt * dt).sum(-1)
    return torch.where(var > 0, cov / var.clamp(min=1e-12), torch.zeros_like(var))


def format_prompt(stats: PromptStatistics, description: str, context: int, horizon: int) -> str:
    return TEMPLATE.format(
        description=description,
        horizon=horizon,
        context=context,
        minimum=stats.minimum,
        maximum=stats.maximum,
        median=stats.median,
        trend=stats.trend,
        num_lags=len(stats.lags),
        lags=", ".join(str(lag) for lag in stats.lags),
    )


def reference_prompts(series: Tensor, observed: Tensor, description: str, context: int, horizon: int) -> list[str]:
    """Time-LLM's prompt for each row of the standardised ``series`` ``(series, time)``.

    On fully observed rows this is Time-LLM's text to the character. Unobserved points (Time-LLM has
    none) are left out of min / max / median, the trend runs from the first to the last observed
    value, and they count as 0 in the autocorrelation.
    """
    series = series.detach().float()
    observed = observed & ~torch.isnan(series)
    minimum = torch.where(observed, series, torch.full_like(series, float("inf"))).amin(-1)
    maximum = torch.where(observed, series, torch.full_like(series, float("-inf"))).amax(-1)
    index = torch.arange(series.shape[-1], device=series.device).expand_as(series)
    first = torch.where(observed, index, series.shape[-1]).amin(-1, keepdim=True)
    last = torch.where(observed, index, -1).amax(-1, keepdim=True)
    trend = (series.gather(-1, last) - series.gather(-1, first))[:, 0]  # (series,)
    filled = torch.where(observed, series, torch.zeros_like(series))
    spectrum = torch.fft.rfft(filled, dim=-1)
    autocorr = torch.fft.irfft(spectrum * torch.conj(spectrum), dim=-1)  # (series, 2 * (time // 2))
    lags = torch.topk(autocorr, min(5, autocorr.shape[-1]), dim=-1).indices
    prompts = []
    for row in range(series.shape[0]):
        values = series[row][observed[row]]
        prompts.append(
            REFERENCE_TEMPLATE.format(
                description=description,
                horizon=horizon,
                context=context,
                minimum=str(minimum[row].item()),
                maximum=str(maximum[row].item()),
                median=str(torch.median(values).item()),
                trend="upward" if float(trend[row]) > 0 else "downward",
                lags=str(lags[row].tolist()),
            )
        )
    return prompts
