"""Per-worker counters, merged by the supervisor into one Prometheus text exposition.

Workers keep :class:`WorkerStats` (cheap, lock-protected counters) and send
:meth:`WorkerStats.snapshot` to the supervisor about once a second; the supervisor
keeps the latest snapshot per worker slot and renders them with :func:`render`.
Counters restart from zero when a worker process is restarted (Prometheus ``rate()``
handles counter resets). No dependency: the text format is written directly.

=============================================  =========  ==================================
metric                                         type       labels
=============================================  =========  ==================================
fieldmq_router_messages_total                  counter    worker, route, outcome
fieldmq_router_retries_total                   counter    worker, route
fieldmq_router_handler_seconds                 histogram  worker, route
fieldmq_router_worker_busy_seconds_total       counter    worker
fieldmq_router_worker_up                       gauge      worker (1 alive, 0 dead/restarting)
fieldmq_router_worker_restarts_total           counter    worker
fieldmq_router_workers                         gauge      state (desired, alive)
=============================================  =========  ==================================

``outcome`` is ``handled``, ``skipped``, ``dead_lettered`` or ``abandoned``.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["BUCKETS", "WorkerStats", "render"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0)
OUTCOMES = ("handled", "skipped", "dead_lettered", "abandoned")


class _RouteStats:
    __slots__ = ("buckets", "count", "outcomes", "retries", "sum")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.retries = 0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0


class WorkerStats:
    """Counters of one worker process. ``record`` is called per message outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _RouteStats] = {}
        self.busy = 0.0
        self.started = time.monotonic()

    def _route(self, route: str) -> _RouteStats:
        rs = self._routes.get(route)
        if rs is None:
            rs = self._routes[route] = _RouteStats()
        return rs

    def record(self, route: str, outcome: str, seconds: float) -> None:
        with self._lock:
            rs = self._route(route)
            if outcome == "retried":
                rs.retries += 1
                return
            rs.outcomes[outcome] += 1
            rs.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            rs.sum += seconds
            rs.count += 1
            self.busy += seconds

    def snapshot(self) -> dict[str, Any]:
        """A picklable copy: ``{"busy": s, "uptime": s, "routes": {pattern: {...}}}``."""
        with self._lock:
            return {
                "busy": self.busy,
                "uptime": time.monotonic() - self.started,
                "routes": {
                    name: {
                        "outcomes": dict(rs.outcomes),
                        "retries": rs.retries,
                        "buckets": list(rs.buckets),
                        "sum": rs.sum,
                        "count": rs.count,
                    }
                    for name, rs in self._routes.items()
                },
            }


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, object]]) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs) + "}"


def render(
    snapshots: Mapping[int, Mapping[str, Any]],
    *,
    alive: Mapping[int, bool],
    restarts: Mapping[int, int],
    desired: int,
) -> str:
    """The Prometheus text exposition of every worker's latest snapshot."""
    out: list[str] = []

    def head(name: str, kind: str, doc: str) -> None:
        out.append(f"# HELP {name} {doc}")
        out.append(f"# TYPE {name} {kind}")

    head("fieldmq_router_messages_total", "counter", "Messages by final outcome.")
    for slot in sorted(snapshots):
        for route, rs in sorted(snapshots[slot]["routes"].items()):
            for outcome in OUTCOMES:
                lbl = _labels((("worker", slot), ("route", route), ("outcome", outcome)))
                out.append(f"fieldmq_router_messages_total{lbl} {rs['outcomes'][outcome]}")
    head("fieldmq_router_retries_total", "counter", "Failed attempts that were retried.")
    for slot in sorted(snapshots):
        for route, rs in sorted(snapshots[slot]["routes"].items()):
            lbl = _labels((("worker", slot), ("route", route)))
            out.append(f"fieldmq_router_retries_total{lbl} {rs['retries']}")
    head("fieldmq_router_handler_seconds", "histogram",
         "Seconds from receipt to the final outcome (retries included).")
    for slot in sorted(snapshots):
        for route, rs in sorted(snapshots[slot]["routes"].items()):
            cumulative = 0
            for bound, n in zip((*BUCKETS, float("inf")), rs["buckets"], strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lbl = _labels((("worker", slot), ("route", route), ("le", le)))
                out.append(f"fieldmq_router_handler_seconds_bucket{lbl} {cumulative}")
            lbl = _labels((("worker", slot), ("route", route)))
            out.append(f"fieldmq_router_handler_seconds_sum{lbl} {rs['sum']!r}")
            out.append(f"fieldmq_router_handler_seconds_count{lbl} {rs['count']}")
    head("fieldmq_router_worker_busy_seconds_total", "counter",
         "Seconds the worker spent handling messages.")
    for slot in sorted(snapshots):
        lbl = _labels((("worker", slot),))
        out.append(f"fieldmq_router_worker_busy_seconds_total{lbl} {snapshots[slot]['busy']!r}")
    head("fieldmq_router_worker_up", "gauge", "1 while the worker process is running.")
    for slot in sorted(alive):
        out.append(f"fieldmq_router_worker_up{_labels((('worker', slot),))} {int(alive[slot])}")
    head("fieldmq_router_worker_restarts_total", "counter", "Restarts of the worker slot.")
    for slot in sorted(restarts):
        lbl = _labels((("worker", slot),))
        out.append(f"fieldmq_router_worker_restarts_total{lbl} {restarts[slot]}")
    head("fieldmq_router_workers", "gauge", "Worker processes wanted and running.")
    out.append(f'fieldmq_router_workers{{state="desired"}} {desired}')
    out.append(f'fieldmq_router_workers{{state="alive"}} {sum(1 for v in alive.values() if v)}')
    return "\n".join(out) + "\n"
