"""Labelled anomaly injection. Each device may start an anomaly at a reading with
its profile's ``failure_rate``; an anomaly lasts a few readings and is one of:

* ``spike``: the metric jumps into the profile's spike range (a CPU at 95 %);
* ``drift``: the metric ramps away from its normal value toward the spike range;
* ``stuck``: the sensor repeats the value it had when the anomaly started;
* ``dropout``: the metric is missing from the payload.

A spike or drift starts only when the spike range is at least :data:`MIN_DEPARTURE`
standard deviations (``MetricSpec.sd``) away from the metric's current clean value: a
"spike" to 90 % on a camera whose CPU already runs at 85 % changes nothing, and would
be a label no one could see in the data. Between two anomalies of a device there are
at least :data:`GAP` normal readings (two dropouts back to back would look like one).
With ``first_tick`` no anomaly starts before that reading (a warm-up in which
detectors learn the device's normal behaviour).

Every anomaly becomes a :class:`Label` (device, metric, kind, first and last reading,
start and end time): the ground truth that anomaly detection is scored against.
Deterministic from its own ``random.Random``; no I/O.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from .profiles import MetricSpec

__all__ = ["GAP", "KINDS", "MIN_DEPARTURE", "ActiveAnomaly", "AnomalyInjector", "Label"]

KINDS = ("spike", "drift", "stuck", "dropout")
MIN_DEPARTURE = 5.0  # standard deviations between the clean value and the spike range
GAP = 3  # normal readings at least between two anomalies of a device
_DURATION = {"spike": (1, 3), "drift": (6, 20), "stuck": (5, 15), "dropout": (3, 10)}


@dataclass(frozen=True, slots=True)
class Label:
    """One injected anomaly. ``start_tick``/``end_tick`` are the device's reading
    numbers (inclusive); ``start``/``end`` the readings' timestamps (Unix seconds).
    ``truncated``: the run ended while the anomaly was active (``end`` is the end of the
    run); it had not played out, so scoring does not count it in recall."""

    device: str
    metric: str
    kind: str
    start_tick: int
    end_tick: int
    start: float
    end: float
    truncated: bool = False

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
        first_tick: int = 0,
    ) -> None:
        if first_tick < 0:
            raise ValueError(f"first_tick must be >= 0, got {first_tick!r}")
        self.device = device
        self.first_tick = first_tick
        self.metrics = metrics
        self.failure_rate = failure_rate
        self.enabled = enabled
        self._names = sorted(metrics)
        self._rng = rng
        self.active: ActiveAnomaly | None = None
        self._quiet_until = first_tick  # no anomaly starts before this reading

    def _start(self, tick: int, ts: float, values: dict[str, float]) -> ActiveAnomaly | None:
        rng = self._rng
        kind = rng.choice(KINDS)
        metric = rng.choice(self._names)
        lo, hi = _DURATION[kind]
        length = rng.randint(lo, hi)
        spec = self.metrics[metric]
        if kind in ("spike", "drift"):
            x = values[metric]
            gap = max(spec.spike[0] - x, x - spec.spike[1], 0.0)
            if gap < MIN_DEPARTURE * spec.sd:
                return None
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
        if (a is None and self._rng.random() < self.failure_rate
                and tick >= self._quiet_until):
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
            self._quiet_until = max(self._quiet_until, tick + 1 + GAP)
        return out, label, started
