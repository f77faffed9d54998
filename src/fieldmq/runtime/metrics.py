"""Prometheus metrics of a service, exposed through ``prometheus-client``.

Install the extra: ``pip install 'fieldmq[metrics]'``. Each service has its own
registry (no global state: two services in one process, or a test suite, never
collide). Values are read from the client's ``stats()`` at scrape time, so they
are never stale; the publish-to-ack latency is a histogram fed by
:class:`AckTimer` for messages published through the service.

=========================================  =========  =====================================
metric                                     type       meaning
=========================================  =========  =====================================
fieldmq_service_info{app,client_id,...}    info       constant 1, identifies the service
fieldmq_up_seconds                         gauge      seconds since the service started
fieldmq_connected                          gauge      1 while connected to a broker
fieldmq_queue_messages                     gauge      messages queued, not yet sent
fieldmq_inflight_messages                  gauge      messages sent, not yet acknowledged
fieldmq_queue_bytes                        gauge      payload bytes held by the queue
fieldmq_store_bytes                        gauge      size of the store on disk
fieldmq_oldest_message_age_seconds         gauge      age of the oldest unacknowledged message
fieldmq_published_messages_total           counter    messages accepted by publish()
fieldmq_acked_messages_total               counter    messages acknowledged by the broker
fieldmq_dropped_messages_total{reason}     counter    messages dropped, by reason
fieldmq_reconnects_total                   counter    reconnections to a broker
fieldmq_health_status                      gauge      0 healthy, 1 degraded, 2 unhealthy
fieldmq_cpu_temperature_celsius            gauge      where the board reports it
fieldmq_disk_free_bytes                    gauge      free space where the store lives
fieldmq_throttled                          gauge      vcgencmd get_throttled bits (Pi)
fieldmq_publish_ack_seconds                histogram  publish() to broker acknowledgement
=========================================  =========  =====================================
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .health import DEGRADED, HEALTHY, UNHEALTHY, HealthReport

if TYPE_CHECKING:
    from ..client.handle import PublishHandle

__all__ = ["AckTimer", "ServiceMetrics", "metrics_available"]

_HEALTH_VALUE = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                   900, 3600)


def metrics_available() -> bool:
    """True when ``prometheus-client`` is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class ServiceMetrics:
    """A registry with the service's metrics. ``snapshot`` returns the latest
    measurements (client stats plus ``health``, ``temperature_c``, ``disk_free``,
    ``throttled`` and ``uptime``) or ``None`` while the client is not running."""

    def __init__(
        self,
        *,
        info: Mapping[str, str],
        snapshot: Callable[[], Mapping[str, Any] | None],
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Histogram
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise RuntimeError(
                "metrics need prometheus-client: pip install 'fieldmq[metrics]'"
            ) from exc
        self._info = dict(info)
        self._snapshot = snapshot
        self.registry = CollectorRegistry(auto_describe=True)
        self.ack_latency = Histogram(
            "fieldmq_publish_ack_seconds",
            "Seconds from publish() to the broker's acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(self))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, owner: ServiceMetrics) -> None:
        self._owner = owner

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        o = self._owner
        yield InfoMetricFamily("fieldmq_service", "Identity of this fieldmq service.",
                               value=o._info)
        snap = o._snapshot()
        if snap is None:
            return

        def gauge(name: str, doc: str, value: Any) -> Iterator[Any]:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))

        def counter(name: str, doc: str, value: Any) -> Iterator[Any]:
            if value is not None:
                yield CounterMetricFamily(name, doc, value=float(value))

        yield from gauge("fieldmq_up_seconds", "Seconds since the service started.",
                         snap.get("uptime"))
        connected = snap.get("connected")
        yield from gauge("fieldmq_connected", "1 while connected to a broker.",
                         None if connected is None else int(bool(connected)))
        yield from gauge("fieldmq_queue_messages", "Messages queued and not yet sent.",
                         snap.get("queued"))
        yield from gauge("fieldmq_inflight_messages", "Messages sent, not yet acknowledged.",
                         snap.get("inflight"))
        yield from gauge("fieldmq_queue_bytes", "Payload bytes held by the queue.",
                         snap.get("queued_bytes"))
        yield from gauge("fieldmq_store_bytes", "Size of the store on disk in bytes.",
                         snap.get("store_bytes"))
        oldest = snap.get("oldest_age")
        yield from gauge("fieldmq_oldest_message_age_seconds",
                         "Age of the oldest unacknowledged message (0 when none).",
                         0.0 if oldest is None and "queued" in snap else oldest)
        yield from counter("fieldmq_published_messages", "Messages accepted by publish().",
                           snap.get("published"))
        yield from counter("fieldmq_acked_messages", "Messages acknowledged by the broker.",
                           snap.get("acked"))
        yield from counter("fieldmq_reconnects", "Reconnections to a broker.",
                           snap.get("reconnects"))
        dropped = snap.get("dropped")
        if isinstance(dropped, Mapping):
            fam = CounterMetricFamily("fieldmq_dropped_messages",
                                      "Messages dropped, by reason.", labels=["reason"])
            for reason, count in sorted(dropped.items()):
                fam.add_metric([str(reason)], float(count))
            yield fam
        health = snap.get("health")
        if isinstance(health, HealthReport):
            yield from gauge("fieldmq_health_status",
                             "Health: 0 healthy, 1 degraded, 2 unhealthy.",
                             _HEALTH_VALUE[health.status])
        yield from gauge("fieldmq_cpu_temperature_celsius", "CPU temperature in Celsius.",
                         snap.get("temperature_c"))
        yield from gauge("fieldmq_disk_free_bytes", "Free bytes where the store lives.",
                         snap.get("disk_free"))
        yield from gauge("fieldmq_throttled", "Raspberry Pi get_throttled bit field.",
                         snap.get("throttled"))


class AckTimer:
    """Measure publish-to-ack latency of published messages on a background thread.

    ``track(handle)`` records the publish time; the thread waits on the oldest
    tracked handle and reports ``observe(seconds)`` once it is acknowledged
    (dropped and expired messages are not latencies and are skipped). At most
    ``limit`` handles are tracked at once: while the backlog is larger (a long
    outage), new messages are not sampled, so memory stays bounded.
    """

    def __init__(self, observe: Callable[[float], None], *, name: str, limit: int = 10_000) -> None:
        self._observe = observe
        self._limit = limit
        self._pending: collections.deque[tuple[PublishHandle, float]] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def track(self, handle: PublishHandle) -> None:
        with self._cond:
            if self._stopped:
                return
            if len(self._pending) >= self._limit:
                self.skipped += 1
                return
            self._pending.append((handle, time.monotonic()))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                handle, started = self._pending[0]
            try:
                handle.wait(0.5)
            except TimeoutError:
                continue
            except Exception:  # dropped or expired: no latency to report
                pass
            else:
                self._observe(max(0.0, time.monotonic() - started))
            with self._cond:
                if self._pending and self._pending[0][0] is handle:
                    self._pending.popleft()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join(2.0)
