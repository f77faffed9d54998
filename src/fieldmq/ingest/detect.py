"""Streaming anomaly detection per device and metric, from telemetry values only.
Pure: no clock, no I/O; state lives in memory and warms up again after a restart.

Value detectors (one per series, chosen by ``DetectorConfig.method``):

* :class:`RollingMAD` (``"mad"``, the default): the robust z-score
  ``|x - median| / (1.4826 * MAD)`` over the last ``window`` readings; an alert when it
  exceeds ``threshold``. Median and MAD ignore up to half the window being anomalous, so
  a spike or a drift does not hide the next one.
* :class:`EWMA` (``"ewma"``): exponentially weighted mean and variance (``alpha``); an
  alert when ``|x - mean| / sd`` exceeds ``threshold``. Cheaper and smoother, adapts to
  level shifts; values are winsorised at ``mean +- threshold * sd`` before updating so one
  outlier cannot drag the baseline.
* ``"both"``: an alert when either fires.

Two checks for failures that no z-score sees:

* :class:`StuckDetector`: the value repeats exactly for longer than the series' own
  history makes plausible (``p ** run < p_alarm``, ``p`` the learned repeat rate, and at
  least ``min_run`` repeats): a frozen sensor.
* missing metric: a metric that the previous reading on the same topic had is absent
  (a dropout).

One alert per episode: after a series alerts, it stays quiet until ``rearm`` consecutive
normal readings. Readings older than the series' last one (late, out of order) are stored
but not scored. Nothing here reads the simulator's events or labels.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .records import Alert, MessageRow

__all__ = [
    "EWMA",
    "AnomalyDetector",
    "DetectorConfig",
    "EWMAConfig",
    "MADConfig",
    "RollingMAD",
    "StuckConfig",
    "StuckDetector",
]

_MAD_SCALE = 1.4826  # MAD of a normal distribution is 0.6745 sigma
_STEP_ALPHA = 0.05  # smoothing of the mean absolute step (the scale's floor)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class MADConfig:
    """``window`` readings, alert above robust z ``threshold`` once ``min_points`` seen;
    the scale never drops below half the series' mean absolute step between readings nor
    below ``min_scale``, so a quantised or saturated signal (MAD 0) does not divide by zero."""

    window: int = 60
    threshold: float = 7.0
    min_points: int = 30
    min_scale: float = 1e-6

    def __post_init__(self) -> None:
        if self.window < 3 or self.min_points < 3 or self.min_points > self.window:
            raise ValueError("MADConfig needs 3 <= min_points <= window")
        _positive("MADConfig.threshold", self.threshold)
        _positive("MADConfig.min_scale", self.min_scale)


@dataclass(frozen=True, slots=True)
class EWMAConfig:
    """Smoothing ``alpha`` (0-1), alert above z ``threshold`` after ``warmup`` readings."""

    alpha: float = 0.05
    threshold: float = 6.0
    warmup: int = 20
    min_scale: float = 1e-6

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"EWMAConfig.alpha must be in (0, 1), got {self.alpha!r}")
        if self.warmup < 2:
            raise ValueError("EWMAConfig.warmup must be >= 2")
        _positive("EWMAConfig.threshold", self.threshold)
        _positive("EWMAConfig.min_scale", self.min_scale)


@dataclass(frozen=True, slots=True)
class StuckConfig:
    """Alert after ``min_run`` exact repeats or more, once ``p ** run < p_alarm``, after
    ``warmup`` readings."""

    min_run: int = 3
    p_alarm: float = 1e-3
    learn_rate: float = 0.02
    warmup: int = 20

    def __post_init__(self) -> None:
        if self.min_run < 1 or self.warmup < 1:
            raise ValueError("StuckConfig.min_run and warmup must be >= 1")
        if not 0 < self.p_alarm < 1 or not 0 < self.learn_rate < 1:
            raise ValueError("StuckConfig.p_alarm and learn_rate must be in (0, 1)")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Which detectors run and how. ``stuck=None`` / ``missing=False`` disable those
    checks; ``rearm`` normal readings end an episode."""

    method: Literal["mad", "ewma", "both"] = "mad"
    mad: MADConfig = field(default_factory=MADConfig)
    ewma: EWMAConfig = field(default_factory=EWMAConfig)
    stuck: StuckConfig | None = field(default_factory=StuckConfig)
    missing: bool = True
    rearm: int = 3

    def __post_init__(self) -> None:
        if self.method not in ("mad", "ewma", "both"):
            raise ValueError(f"method must be 'mad', 'ewma' or 'both', got {self.method!r}")
        if self.rearm < 1:
            raise ValueError("rearm must be >= 1")


