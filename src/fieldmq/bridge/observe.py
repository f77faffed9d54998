"""``/health`` and ``/metrics`` for the bridge, computed from :meth:`Bridge.stats`.

Health uses the service runtime's rules (:func:`fieldmq.runtime.health.evaluate`)
on the **upstream** link, whose store holds the backlog (connection, queue fill,
oldest message, store errors), and adds a check per extra part: the local link's
connection, the bridge's ticker, and messages waiting for room in a full store.
Metrics are Prometheus text rendered here (no dependency).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..runtime.health import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    HealthInputs,
    HealthReport,
    HealthThresholds,
    Reason,
    evaluate,
)

__all__ = ["OfflineTimer", "bridge_health", "render_metrics"]

_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


class OfflineTimer:
    """How long a link has been disconnected (``None`` while connected)."""

    def __init__(self) -> None:
        self._since: float | None = time.monotonic()

    def update(self, connected: bool, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        if connected:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        return now - self._since


def bridge_health(
    stats: Mapping[str, Any],
    *,
    max_messages: int,
    max_bytes: int,
    upstream_offline_for: float | None,
    local_offline_for: float | None,
    thresholds: HealthThresholds | None = None,
) -> HealthReport:
    """The bridge's health from a :meth:`Bridge.stats` snapshot."""
    t = thresholds or HealthThresholds()
    if stats.get("state") != "running" or "upstream" not in stats:
        return HealthReport(status=UNHEALTHY, reasons=(
            Reason("bridge", UNHEALTHY, f"the bridge is {stats.get('state')}"),))
    up = stats["upstream"]
    report = evaluate(HealthInputs(
        connected=bool(up.get("connected")),
        offline_for=upstream_offline_for,
        queued=int(up.get("queued", 0)) + int(up.get("inflight", 0)),
        max_messages=max_messages,
        store_bytes=up.get("queued_bytes"),
        max_bytes=max_bytes,
        oldest_age=up.get("oldest_age"),
        store_error=up.get("store_error"),
    ), t)
    reasons = list(report.reasons)
    if local_offline_for is not None:
        grade = (HEALTHY if local_offline_for < t.offline_degraded_after
                 else DEGRADED if local_offline_for < t.offline_unhealthy_after else UNHEALTHY)
        if grade != HEALTHY:
            reasons.append(Reason("local", grade, f"disconnected from the local broker for "
                                                  f"{local_offline_for:.0f}s"))
    if stats.get("tick_age", 0.0) > 30:
        reasons.append(Reason("bridge", UNHEALTHY,
                              f"the bridge ticker made no progress for {stats['tick_age']:.0f}s"))
    if stats.get("retry_backlog", 0):
        reasons.append(Reason("bridge", DEGRADED, f"{stats['retry_backlog']} messages wait for "
                                                  "room in a full store"))
    status = max([report.status, *(r.status for r in reasons)], key=lambda s: _RANK[s])
    checks = dict(report.checks, local_connected=local_offline_for is None,
                  retry_backlog=stats.get("retry_backlog", 0))
    return HealthReport(status=status, reasons=tuple(reasons), checks=checks)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(stats: Mapping[str, Any], health: HealthReport | None = None) -> bytes:
    """Prometheus text exposition (version 0.0.4) of a :meth:`Bridge.stats` snapshot."""
    lines: list[str] = []

    def metric(name: str, kind: str, doc: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {float(value):g}")

    events = ("forwarded", "rolled_up", "loops", "retries", "invalid", "unmatched")
    per = stats.get("mappings", {})
    for event in events:
        samples = [(f'{{mapping="{_esc(name)}"}}', counts.get(event, 0))
                   for name, counts in sorted(per.items()) if event in counts]
        metric(f"fieldmq_bridge_{event}_messages_total", "counter",
               f"messages {event.replace('_', ' ')} by the bridge, per mapping", samples)
    roll = stats.get("rollups")
    if roll:
        metric("fieldmq_bridge_rollup_values_total", "counter", "numeric values rolled up",
               [("", roll["values"])])
        metric("fieldmq_bridge_rollup_non_numeric_total", "counter",
               "rollup messages without a numeric value", [("", roll["non_numeric"])])
        metric("fieldmq_bridge_rollup_summaries_total", "counter", "summaries published",
               [("", roll["published"])])
        metric("fieldmq_bridge_rollup_open_intervals", "gauge", "intervals being summarised",
               [("", roll["open"])])
    metric("fieldmq_bridge_retry_backlog_messages", "gauge",
           "messages waiting for room in a full store", [("", stats.get("retry_backlog", 0))])
    for side in ("local", "upstream"):
        s = stats.get(side)
        if not s:
            continue
        lab = f'{{side="{side}"}}'
        metric(f"fieldmq_bridge_{side}_connected", "gauge", f"1 while the {side} link is up",
               [("", 1 if s.get("connected") else 0)])
        metric(f"fieldmq_bridge_{side}_queue_messages", "gauge",
               f"messages queued or in flight towards the {side} broker",
               [(lab, int(s.get("queued", 0)) + int(s.get("inflight", 0)))])
        metric(f"fieldmq_bridge_{side}_queue_bytes", "gauge",
               f"bytes queued towards the {side} broker", [(lab, s.get("queued_bytes", 0))])
        metric(f"fieldmq_bridge_{side}_oldest_message_age_seconds", "gauge",
               "age of the oldest unacknowledged message", [(lab, s.get("oldest_age") or 0)])
        metric(f"fieldmq_bridge_{side}_acked_messages_total", "counter",
               f"messages acknowledged by the {side} broker", [(lab, s.get("acked", 0))])
        metric(f"fieldmq_bridge_{side}_reconnects_total", "counter",
               f"reconnections to the {side} broker", [(lab, s.get("reconnects", 0))])
        dropped = s.get("dropped", {})
        metric(f"fieldmq_bridge_{side}_dropped_messages_total", "counter",
               "messages dropped by the store, by reason",
               [(f'{{reason="{_esc(r)}"}}', n) for r, n in sorted(dropped.items())])
    if health is not None:
        metric("fieldmq_bridge_health_status", "gauge", "0 healthy, 1 degraded, 2 unhealthy",
               [("", _RANK[health.status])])
    return ("\n".join(lines) + "\n").encode()
