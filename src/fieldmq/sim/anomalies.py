"""Labelled anomaly injection. Each device may start an anomaly at a reading with
its profile's ``failure_rate``; an anomaly lasts a few readings and is one of:

* ``spike``: the metric jumps into the profile's spike range (a CPU at 95 %);
* ``drift``: the metric ramps away from its normal value toward the spike range;
* ``stuck``: the sensor repeats the value it had when the anomaly started;
* ``dropout``: the metric is missing from the payload.

Every anomaly becomes a :class:`Label` (device, metric, kind, first and last
reading, start and end time): the ground truth that anomaly detection is scored
against. Deterministic from its own ``random.Random``; no I/O.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from .profiles import MetricSpec

__all__ = ["KINDS", "ActiveAnomaly", "AnomalyInjector", "Label"]

KINDS = ("spike", "drift", "stuck", "dropout")
_DURATION = {"spike": (1, 3), "drift": (6, 20), "stuck": (5, 15), "dropout": (3, 10)}


@dataclass(frozen=True, slots=True)
class Label:
    """One injected anomaly. ``start_tick``/``end_tick`` are the device's reading
    numbers (inclusive); ``start``/``end`` the readings' timestamps (Unix seconds)."""

    device: str
    metric: str
    kind: str
    start_tick: int
    end_tick: int
    start: float
    end: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ActiveAnomaly:
    metric: str
    kind: str
    start_tick: int
    end_tick: int
    start: float
    param: float  # spike: unused; drift: total ramp; stuck: the frozen value


class AnomalyInjector:
    """Decides, reading by reading, whether an anomaly is active and alters values.

    ``step(tick, ts, values)`` takes the clean values of one reading and returns the
    injected ones (``None`` for a dropped-out metric) and the :class:`Label` of an
    anomaly that ended at this reading, if any. ``enabled=False`` consumes the same
    random numbers but changes nothing (clean and injected runs stay aligned).
    """

    def __init__(
        self,
        device: str,
        metrics: dict[str, MetricSpec],
        failure_rate: float,
        rng: random.Random,
        *,
        enabled: bool = True,
    ) -> None:
        self.device = device
        self.metrics = metrics
        self.failure_rate = failure_rate
        self.enabled = enabled
        self._names = sorted(metrics)
        self._rng = rng
        self.active: ActiveAnomaly | None = None

    def _start(self, tick: int, ts: float, values: dict[str, float]) -> ActiveAnomaly:
        rng = self._rng
        kind = rng.choice(KINDS)
        metric = rng.choice(self._names)
        lo, hi = _DURATION[kind]
        length = rng.randint(lo, hi)
        spec = self.metrics[metric]
        if kind == "drift":
            target = rng.uniform(*spec.spike)
            param = target - values[metric]
        elif kind == "stuck":
            param = values[metric]
        else:
            param = 0.0
        return ActiveAnomaly(metric, kind, tick, tick + length - 1, ts, param)

    def step(
        self, tick: int, ts: float, values: dict[str, float]
    ) -> tuple[dict[str, float | None], Label | None, ActiveAnomaly | None]:
        """Apply the anomaly (if any) to one reading.

        Returns ``(values, ended_label, started)``: the altered values, the label of
        an anomaly whose last reading this is, and the anomaly that started here.
        """
        out: dict[str, float | None] = dict(values)
        started = None
        a = self.active
        if a is None and self._rng.random() < self.failure_rate:
            a = self.active = started = self._start(tick, ts, values)
        if a is None:
            return out, None, None
        spec = self.metrics[a.metric]
        if a.kind == "spike":
            spiked = self._rng.uniform(*spec.spike)
            if self.enabled:
                out[a.metric] = round(spiked, spec.decimals)
        elif a.kind == "drift":
            span = a.end_tick - a.start_tick + 1
            ramp = a.param * (tick - a.start_tick + 1) / span
            if self.enabled:
                base = values[a.metric]
                out[a.metric] = round(min(spec.high, max(spec.low, base + ramp)), spec.decimals)
        elif a.kind == "stuck":
            if self.enabled:
                out[a.metric] = a.param
        elif self.enabled:  # dropout
            out[a.metric] = None
        label = None
        if tick >= a.end_tick:
            label = Label(self.device, a.metric, a.kind, a.start_tick, a.end_tick, a.start, ts)
            self.active = None
        return out, label, started
