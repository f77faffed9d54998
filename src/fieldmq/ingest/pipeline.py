"""The ingest loop: subscribe, batch, detect, commit, then acknowledge.

``Ingestor`` owns a :class:`fieldmq.Client` with ``ack="manual"`` and a persistent
session. Received messages queue up; the loop commits them in batches (by size and time,
:class:`~fieldmq.ingest.batching.BatchPolicy`) and acknowledges each message only after
the batch holding it is committed. A process killed at any point therefore loses
nothing: the broker redelivers what was not acknowledged, and the sink's keys drop what
was already stored. Alerts are stored in the same commit and published afterwards to
``<group>/<device>/alerts`` (QoS 1, through the client's durable store).

One step of the loop is :meth:`Ingestor.process`, usable without a broker: give it
messages (anything with ``topic``, ``payload``, ``message_id`` and ``ack()``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..backoff import Backoff
from .batching import Batcher, BatchPolicy
from .detect import AnomalyDetector, DetectorConfig
from .errors import SinkError
from .raw import raw_batch
from .records import MAX_PAYLOAD, Alert, Batch, Decoded, Rejected, decode_message
from .sinks.base import Sink, WriteResult

__all__ = ["DEFAULT_FILTERS", "IngestConfig", "IngestStats", "Ingestor", "alert_topic"]

log = logging.getLogger("fieldmq.ingest")

DEFAULT_FILTERS = (
    "{group}/+/data/telemetry", "{group}/+/status/health", "{group}/+/status/event/#",
)


def alert_topic(alert: Alert) -> str:
    """``<group>/<device>/alerts``."""
    return f"{alert.group}/{alert.device}/alerts"


class _Msg(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def message_id(self) -> str | None: ...
    def ack(self) -> None: ...


class _Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """What to consume and how. ``filters`` may contain ``{group}``; ``share`` puts every
    subscription in the ``$share/<share>/`` group; ``detect=None`` turns detection off."""

    filters: tuple[str, ...] = DEFAULT_FILTERS
    group: str = "fleet"
    share: str | None = None
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    detect: DetectorConfig | None = field(default_factory=DetectorConfig)
    publish_alerts: bool = True
    max_payload: int = MAX_PAYLOAD

    def subscriptions(self) -> list[str]:
        subs = [f.format(group=self.group) for f in self.filters]
        if self.share:
            if "/" in self.share or not self.share.strip():
                raise ValueError(f"share group must be one topic level, got {self.share!r}")
            subs = [f"$share/{self.share}/{s}" for s in subs]
        return subs


@dataclass(slots=True)
class IngestStats:
    """Counters since start."""

    received: int = 0
    batches: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    alerts: int = 0
    write_errors: int = 0
    last_commit: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Ingestor:
    """Consume into ``sink``. With a ``client`` (``ack="manual"``), :meth:`run` loops;
    without one, call :meth:`process` yourself."""

    def __init__(
        self,
        *,
        sink: Sink,
        client: Any | None = None,
        config: IngestConfig | None = None,
        clock: Callable[[], float] = time.time,
        retry: Backoff | None = None,
    ) -> None:
        self.sink = sink
        self.client = client
        self.config = config or IngestConfig()
        self.detector = (AnomalyDetector(self.config.detect)
                         if self.config.detect is not None else None)
        self.stats = IngestStats()
        self._clock = clock
        self._retry = retry or Backoff(initial=0.2, maximum=10.0)
        # Received messages: the client's callback thread appends, run() takes them all at
        # once. A deque append is atomic and cheap; the event is set only when run() may be
        # waiting for it (it clears the event before looking at the deque).
        self._inbox: deque[_Msg] = deque()
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._subscribed = False

    def __repr__(self) -> str:
        return f"Ingestor(sink={self.sink!r}, received={self.stats.received})"

    # -- the pure-ish step -------------------------------------------------------------
    def process(self, messages: Sequence[_Msg]) -> WriteResult:
        """Decode, detect, commit and acknowledge one batch. On a sink error nothing is
        acknowledged and :class:`SinkError` propagates (the caller retries)."""
        now = self._clock()
        write_raw = getattr(self.sink, "write_raw", None)
        if self.detector is None and write_raw is not None:
            raw = raw_batch(((m.topic, bytes(m.payload), m.message_id) for m in messages),
                            now, self.config.max_payload)
            return self._done(messages, write_raw(raw), raw.rejected, [])
        decoded: list[Decoded] = []
        rejected: list[Rejected] = []
        for m in messages:
            d = decode_message(m.topic, bytes(m.payload), m.message_id, now,
                               max_payload=self.config.max_payload)
            if isinstance(d, Rejected):
                rejected.append(d)
            else:
                decoded.append(d)
        alerts: list[Alert] = []
        if self.detector is not None:
            keys = list(dict.fromkeys(d.message.message_id for d in decoded if d.readings))
            stored = self.sink.known(keys) if keys else set()
            seen: set[str] = set()
            fresh = []
            for d in decoded:
                key = d.message.message_id
                if d.readings and key not in stored and key not in seen:
                    seen.add(key)
                    fresh.append((d.message, {r.metric: r.value for r in d.readings}))
            alerts = self.detector.observe_many(fresh)
        batch = Batch(
            messages=tuple(d.message for d in decoded),
            readings=tuple(r for d in decoded for r in d.readings),
            rejected=tuple(rejected),
            alerts=tuple(alerts),
        )
        return self._done(messages, self.sink.write(batch), rejected, alerts)

    def _done(self, messages: Sequence[_Msg], result: WriteResult,
              rejected: Sequence[Rejected], alerts: Sequence[Alert]) -> WriteResult:
        """After the commit: acknowledge, count, log, publish the alerts."""
        for m in messages:
            m.ack()
        s = self.stats
        s.batches += 1
        s.inserted += result.inserted
        s.duplicates += result.duplicates
        s.rejected += result.rejected
        s.alerts += result.alerts
        s.last_commit = self._clock()
        for r in rejected:
            log.warning("rejected %s on %s: %s", r.message_id, r.topic, r.reason)
        log.info("committed %d messages: %d new, %d duplicates, %d rejected, %d alerts "
                 "(total %d new)", len(messages), result.inserted, result.duplicates,
                 result.rejected, result.alerts, s.inserted)
        if alerts and self.config.publish_alerts and self.client is not None:
            self._publish(self.client, alerts)
        return result

    def _publish(self, client: _Publisher, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            try:
                client.publish(alert_topic(a), json.dumps(a.as_dict()).encode(), qos=1)
            except Exception:  # the alert is stored; publishing is a notification
                log.exception("could not publish alert %s", a.alert_id)

    # -- the loop ---------------------------------------------------------------------
    def _on_message(self, msg: _Msg) -> None:
        self._inbox.append(msg)
        if not self._arrived.is_set():
            self._arrived.set()

    def start(self) -> None:
        """Subscribe (once). Messages queue until :meth:`run` commits them."""
        if self.client is None:
            raise RuntimeError("Ingestor.start() needs a client; use process() without one")
        if not self._subscribed:
            for sub in self.config.subscriptions():
                self.client.subscribe(sub, self._on_message, qos=1)
            self._subscribed = True

    def stop(self) -> None:
        """Ask :meth:`run` to commit what it holds and return."""
        self._stop.set()

    def run(self, *, idle_exit: float | None = None, max_messages: int | None = None) -> None:
        """Commit batches until :meth:`stop` (or ``idle_exit`` seconds without a message,
        or ``max_messages`` received); the last partial batch is committed before return."""
        self.start()
        batcher: Batcher[_Msg] = Batcher(self.config.batch)
        inbox, arrived = self._inbox, self._arrived
        room = self.config.batch.max_rows
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if not inbox:
                wait = batcher.wait(now)
                arrived.wait(0.2 if wait is None else min(wait, 0.2))
                now = time.monotonic()
            arrived.clear()
            taken: list[_Msg] = []
            while inbox and len(taken) < room - len(batcher):
                taken.append(inbox.popleft())
            if taken:
                last = now
                self.stats.received += len(taken)
                batcher.extend(taken, now)
            done = (self._stop.is_set()
                    or (idle_exit is not None and now - last >= idle_exit and not len(batcher))
                    or (max_messages is not None and self.stats.received >= max_messages))
            if batcher.due(now) or (done and len(batcher)):
                self._commit(batcher.take())
            if done and not inbox:
                return

    def _commit(self, messages: list[_Msg]) -> None:
        attempt = 0
        while True:
            try:
                self.process(messages)
                return
            except SinkError as exc:
                self.stats.write_errors += 1
                if self._stop.is_set():
                    log.error("batch of %d not committed at stop (%s); the broker will "
                              "redeliver it", len(messages), exc)
                    return
                delay = self._retry.delay(attempt)
                attempt += 1
                log.error("commit failed (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
