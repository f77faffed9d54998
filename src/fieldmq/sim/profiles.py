"""Device profiles: what each kind of device measures, around which baseline, how
noisy, how often it reports and how often it misbehaves (seed 06: a camera runs
hot and busy, a sensor idles). Pure data; no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["PROFILES", "MetricSpec", "Profile", "get_profile"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One measured quantity.

    The value is ``base + drift + wander + noise`` clamped to ``[low, high]``:
    ``drift`` is a sine of amplitude ``amplitude`` and period ``period`` seconds with
    a per-device phase, ``wander`` a slow AR(1) walk of standard deviation
    ``wander`` (correlation ``0.98`` per reading), ``noise`` white Gaussian jitter of
    standard deviation ``noise``. ``spike`` is the range an anomaly spike jumps into.
    """

    base: float
    amplitude: float
    noise: float
    low: float
    high: float
    spike: tuple[float, float]
    wander: float = 0.0
    period: float = 300.0
    decimals: int = 1
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"MetricSpec: low {self.low} must be < high {self.high}")
        if not self.low <= self.base <= self.high:
            raise ValueError(f"MetricSpec: base {self.base} outside [{self.low}, {self.high}]")
        lo, hi = self.spike
        if not self.low <= lo <= hi <= self.high:
            raise ValueError(f"MetricSpec: spike range {self.spike} outside the bounds")
        for name in ("amplitude", "noise", "wander"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"MetricSpec: {name} must be >= 0, got {value!r}")
        if not self.period > 0:
            raise ValueError(f"MetricSpec: period must be > 0 s, got {self.period!r}")

    @property
    def sd(self) -> float:
        """The standard deviation of the clean value around ``base`` (sine, wander and
        noise together; clamping ignored)."""
        return math.sqrt(self.amplitude**2 / 2 + self.wander**2 + self.noise**2)


@dataclass(frozen=True, slots=True)
class Profile:
    """A kind of device: its metrics, telemetry and status intervals (seconds) and the
    probability per telemetry reading that an anomaly starts (``failure_rate``)."""

    name: str
    metrics: Mapping[str, MetricSpec]
    interval: float
    status_interval: float
    failure_rate: float
    description: str = ""
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError(f"profile {self.name!r} has no metrics")
        if not self.interval > 0 or not self.status_interval > 0:
            raise ValueError(f"profile {self.name!r}: intervals must be > 0 s")
        if not 0 <= self.failure_rate <= 1:
            raise ValueError(f"profile {self.name!r}: failure_rate must be in [0, 1]")

    def scaled(self, factor: float) -> Profile:
        """The same profile reporting ``factor`` times as often (``factor`` > 0)."""
        if not factor > 0:
            raise ValueError(f"rate factor must be > 0, got {factor!r}")
        return Profile(
            name=self.name,
            metrics=self.metrics,
            interval=self.interval / factor,
            status_interval=self.status_interval / factor,
            failure_rate=self.failure_rate,
            description=self.description,
            tags=self.tags,
        )


def _cpu(base: float, var: float) -> MetricSpec:
    return MetricSpec(base=base, amplitude=5.0, noise=var / 6, wander=var / 2, low=1.0,
                      high=99.0, spike=(88.0, 99.0), unit="%")


def _temp(base: float, var: float) -> MetricSpec:
    return MetricSpec(base=base, amplitude=var / 2, noise=var / 10, wander=var / 4, low=-20.0,
                      high=105.0, spike=(78.0, 92.0), decimals=2, unit="C", period=900.0)


def _mem(base: float) -> MetricSpec:
    return MetricSpec(base=base, amplitude=4.0, noise=0.5, wander=3.0, low=2.0, high=99.0,
                      spike=(95.0, 99.0), unit="%", period=1200.0)


def _rssi(base: float) -> MetricSpec:
    return MetricSpec(base=base, amplitude=4.0, noise=1.5, wander=3.0, low=-120.0, high=-30.0,
                      spike=(-120.0, -110.0), decimals=0, unit="dBm", period=600.0)


def _battery(base: float) -> MetricSpec:
    return MetricSpec(base=base, amplitude=6.0, noise=0.2, wander=2.0, low=0.0, high=100.0,
                      spike=(0.0, 5.0), unit="%", period=3600.0)


PROFILES: Mapping[str, Profile] = MappingProxyType({
    "sensor": Profile(
        name="sensor",
        description="battery sensor node: idle CPU, cool, reports every 10 s",
        metrics={"cpu_percent": _cpu(8, 6), "temperature_c": _temp(42.0, 5.0),
                 "memory_percent": _mem(30.0), "signal_dbm": _rssi(-78.0),
                 "battery_percent": _battery(80.0)},
        interval=10.0, status_interval=60.0, failure_rate=0.03,
    ),
    "camera": Profile(
        name="camera",
        description="IP camera: hot and busy, reports every 5 s",
        metrics={"cpu_percent": _cpu(65, 20), "temperature_c": _temp(61.0, 10.0),
                 "memory_percent": _mem(70.0), "signal_dbm": _rssi(-65.0)},
        interval=5.0, status_interval=30.0, failure_rate=0.02,
    ),
    "gateway": Profile(
        name="gateway",
        description="edge gateway on 4G: moderate load, reports every 5 s",
        metrics={"cpu_percent": _cpu(35, 12), "temperature_c": _temp(52.0, 6.0),
                 "memory_percent": _mem(55.0), "signal_dbm": _rssi(-85.0)},
        interval=5.0, status_interval=30.0, failure_rate=0.015,
    ),
    "controller": Profile(
        name="controller",
        description="PLC-like controller: steady, reports every 2 s",
        metrics={"cpu_percent": _cpu(20, 4), "temperature_c": _temp(47.0, 3.0),
                 "memory_percent": _mem(40.0)},
        interval=2.0, status_interval=20.0, failure_rate=0.01,
    ),
})


def get_profile(name: str) -> Profile:
    """The built-in profile ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown device profile {name!r}; known profiles: {', '.join(PROFILES)}"
        ) from None
