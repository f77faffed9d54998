"""The audit subscriber: a durable fieldmq client with a persistent session that
subscribes (QoS 1) to the fleet's topics and records every arrival (message id,
topic, receive time, the payload's ``ts``) in ``<state-dir>/received.db``.

Arrivals are written by a named writer thread in batches (every 0.1 s). The MQTT
acknowledgement of an arrival is sent before it is committed to the log, so a
crash of the *audit* process can make the audit report a loss that did not happen
(never hide one that did).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from ..backoff import Backoff
from ..client.client import Client
from ..client.message import Message
from ..errors import StoreError
from .acceptlog import _query
from .audit import ReceivedRow

__all__ = ["AuditSubscriber", "ReceivedLog", "read_received"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY, message_id TEXT, topic TEXT NOT NULL,
    received_at REAL NOT NULL, payload_ts REAL);
"""


def _payload_ts(payload: bytes) -> float | None:
    if not payload.startswith(b"{"):
        return None
    try:
        ts = json.loads(payload).get("ts")
    except (ValueError, AttributeError):
        return None
    return float(ts) if isinstance(ts, (int, float)) else None


class ReceivedLog:
    """Thread-safe, batched writer of arrivals."""

    def __init__(self, path: str | Path, *, commit_interval: float = 0.1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the received log {self.path}: {exc}") from exc
        self._rows: list[tuple[str | None, str, float, float | None]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.count = 0  # arrivals accepted by add()
        self.committed = 0
        self.error: str | None = None
        self._interval = commit_interval
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fieldmq-sim-received",
                                        daemon=True)
        self._thread.start()

    def add(self, message_id: str | None, topic: str, received_at: float,
            payload_ts: float | None) -> None:
        with self._lock:
            self._rows.append((message_id, topic, received_at, payload_ts))
            self.count += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self._interval)
                rows, self._rows = self._rows, []
                stop = self._stop
            if rows:
                self._write(rows)
            if stop:
                return

    def _write(self, rows: list[tuple[str | None, str, float, float | None]]) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO received (message_id, topic, received_at, payload_ts) "
                "VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            with self._lock:
                self.committed += len(rows)
        except sqlite3.Error as exc:  # keep running: the audit will show the gap
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.error = f"cannot write to {self.path}: {exc}"

    def close(self) -> None:
        with self._cond:
            if self._stop:
                return
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        self._db.close()
        if self.error:
            raise StoreError(self.error)


class AuditSubscriber:
    """Subscribe to ``<topic_group>/#`` and record arrivals into ``log_path``.

    ``start()`` returns once the subscription is live: the subscriber publishes a
    probe to itself and waits until it arrives, so no device message can be
    published before the broker routes the topics to this session.
    """

    def __init__(
        self,
        *,
        broker: str,
        log_path: str | Path,
        store: str | Path,
        topic_group: str = "fleet",
        client_id: str = "fieldmq-sim-audit",
        protocol: int = 5,
    ) -> None:
        self.topic_group = topic_group
        self.log = ReceivedLog(log_path)
        self._probe_topic = f"fieldmq-sim/{client_id}/probe"
        self._probe_token = uuid.uuid4().hex
        self._probed = threading.Event()
        try:
            self.client = Client(client_id=client_id, brokers=[broker], store=store,
                                 persistent_session=True, keepalive=10,
                                 backoff=Backoff(initial=0.2, maximum=1.0),
                                 protocol=5 if protocol == 5 else 4)
        except BaseException:
            self.log.close()
            raise

    def _on_message(self, msg: Message) -> None:
        self.log.add(msg.message_id, msg.topic, time.time(), _payload_ts(msg.payload))

    def _on_probe(self, msg: Message) -> None:
        if msg.payload == self._probe_token.encode():
            self._probed.set()

    def start(self, timeout: float = 30.0) -> AuditSubscriber:
        deadline = time.monotonic() + timeout
        self.client.subscribe(f"{self.topic_group}/#", self._on_message, qos=1)
        self.client.subscribe(self._probe_topic, self._on_probe, qos=1)
        self.client.publish(self._probe_topic, self._probe_token, qos=1)
        if not self._probed.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(
                f"the audit subscriber did not receive its own probe within {timeout} s; "
                f"is the broker reachable? ({self.client.stats().get('last_error')})"
            )
        return self

    @property
    def received(self) -> int:
        return self.log.count

    def close(self) -> None:
        try:
            self.client.close(timeout=1.0)
        finally:
            self.log.close()

    def __enter__(self) -> AuditSubscriber:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_received(paths: Iterable[Path]) -> list[ReceivedRow]:
    """Arrivals in arrival order."""
    return [ReceivedRow(*row) for row in _query(
        paths, "SELECT message_id, topic, received_at, payload_ts FROM received ORDER BY id")]
