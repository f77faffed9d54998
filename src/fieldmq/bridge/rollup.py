"""Rollup arithmetic: per-interval summaries of numeric payloads. Pure: no I/O.

What counts as a value (:func:`extract_value`):

* a payload that is a JSON number (``21.5``, ``-3``, ``1e3``), or
* a JSON object whose ``field`` is a JSON number; ``field`` may be a dotted path
  into nested objects (``"sensor.temp"`` reads ``{"sensor": {"temp": 21.5}}``).

Booleans, strings (``"21.5"`` quoted), ``null``, arrays, NaN and infinities,
payloads that are not UTF-8 JSON, and objects without the field are *not*
values. Such a message is counted in the interval's ``non_numeric`` and logged by
the bridge; it is never silently dropped and never changes min/max/mean/last.

An interval is ``[start, start + interval)`` on the wall clock, aligned to
multiples of ``interval`` since the epoch (so gateways' summaries line up). The
summary (:meth:`Aggregate.summary`) is::

    {"topic": "plant/pump1/temp", "start": 1700000040.0, "end": 1700000100.0,
     "count": 12, "min": 20.5, "max": 22.0, "mean": 21.25, "last": 21.0,
     "non_numeric": 0}

``count`` counts numeric values only; with no numeric value, min/max/mean/last are
``null`` (a summary is still sent when non-numeric messages arrived).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Aggregate", "NonNumeric", "extract_value", "interval_start"]


class NonNumeric(ValueError):
    """The payload holds no numeric value; the message says why."""


def interval_start(now: float, interval: float) -> float:
    """Start of the epoch-aligned interval containing ``now``."""
    return float(math.floor(now / interval) * interval)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return f if math.isfinite(f) else None


def extract_value(payload: bytes, field: str | None = "value") -> float:
    """The numeric value of ``payload`` (see the module doc); raises :class:`NonNumeric`."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise NonNumeric(f"not JSON ({exc.__class__.__name__})") from None
    number = _number(doc)
    if number is not None:
        return number
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        raise NonNumeric("not a finite number")
    if not isinstance(doc, dict):
        raise NonNumeric(f"a JSON {type(doc).__name__}, not a number or object")
    if field is None:
        raise NonNumeric("a JSON object, and the mapping names no field")
    node: Any = doc
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            raise NonNumeric(f"no field {field!r}")
        node = node[part]
    number = _number(node)
    if number is None:
        raise NonNumeric(f"field {field!r} is {json.dumps(node)[:40]}, not a finite number")
    return number


@dataclass(slots=True)
class Aggregate:
    """The running summary of one topic in one interval."""

    start: float
    interval: float
    count: int = 0
    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    last: float | None = None
    non_numeric: int = 0

    @property
    def end(self) -> float:
        return self.start + self.interval

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = value if self.minimum is None else min(self.minimum, value)
        self.maximum = value if self.maximum is None else max(self.maximum, value)
        self.last = value

    def add_non_numeric(self) -> None:
        self.non_numeric += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def empty(self) -> bool:
        return self.count == 0 and self.non_numeric == 0

    def due(self, now: float) -> bool:
        """True once the interval has ended at wall time ``now``."""
        return now >= self.end

    def summary(self, topic: str) -> dict[str, Any]:
        return {
            "topic": topic,
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean,
            "last": self.last,
            "non_numeric": self.non_numeric,
        }

    def payload(self, topic: str) -> bytes:
        return json.dumps(self.summary(topic), separators=(",", ":")).encode()
