"""Feeds the fleet model from MQTT and fans updates out to any number of live pages.

A :class:`Hub` owns a :class:`~fieldmq.dashboard.model.FleetModel` behind a lock. A
background thread samples the fleet once a second and cuts the model's updates into
numbered batches; each page's event stream sends the batches it has not seen yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..client.client import Client
from ..client.message import Message
from .model import FleetModel

__all__ = ["Hub"]

log = logging.getLogger("fieldmq.dashboard")


class Hub:
    """Thread-safe access to the model plus numbered update batches."""

    def __init__(self, model: FleetModel | None = None, *, clock: Callable[[], float] = time.time,
                 interval: float = 0.5, keep_batches: int = 240) -> None:
        self.model = model or FleetModel()
        self.lock = threading.Lock()
        self._clock = clock
        self._interval = interval
        self._batches: deque[tuple[int, list[dict[str, Any]]]] = deque(maxlen=keep_batches)
        self._next_batch = 1
        self._cond = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self._last_sample = 0.0

    # -- input ---------------------------------------------------------------------------
    def apply(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.model.apply(topic, payload, self._clock())

    def on_message(self, msg: Message) -> None:
        self.apply(msg.topic, msg.payload)

    def local_status(self, device: str, group: str, *, queued: int, inflight: int,
                     connected: bool, reconnects: int) -> None:
        """See :meth:`FleetModel.local_status`."""
        with self.lock:
            self.model.local_status(device, group, self._clock(), queued=queued,
                                    inflight=inflight, connected=connected,
                                    reconnects=reconnects)

    def set_audit(self, audit: dict[str, Any]) -> None:
        with self.lock:
            self.model.set_audit(audit)

    def connect(self, broker: str, *, group: str = "+", client_id: str = "fieldmq-dashboard",
                protocol: int = 5) -> None:
        """Subscribe to a fleet's data, status and alerts on ``broker``."""
        client = Client(client_id=client_id, brokers=[broker], store=None,
                        protocol=5 if protocol == 5 else 4)
        for flt in (f"{group}/+/data/#", f"{group}/+/status/#", f"{group}/+/alerts"):
            client.subscribe(flt, self.on_message, qos=1)
        self._client = client

    # -- batching ------------------------------------------------------------------------
    def start(self) -> Hub:
        self._thread = threading.Thread(target=self._run, name="fieldmq-dashboard-hub",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()

    def tick(self) -> int:
        """Sample (once a second) and cut a batch of updates; returns its number (0: none)."""
        now = self._clock()
        with self._cond:
            if now - self._last_sample >= 1.0:
                self._last_sample = now
                self.model.sample(now)
            updates = self.model.drain_updates()
            if not updates:
                return 0
            number = self._next_batch
            self._next_batch += 1
            self._batches.append((number, updates))
            self._cond.notify_all()
            return number

    def batches_after(self, last: int) -> tuple[int, list[dict[str, Any]]]:
        """Updates in batches numbered above ``last``, and the newest batch number."""
        with self.lock:
            out: list[dict[str, Any]] = []
            newest = last
            for number, updates in self._batches:
                if number > last:
                    out.extend(updates)
                    newest = number
            return newest, out

    @property
    def newest_batch(self) -> int:
        with self.lock:
            return self._next_batch - 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            snap = self.model.snapshot(self._clock())
            snap["batch"] = self._next_batch - 1
            return snap

    def device(self, device: str) -> dict[str, Any] | None:
        with self.lock:
            return self.model.device(device)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            self._client.close(0.5)
            self._client = None
