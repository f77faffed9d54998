"""What one simulated device says, reading by reading: topics, QoS and priority per
kind of message, telemetry payloads with labelled anomalies, boot and alert
events. Pure: the clock and the MQTT client live in :mod:`.worker`.

Topics follow the runtime's ``<group>/<device>/<kind>/<name>`` convention:

* ``<group>/<device>/data/telemetry``: QoS 1, priority 5 (may be evicted first);
* ``<group>/<device>/status/health``: QoS 1, priority 8, the client's own state;
* ``<group>/<device>/status/event/<boot|alert>``: QoS 2, priority 10.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from ..runtime.convention import DeviceTopics
from .anomalies import ActiveAnomaly, AnomalyInjector, Label
from .fleet import DeviceSpec
from .profiles import Profile, get_profile
from .signals import MetricSignal, derive_seed

__all__ = ["KIND_QOS", "DeviceModel", "Reading", "telemetry_ts"]

# message kind -> (qos, priority)
KIND_QOS: dict[str, tuple[int, int]] = {"telemetry": (1, 5), "status": (1, 8), "event": (2, 10)}


@dataclass(frozen=True, slots=True)
class Reading:
    """One telemetry reading: its payload, the label of an anomaly that ended with it,
    and an alert event's payload if an anomaly started with it."""

    tick: int
    ts: float
    payload: dict[str, Any]
    label: Label | None
    alert: dict[str, Any] | None


def telemetry_ts(spec: DeviceSpec, profile: Profile, t0: float, tick: int) -> float:
    """The scheduled time of reading ``tick`` for a fleet started at ``t0``."""
    return t0 + spec.offset + tick * profile.interval


class DeviceModel:
    """The deterministic behaviour of one device (no clock, no I/O).

    ``reading(tick, ts)`` must be called with consecutive ticks; ``skip_to(tick)``
    fast-forwards (a device that was powered off resumes with the values it would
    have had, so a run with a restart still matches the seed). No anomaly starts in
    the first ``warmup`` seconds of readings.
    """

    def __init__(
        self,
        spec: DeviceSpec,
        *,
        topic_group: str = "fleet",
        anomalies: bool = True,
        label_payload: bool = False,
        profile: Profile | None = None,
        warmup: float = 0.0,
    ) -> None:
        if not (warmup >= 0 and math.isfinite(warmup)):
            raise ValueError(f"warmup must be a finite number of seconds >= 0, got {warmup!r}")
        self.spec = spec
        self.profile = profile or get_profile(spec.profile)
        self.topics = DeviceTopics(topic_group, spec.device_id)
        self.telemetry_topic = self.topics.data("telemetry")
        self.status_topic = self.topics.status("health")
        self.label_payload = label_payload
        metrics = dict(self.profile.metrics)
        self._signals = {
            name: MetricSignal(m, random.Random(derive_seed(spec.seed, "metric", name)))
            for name, m in sorted(metrics.items())
        }
        self._injector = AnomalyInjector(
            spec.device_id, metrics, self.profile.failure_rate,
            random.Random(derive_seed(spec.seed, "anomaly")), enabled=anomalies,
            first_tick=math.ceil(warmup / self.profile.interval),
        )
        self.next_tick = 0

    def event_topic(self, name: str) -> str:
        return self.topics.status(f"event/{name}")

    @property
    def phases(self) -> dict[str, float]:
        """The per-metric phase of the sine drift (differs between devices)."""
        return {name: s.phase for name, s in self._signals.items()}

    @property
    def active(self) -> ActiveAnomaly | None:
        return self._injector.active

    def reading(self, tick: int, ts: float) -> Reading:
        """Reading number ``tick`` taken at ``ts`` (Unix seconds)."""
        if tick != self.next_tick:
            raise ValueError(f"expected reading {self.next_tick}, got {tick}; use skip_to()")
        self.next_tick = tick + 1
        t = tick * self.profile.interval
        clean = {name: s.value(t) for name, s in self._signals.items()}
        values, label, started = self._injector.step(tick, ts, clean)
        payload: dict[str, Any] = {
            "device": self.spec.device_id, "profile": self.profile.name,
            "tick": tick, "ts": round(ts, 3),
        }
        payload.update((k, v) for k, v in values.items() if v is not None)
        current = label or self._injector.active
        if self.label_payload and current is not None:
            payload["anomaly"] = {"kind": current.kind, "metric": current.metric}
        alert = None
        if started is not None and self._injector.enabled:
            alert = {"device": self.spec.device_id, "ts": round(ts, 3), "event": "alert",
                     "metric": started.metric, "kind": started.kind}
            if not self.label_payload:
                alert.pop("kind")
        return Reading(tick, ts, payload, label, alert)

    def skip_to(self, tick: int) -> None:
        """Advance to ``tick`` without producing readings (labels of skipped readings
        are discarded: nothing was published then)."""
        while self.next_tick < tick:
            self.reading(self.next_tick, 0.0)

    def finish(self, ts: float) -> Label | None:
        """The label of an anomaly still active at the end of the run (cut at ``ts``,
        ``truncated``)."""
        a = self._injector.active
        if a is None:
            return None
        self._injector.active = None
        last = max(a.start_tick, self.next_tick - 1)
        return Label(self.spec.device_id, a.metric, a.kind, a.start_tick, last, a.start, ts,
                     truncated=True)

    def boot_event(self, ts: float, boots: int) -> dict[str, Any]:
        return {"device": self.spec.device_id, "ts": round(ts, 3), "event": "boot",
                "profile": self.profile.name, "boot": boots}