class RollingMAD:
    """Robust z-score of each value against the previous ``window`` values.

    A signal clamped at a physical bound (a CPU idling at 1 %) fills the window with one
    value and its MAD collapses to 0; any move off the bound would then score huge. So
    values equal to the lowest or highest the series ever reported are left out of the
    MAD (not the median) when a quarter of the window sits there and at least a third of
    ``min_points`` others remain, and the scale's floor is the mean
    absolute step between consecutive *different* readings (repeats carry no scale)."""

    def __init__(self, config: MADConfig | None = None) -> None:
        self.config = config or MADConfig()
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._step = 0.0
        self._low = math.inf
        self._high = -math.inf

    def score(self, x: float) -> float | None:
        """The robust z-score of ``x`` (``None`` while warming up); then remembers ``x``."""
        c = self.config
        s = self._sorted
        z = None
        n = len(s)
        if n >= c.min_points:
            half = n // 2
            med = s[half] if n % 2 else (s[half - 1] + s[half]) / 2
            lo = bisect.bisect_right(s, self._low)
            hi = bisect.bisect_left(s, self._high)
            lo = lo if 4 * lo >= n else 0  # saturated: a quarter of the window at a bound
            hi = hi if 4 * (n - hi) >= n else n
            inner = s[lo:hi] if hi - lo >= max(3, c.min_points // 3) else s
            dev = sorted(abs(v - med) for v in inner)
            m = len(dev) // 2
            mad = dev[m] if len(dev) % 2 else (dev[m - 1] + dev[m]) / 2
            z = abs(x - med) / max(_MAD_SCALE * mad, 0.5 * self._step, c.min_scale)
        if self._fifo and x != self._fifo[-1]:
            self._step += _STEP_ALPHA * (abs(x - self._fifo[-1]) - self._step)
        self._low, self._high = min(self._low, x), max(self._high, x)
        self._fifo.append(x)
        bisect.insort(s, x)
        if len(self._fifo) > c.window:
            old = self._fifo.popleft()
            del s[bisect.bisect_left(s, old)]
        return z


class EWMA:
    """z-score of each value against an exponentially weighted mean and variance."""

    def __init__(self, config: EWMAConfig | None = None) -> None:
        self.config = config or EWMAConfig()
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def score(self, x: float) -> float | None:
        """The z-score of ``x`` (``None`` while warming up); then updates the state."""
        c = self.config
        self.n += 1
        if self.n == 1:
            self.mean = x
            return None
        sd = max(math.sqrt(self.var), c.min_scale)
        z = abs(x - self.mean) / sd
        if self.n > c.warmup:
            limit = c.threshold * sd
            x = min(self.mean + limit, max(self.mean - limit, x))
        diff = x - self.mean
        self.mean += c.alpha * diff
        self.var = (1 - c.alpha) * (self.var + c.alpha * diff * diff)
        return z if self.n > c.warmup else None


class StuckDetector:
    """Counts exact repeats; ``update`` is ``True`` while the run is implausibly long.

    The repeat rate ``p`` is a Laplace-smoothed average ``(repeats + 1) / (n + 2)`` over
    the first ``1 / learn_rate`` comparisons (high while little is known, so a young
    series needs a longer run), an exponential average afterwards; it learns from the
    current run too, so a series whose repeats come in clusters needs a longer run.
    Nothing alerts before ``warmup`` comparisons. A run at the lowest or highest value
    the series ever reported, when the series had already been at that value before the
    run, is saturation at a physical bound (a CPU idling at its floor), not a frozen
    sensor, and never alerts; a first run at a new extreme may be either (a CPU reaching
    its floor for the first time, or a sensor freezing at a new high), so it needs twice
    the evidence: ``p ** run < p_alarm ** 2``."""

    def __init__(self, config: StuckConfig | None = None) -> None:
        self.config = config or StuckConfig()
        self.last: float | None = None
        self.run = 0
        self.seen = 0
        self.repeats = 0
        self.p_repeat = 0.5
        self.low = math.inf
        self.high = -math.inf
        self._at_low = 0  # readings at the lowest value so far
        self._at_high = 0

    def _bounds(self, x: float) -> None:
        if x < self.low:
            self.low, self._at_low = x, 0
        if x > self.high:
            self.high, self._at_high = x, 0
        self._at_low += x == self.low
        self._at_high += x == self.high

    def update(self, x: float) -> bool:
        c = self.config
        last, self.last = self.last, x
        self._bounds(x)
        if last is None:
            return False
        same = x == last
        self.run = self.run + 1 if same else 0
        p = self.p_repeat
        self.seen += 1
        self.repeats += same
        if self.seen * c.learn_rate < 1.0:
            self.p_repeat = (self.repeats + 1) / (self.seen + 2)
        else:
            self.p_repeat += c.learn_rate * ((1.0 if same else 0.0) - p)
        if self.run < c.min_run or self.seen <= c.warmup:
            return False
        alarm = math.log(c.p_alarm)
        if x == self.low or x == self.high:
            before = self._at_low if x == self.low else self._at_high
            if before > self.run + 1:  # the bound was reached before this run: saturation
                return False
            alarm *= 2  # a first run at a new extreme may be saturation: twice the evidence
        return p <= 0.0 or self.run * math.log(p) < alarm


class _Series:
    __slots__ = ("active", "calm", "last_ts", "stuck", "value")

    def __init__(self, config: DetectorConfig) -> None:
        self.value: list[RollingMAD | EWMA] = []
        if config.method in ("mad", "both"):
            self.value.append(RollingMAD(config.mad))
        if config.method in ("ewma", "both"):
            self.value.append(EWMA(config.ewma))
        self.stuck = StuckDetector(config.stuck) if config.stuck is not None else None
        self.last_ts = -math.inf
        self.active = False
        self.calm = 0


class AnomalyDetector:
    """Per device and metric state; :meth:`observe` one telemetry message at a time."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._series: dict[tuple[str, str], _Series] = {}
        self._metrics: dict[str, tuple[float, frozenset[str]]] = {}

    def __repr__(self) -> str:
        return f"AnomalyDetector(method={self.config.method!r}, series={len(self._series)})"

    def _gate(self, s: _Series, hit: bool) -> bool:
        if hit:
            s.calm = 0
            if not s.active:
                s.active = True
                return True
            return False
        if s.active:
            s.calm += 1
            if s.calm >= self.config.rearm:
                s.active = False
        return False

    def observe(self, row: MessageRow, values: Mapping[str, float]) -> list[Alert]:
        """The alerts raised by one telemetry message (``values``: metric -> value)."""
        alerts: list[Alert] = []
        device, ts = row.device, row.ts
        prev = self._metrics.get(row.topic)
        if prev is not None and ts <= prev[0]:
            return alerts  # late or replayed reading: stored, not scored
        names = frozenset(values)
        self._metrics[row.topic] = (ts, names)
        if self.config.missing and prev is not None:
            for metric in sorted(prev[1] - names):
                s = self._series.get((device, metric))
                if s is not None and self._gate(s, True):
                    alerts.append(self._alert(row, metric, None, "missing", 1.0,
                                              "metric absent from the reading"))
        for metric in sorted(values):
            key = (device, metric)
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = _Series(self.config)
            if ts <= s.last_ts:
                continue
            s.last_ts = ts
            x = values[metric]
            best: tuple[float, str] | None = None
            for det in s.value:
                z = det.score(x)
                limit = det.config.threshold
                if z is not None and z > limit and (best is None or z > best[0]):
                    best = (z, "mad" if isinstance(det, RollingMAD) else "ewma")
            stuck = s.stuck.update(x) if s.stuck is not None else False
            if best is None and stuck and s.stuck is not None:
                best = (float(s.stuck.run), "stuck")
            if self._gate(s, best is not None) and best is not None:
                detail = (f"value repeated {s.stuck.run} times" if best[1] == "stuck"
                          and s.stuck is not None else f"z={best[0]:.1f}")
                alerts.append(self._alert(row, metric, x, best[1], best[0], detail))
        return alerts

    def observe_many(self, items: Iterable[tuple[MessageRow, Mapping[str, float]]]) -> list[Alert]:
        """:meth:`observe` each message, in timestamp order per device."""
        out: list[Alert] = []
        for row, values in sorted(items, key=lambda item: (item[0].device, item[0].ts)):
            out.extend(self.observe(row, values))
        return out

    @staticmethod
    def _alert(row: MessageRow, metric: str, value: float | None, detector: str,
               score: float, detail: str) -> Alert:
        alert_id = f"{row.device}/{metric}/{detector}/{row.ts:.3f}"
        return Alert(alert_id, row.group, row.device, metric, row.ts, value, detector,
                     round(score, 3), detail)
