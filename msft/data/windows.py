"""Sliding forecast windows as strided views of one series array.

No per-window Python loop: ``Tensor.unfold`` gives a view of every window, and a batch is one
advanced-indexing gather from that view. Convention everywhere in msft: ``(batch, time, variate)``
float32 values, bool observed masks of the same shape.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MODES = ("S", "M")


def _window_view(x: Tensor, width: int, stride: int, mode: str) -> Tensor:
    """(time, variate) -> (series, windows, width, variate') view, no copy.

    Mode "S": every channel is its own series (variate'=1); mode "M": one series with all channels.
    """
    if mode == "S":
        x = x.T.unsqueeze(-1)  # (variate, time, 1)
    else:
        x = x.unsqueeze(0)  # (1, time, variate)
    return x.unfold(1, width, stride).permute(0, 1, 3, 2)  # (series, windows, width, variate')


class Windows(torch.utils.data.Dataset):
    """All windows ``[t - context_length, t + horizon)`` of a segment, stepping by ``stride``.

    Index ``i`` is window ``i % num_time_windows`` of series ``i // num_time_windows``. Indexing with
    an int gives unbatched ``(time, variate)`` tensors; with a slice, list or index tensor it gives a
    batch gathered in one operation, so ``DataLoader(windows, sampler=BatchSampler(...),
    batch_size=None)`` serves batches without per-item work.
    """

    def __init__(
        self,
        values: np.ndarray | Tensor,
        context_length: int,
        horizon: int,
        observed: np.ndarray | Tensor | None = None,
        stride: int = 1,
        mode: str = "S",
    ):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; expected one of {MODES}")
        for field, value in (("context_length", context_length), ("horizon", horizon), ("stride", stride)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{field}={value!r}; expected a positive int")
        values = torch.as_tensor(values, dtype=torch.float32)  # (time, variate)
        if values.ndim != 2:
            raise ValueError(f"values have shape {tuple(values.shape)}; expected (time, variate)")
        if observed is None:
            observed = ~torch.isnan(values)
        observed = torch.as_tensor(observed, dtype=torch.bool)
        values = torch.nan_to_num(values, nan=0.0)  # missing points are zero, flagged by `observed`
        self.context_length, self.horizon, self.stride, self.mode = int(context_length), int(horizon), stride, mode
        width = self.context_length + self.horizon
        self.num_time_windows = max((values.shape[0] - width) // stride + 1, 0)
        if self.num_time_windows == 0:
            values, observed = values[:0], observed[:0]
            self._values = torch.empty(
                values.shape[1] if mode == "S" else 1, 0, width, 1 if mode == "S" else values.shape[1]
            )
            self._observed = self._values.bool()
        else:
            self._values = _window_view(values, width, stride, mode)
            self._observed = _window_view(observed, width, stride, mode)
        self.num_series = self._values.shape[0]
        self.num_variates = self._values.shape[-1]

    def __len__(self) -> int:
        return self.num_series * self.num_time_windows

    def _gather(self, index: Tensor) -> dict[str, Tensor]:
        series, window = index // self.num_time_windows, index % self.num_time_windows
        values = self._values[series, window]  # (batch, context + horizon, variate)
        observed = self._observed[series, window]
        split = self.context_length
        return {
            "past_target": values[:, :split],
            "future_target": values[:, split:],
            "past_observed": observed[:, :split],
            "future_observed": observed[:, split:],
        }

    def __getitem__(self, index) -> dict[str, Tensor]:
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"window {index} out of range for {len(self)} windows")
            batch = self._gather(torch.tensor([index % len(self)]))
            return {key: value[0] for key, value in batch.items()}
        if isinstance(index, slice):
            index = torch.arange(*index.indices(len(self)))
        return self._gather(torch.as_tensor(index, dtype=torch.long))

    def batches(self, batch_size: int):
        """Consecutive batches covering every window once, in index order."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected a positive int")
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]
