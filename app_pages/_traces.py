"""Decimated traces of growing tables: min/max per bucket, fed only new rows, at a bounded size (no Streamlit).

:class:`StreamingMinMax` keeps a trace at most ``max_points`` buckets long, doubling the bucket size when it
would grow beyond; :func:`seed_traces` starts traces of one table from :meth:`daq.TrialReader.decimated`
(whole buckets) and the rows after them. The Live page's follower and the view of every instrument use both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from daq import TrialReader

__all__ = ["MAX_POINTS", "Trace", "StreamingMinMax", "seed_traces"]

MAX_POINTS = 2000
"""Buckets per trace (each drawn as its min and max, so at most twice as many points)."""


@dataclass(frozen=True)
class Trace:
    """A decimated trace: bucket start times, min and max per bucket, rows per bucket, rows in all."""

    time_s: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    bucket: int
    rows: int


class StreamingMinMax:
    """Min/max per bucket of a growing trace, fed only new rows, at most ``max_points`` buckets."""

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max(2, int(max_points))
        self.bucket = 1
        self.rows = 0
        self._t = np.empty(0)
        self._lo = np.empty(0)
        self._hi = np.empty(0)
        self._pending_t = np.empty(0)
        self._pending_lo = np.empty(0)
        self._pending_hi = np.empty(0)

    def seed(self, time_s: np.ndarray, minimum: np.ndarray, maximum: np.ndarray, bucket: int, rows: int) -> None:
        """Start from buckets already computed (a :class:`daq.Decimated` of whole buckets of ``bucket`` rows)."""
        self.bucket = max(1, int(bucket))
        self._t = np.asarray(time_s, dtype=float)
        self._lo = np.asarray(minimum, dtype=float)
        self._hi = np.asarray(maximum, dtype=float)
        self.rows = int(rows)
        while len(self._t) > self.max_points:
            self._coarsen()

    def extend(self, time_s, low, high=None) -> None:
        """Add rows (their times, and the values whose min and max are kept; ``high`` defaults to ``low``)."""
        time_s = np.asarray(time_s, dtype=float)
        if not len(time_s):
            return
        low = np.asarray(low, dtype=float)
        high = low if high is None else np.asarray(high, dtype=float)
        self.rows += len(time_s)
        t = np.concatenate([self._pending_t, time_s])
        lo = np.concatenate([self._pending_lo, low])
        hi = np.concatenate([self._pending_hi, high])
        full = len(t) // self.bucket * self.bucket
        if full:
            shape = (full // self.bucket, self.bucket)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bucket is NaN
                new_lo = np.nanmin(lo[:full].reshape(shape), axis=1)
                new_hi = np.nanmax(hi[:full].reshape(shape), axis=1)
            self._t = np.concatenate([self._t, t[: full : self.bucket]])
            self._lo = np.concatenate([self._lo, new_lo])
            self._hi = np.concatenate([self._hi, new_hi])
        self._pending_t, self._pending_lo, self._pending_hi = t[full:], lo[full:], hi[full:]
        while len(self._t) > self.max_points:
            self._coarsen()

    def _coarsen(self) -> None:
        """Merge neighbouring buckets pairwise (the bucket size doubles; extremes are kept)."""
        even = len(self._t) // 2 * 2
        t = self._t[:even:2]
        lo = np.fmin(self._lo[:even:2], self._lo[1:even:2])
        hi = np.fmax(self._hi[:even:2], self._hi[1:even:2])
        if len(self._t) % 2:  # the odd last bucket stays as it is
            t, lo, hi = (np.append(t, self._t[-1]), np.append(lo, self._lo[-1]), np.append(hi, self._hi[-1]))
        self._t, self._lo, self._hi = t, lo, hi
        self.bucket *= 2

    def trace(self) -> Trace:
        """The buckets so far, the partly filled last bucket included."""
        if not len(self._pending_t):
            return Trace(self._t, self._lo, self._hi, self.bucket, self.rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanmin(self._pending_lo), np.nanmax(self._pending_hi)
        return Trace(
            np.append(self._t, self._pending_t[0]),
            np.append(self._lo, lo),
            np.append(self._hi, hi),
            self.bucket,
            self.rows,
        )


def seed_traces(reader: TrialReader, table: str, stop: int, traces: list, max_points: int) -> int:
    """Seed several traces of one table up to row ``stop``: whole buckets from :meth:`daq.TrialReader.decimated`,
    the partial last bucket as raw rows. ``traces`` holds ``(StreamingMinMax, column, component or None)``.
    Returns the rows it took to do so (decimated rows count once)."""
    if stop == 0:
        return 0
    bucket = max(1, -(-stop // max_points))
    whole = stop // bucket * bucket
    if whole:
        for trace, column, component in traces:
            decimated = reader.decimated(table, column, max_points=whole // bucket, stop=whole, component=component)
            trace.seed(decimated.time_s, decimated.minimum, decimated.maximum, bucket, decimated.rows)
    if whole < stop:
        columns = tuple(dict.fromkeys(["time"] + [column for _, column, _ in traces]))
        tail = reader.read(table, whole, stop, columns=columns)
        for trace, column, component in traces:
            values = tail[column] if component is None else tail[column][:, component]
            trace.bucket = bucket
            trace.extend(tail["time"], values)
    return stop
