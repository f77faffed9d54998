"""Rollup arithmetic: per device, metric and time bucket, the count, sum, minimum,
maximum and first/last timestamps of the readings. Pure: no I/O.

Buckets are aligned on Unix time (``bucket = floor(ts / width) * width``); the default
widths are 60 s and 3600 s. Cells merge associatively and commutatively (counts and sums
add, minima and maxima combine), so rollups are maintained as data arrives: each commit
folds the *newly inserted* readings into the stored cells (sinks compute the deltas from
the rows they actually inserted, so a redelivered message never counts twice), and an edge
gateway can merge summaries from several windows or processes. ``avg = total / n``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .records import Reading

__all__ = ["DEFAULT_WIDTHS", "RollupCell", "RollupKey", "bucket_of", "merge_into", "rollup"]

DEFAULT_WIDTHS: tuple[int, ...] = (60, 3600)


def bucket_of(ts: float, width: int) -> float:
    """The start of the ``width``-second bucket holding ``ts``."""
    if width <= 0:
        raise ValueError(f"rollup width must be > 0 s, got {width!r}")
    return float(math.floor(ts / width) * width)


@dataclass(frozen=True, slots=True, order=True)
class RollupKey:
    device: str
    metric: str
    width: int
    bucket: float


@dataclass(frozen=True, slots=True)
class RollupCell:
    """Summary of the readings of one bucket."""

    n: int
    total: float
    min: float
    max: float
    first_ts: float
    last_ts: float

    @classmethod
    def of(cls, value: float, ts: float) -> RollupCell:
        return cls(1, value, value, value, ts, ts)

    @property
    def avg(self) -> float:
        return self.total / self.n

    def merge(self, other: RollupCell) -> RollupCell:
        """The cell summarising both cells' readings."""
        return RollupCell(
            self.n + other.n, self.total + other.total,
            min(self.min, other.min), max(self.max, other.max),
            min(self.first_ts, other.first_ts), max(self.last_ts, other.last_ts),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total, "avg": self.avg, "min": self.min,
                "max": self.max, "first_ts": self.first_ts, "last_ts": self.last_ts}


def rollup(
    readings: Iterable[Reading], widths: Iterable[int] = DEFAULT_WIDTHS
) -> dict[RollupKey, RollupCell]:
    """The rollup cells (deltas) of ``readings`` for each width."""
    widths = tuple(widths)
    for w in widths:
        bucket_of(0.0, w)  # validates the width
    # plain lists while accumulating: a cell object per reading would cost ~3x more
    acc: dict[tuple[str, str, int, float], list[Any]] = {}
    floor = math.floor
    for r in readings:
        ts, value = r.ts, r.value
        for w in widths:
            key = (r.device, r.metric, w, float(floor(ts / w) * w))
            a = acc.get(key)
            if a is None:
                acc[key] = [1, value, value, value, ts, ts]
            else:
                a[0] += 1
                a[1] += value
                if value < a[2]:
                    a[2] = value
                if value > a[3]:
                    a[3] = value
                if ts < a[4]:
                    a[4] = ts
                if ts > a[5]:
                    a[5] = ts
    return {RollupKey(*k): RollupCell(*a) for k, a in acc.items()}


def merge_into(
    target: dict[RollupKey, RollupCell], deltas: Mapping[RollupKey, RollupCell]
) -> None:
    """Fold ``deltas`` into ``target`` in place."""
    for key, cell in deltas.items():
        old = target.get(key)
        target[key] = cell if old is None else old.merge(cell)
