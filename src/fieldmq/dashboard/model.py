"""The dashboard's picture of the fleet, built from MQTT messages. Pure: no I/O, time
is passed in, so it is tested without a broker or a browser.

Messages follow the topic convention ``<group>/<device>/<kind>/<name>``:

* ``data/...`` with a JSON object payload: numeric fields are metrics (``ts`` is the
  reading's time when present), ``profile`` names the device's profile;
* ``status/health`` (JSON): the device client's own ``queued``/``queue_depth``,
  ``inflight``, ``connected``, ``reconnects``;
* ``status/online`` (``online``/``offline``, e.g. a last will);
* ``status/event/<name>`` (JSON): boot and alert events;
* ``alerts`` (JSON): anomalies found by the detector (``metric``, ``value``, ``score``...).

Memory is bounded: ``points`` readings per device and metric, ``history`` fleet samples,
``max_anomalies`` anomalies.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeviceState", "FleetModel"]

_SKIP_FIELDS = frozenset({"ts", "tick", "seq", "device", "profile", "boot", "anomaly"})


@dataclass(slots=True)
class DeviceState:
    device: str
    group: str
    profile: str | None = None
    online: bool | None = None
    last_seen: float | None = None
    queue_depth: int = 0
    inflight: int = 0
    reconnects: int = 0
    messages: int = 0
    boots: int = 0
    series: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def row(self, now: float, stale_after: float) -> dict[str, Any]:
        """The fleet-table row."""
        online = self.online
        if self.last_seen is not None and now - self.last_seen > stale_after:
            online = False
        return {
            "device": self.device,
            "group": self.group,
            "profile": self.profile,
            "online": bool(online) if online is not None else self.last_seen is not None,
            "last_seen": self.last_seen,
            "queue_depth": self.queue_depth,
            "inflight": self.inflight,
            "reconnects": self.reconnects,
            "messages": self.messages,
            "boots": self.boots,
        }


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


class FleetModel:
    """Consumes messages with :meth:`apply`; serves :meth:`snapshot`, :meth:`device` and
    the incremental updates collected since the last :meth:`drain_updates`."""

    def __init__(
        self,
        *,
        points: int = 600,
        history: int = 3600,
        max_anomalies: int = 500,
        stale_after: float = 30.0,
    ) -> None:
        if points < 2 or history < 2 or max_anomalies < 1:
            raise ValueError("points and history must be >= 2, max_anomalies >= 1")
        self.points = points
        self.stale_after = stale_after
        self.devices: dict[str, DeviceState] = {}
        self.queue_history: deque[tuple[float, int, int]] = deque(maxlen=history)
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=max_anomalies)
        self.audit: dict[str, Any] | None = None
        self.messages = 0
        self.ignored = 0
        self._updates: list[dict[str, Any]] = []

    # -- input --------------------------------------------------------------------------
    def apply(self, topic: str, payload: bytes, now: float) -> bool:
        """Fold one message in. Returns False (and counts it) when it is not understood."""
        parts = topic.split("/")
        if len(parts) < 3:
            self.ignored += 1
            return False
        group, device, kind = parts[0], parts[1], parts[2]
        name = "/".join(parts[3:])
        state = self.devices.get(device)
        if state is None:
            state = self.devices[device] = DeviceState(device=device, group=group)
            self._updates.append({"type": "device", "row": state.row(now, self.stale_after)})
        self.messages += 1
        state.messages += 1
        state.last_seen = now
        data = _decode(payload)
        if kind == "data":
            return self._telemetry(state, data, now)
        if kind == "status" and name == "online":
            state.online = payload.strip().lower() in (b"online", b"1", b"true", b'"online"')
            self._row(state, now)
            return True
        if kind == "status" and name.startswith("event"):
            if isinstance(data, dict) and data.get("event") == "boot":
                state.boots += 1
            self._row(state, now)
            return True
        if kind == "status":
            return self._status(state, data, now)
        if kind == "alerts" and isinstance(data, dict):
            anomaly = {"device": device, "at": _num(data.get("ts")) or now, **data}
            anomaly["device"] = device
            self.anomalies.appendleft(anomaly)
            self._updates.append({"type": "anomaly", "anomaly": anomaly})
            return True
        self.ignored += 1
        return False

    def _telemetry(self, state: DeviceState, data: Any, now: float) -> bool:
        if not isinstance(data, dict):
            self.ignored += 1
            return False
        if isinstance(data.get("profile"), str):
            state.profile = data["profile"]
        ts = _num(data.get("ts")) or now
        if state.online is None:
            state.online = True
        points = {}
        for key, value in data.items():
            v = _num(value)
            if v is None or key in _SKIP_FIELDS:
                continue
            series = state.series.get(key)
            if series is None:
                series = state.series[key] = deque(maxlen=self.points)
            series.append((ts, v))
            points[key] = v
        self._updates.append({"type": "points", "device": state.device, "ts": ts,
                              "values": points})
        self._row(state, now)
        return True

    def _status(self, state: DeviceState, data: Any, now: float) -> bool:
        if not isinstance(data, dict):
            self.ignored += 1
            return False
        depth = _num(data.get("queued", data.get("queue_depth")))
        if depth is not None:
            state.queue_depth = int(depth)
        if _num(data.get("inflight")) is not None:
            state.inflight = int(data["inflight"])
        if _num(data.get("reconnects")) is not None:
            state.reconnects = int(data["reconnects"])
        if isinstance(data.get("connected"), bool):
            state.online = data["connected"]
        if isinstance(data.get("profile"), str):
            state.profile = data["profile"]
        self._row(state, now)
        return True

    def local_status(self, device: str, group: str, now: float, *, queued: int,
                     inflight: int, connected: bool, reconnects: int) -> None:
        """A device's client state known locally (the demo's simulator knows it even while
        the broker is down and devices cannot report): same effect as a health status."""
        state = self.devices.get(device)
        if state is None:
            state = self.devices[device] = DeviceState(device=device, group=group)
        changed = (state.queue_depth, state.inflight, state.online, state.reconnects) != (
            queued, inflight, connected, reconnects)
        state.queue_depth, state.inflight = queued, inflight
        state.online, state.reconnects = connected, reconnects
        if changed:
            self._row(state, now)

    def _row(self, state: DeviceState, now: float) -> None:
        self._updates.append({"type": "device", "row": state.row(now, self.stale_after)})

    def set_audit(self, audit: dict[str, Any]) -> None:
        """Show loss-audit figures (sent, received, lost, duplicated...)."""
        self.audit = dict(audit)
        self._updates.append({"type": "audit", "audit": self.audit})

    # -- sampling and output ---------------------------------------------------------------
    def sample(self, now: float) -> tuple[float, int, int]:
        """Record the fleet's total queue depth now (call about once a second)."""
        depth = sum(d.queue_depth for d in self.devices.values())
        online = sum(1 for d in self.devices.values() if d.row(now, self.stale_after)["online"])
        point = (now, depth, online)
        self.queue_history.append(point)
        self._updates.append({"type": "fleet", "ts": now, "queue_depth": depth,
                              "online": online})
        return point

    def drain_updates(self) -> list[dict[str, Any]]:
        """The updates since the last call, device rows coalesced (latest wins)."""
        updates, self._updates = self._updates, []
        rows: dict[str, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []
        for u in updates:
            if u["type"] == "device":
                rows[u["row"]["device"]] = u
            else:
                out.append(u)
        return list(rows.values()) + out

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything the page needs to draw itself from scratch."""
        return {
            "now": now,
            "devices": [d.row(now, self.stale_after) for d in sorted(
                self.devices.values(), key=lambda d: d.device)],
            "queue_history": [list(p) for p in self.queue_history],
            "anomalies": list(self.anomalies)[:100],
            "audit": self.audit,
            "messages": self.messages,
        }

    def device(self, device: str) -> dict[str, Any] | None:
        """A device's row and its recent series ``{metric: [[ts...], [values...]]}``."""
        state = self.devices.get(device)
        if state is None:
            return None
        return {
            "row": state.row(state.last_seen or 0.0, self.stale_after),
            "series": {
                name: [[p[0] for p in pts], [p[1] for p in pts]]
                for name, pts in sorted(state.series.items())
            },
        }
