"""Rollup mode: durable per-interval summaries.

The guarantee: **a raw message is acknowledged to the local broker only after the
summary state that includes it is committed to SQLite** (``rollups.db`` in the
bridge's state directory). So whatever kills the bridge mid-interval, every message
is either in the committed state (and will be in the summary published after the
restart) or unacknowledged (and the broker redelivers it). At the end of an interval
the summary is published to the upstream client (``publish()`` returns once it is in
the client's durable store) and only then is its state row deleted.

Double counting is prevented both ways: a message with a message id (``fmq-id``,
sent by every fieldmq client) that was committed but whose acknowledgement was lost
in a crash is recognised when redelivered (ids are kept for two intervals); and a
summary published just before a crash, whose state row was not yet deleted, is
published again after the restart with the **same** ``fmq-id``
(``rollup-<bridge>-<hash>``), so receivers drop it with ``fieldmq.Deduplicator``.

Commits are grouped: messages wait at most ``tick`` seconds (or until 256 are
pending) before one transaction covers them all and they are acknowledged.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..client.message import Message
from ..errors import StoreError
from .config import BridgeMapping
from .rollup import Aggregate, NonNumeric, extract_value, interval_start

__all__ = ["RollupEngine", "RollupStore"]

log = logging.getLogger("fieldmq.bridge")

# publish(mapping, source_topic, payload, message_id) -> None; raises when not stored.
PublishFn = Callable[[BridgeMapping, str, bytes, str], None]
_BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregates (
    mapping TEXT NOT NULL, topic TEXT NOT NULL, start REAL NOT NULL, interval REAL NOT NULL,
    count INTEGER NOT NULL, minimum REAL, maximum REAL, total REAL NOT NULL, last REAL,
    non_numeric INTEGER NOT NULL, PRIMARY KEY (mapping, topic));
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, expires REAL NOT NULL);
"""


class RollupStore:
    """The committed rollup state in SQLite (WAL, ``synchronous=FULL``); ``None`` keeps it
    in memory (tests)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(str(path) if path else ":memory:",
                                       check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the rollup state {path}: {exc}") from exc

    def load(self) -> tuple[list[tuple[str, str, Aggregate]], dict[str, float]]:
        try:
            rows = self._db.execute(
                "SELECT mapping, topic, start, interval, count, minimum, maximum, total, last,"
                " non_numeric FROM aggregates").fetchall()
            seen = dict(self._db.execute("SELECT id, expires FROM seen").fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the rollup state {self.path}: {exc}") from exc
        aggs = [(r[0], r[1], Aggregate(r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]))
                for r in rows]
        return aggs, seen

    def commit(self, dirty: list[tuple[str, str, Aggregate]], seen: list[tuple[str, float]],
               now: float) -> None:
        try:
            with self._tx():
                self._db.executemany(
                    "INSERT OR REPLACE INTO aggregates VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(m, t, a.start, a.interval, a.count, a.minimum, a.maximum, a.total, a.last,
                      a.non_numeric) for m, t, a in dirty])
                self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?,?)", seen)
                self._db.execute("DELETE FROM seen WHERE expires < ?", (now,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the rollup state {self.path}: {exc}") from exc

    def delete(self, mapping: str, topic: str) -> None:
        try:
            with self._tx():
                self._db.execute("DELETE FROM aggregates WHERE mapping = ? AND topic = ?",
                                 (mapping, topic))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the rollup state {self.path}: {exc}") from exc

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def close(self) -> None:
        self._db.close()


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


@dataclass(slots=True)
class _Open:
    mapping: BridgeMapping
    topic: str
    agg: Aggregate
    dirty: bool = False


class RollupEngine:
    """Aggregates messages of rollup mappings, commits the state, acknowledges, and
    publishes a summary per topic at each interval end. Thread-safe."""

    def __init__(
        self,
        store: RollupStore,
        mappings: list[BridgeMapping],
        publish: PublishFn,
        *,
        bridge_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._mappings = {m.name: m for m in mappings if m.rollup is not None}
        self._publish = publish
        self._bridge_id = bridge_id
        self._clock = clock
        self._lock = threading.RLock()
        self._open: dict[tuple[str, str], _Open] = {}
        self._closed: dict[tuple[str, str], float] = {}  # last published interval start
        self._seen: dict[str, float] = {}
        self._new_seen: list[tuple[str, float]] = []
        self._pending: list[Message] = []
        self.counts = {"values": 0, "non_numeric": 0, "duplicates": 0, "published": 0}
        aggs, seen = store.load()
        self._seen = seen
        for name, topic, agg in aggs:
            m = self._mappings.get(name)
            if m is None:
                log.warning("rollup state for mapping %r (topic %s, %d values) has no mapping "
                            "in the configuration any more; it is kept, not published",
                            name, topic, agg.count)
                continue
            self._open[(name, topic)] = _Open(m, topic, agg)
        if self._open:
            log.info("resumed %d open rollup intervals from %s", len(self._open), store.path)

    def summary_id(self, mapping: str, topic: str, start: float) -> str:
        """The stable ``fmq-id`` of one summary (the same after a restart)."""
        key = f"{mapping}\0{topic}\0{float(start):.6f}".encode()
        digest = hashlib.sha1(key).hexdigest()[:16]
        return f"rollup-{self._bridge_id}-{digest}"

    def add(self, mapping: BridgeMapping, msg: Message) -> None:
        """Count ``msg`` into its interval; it is acknowledged after the next commit."""
        rollup = mapping.rollup
        assert rollup is not None
        with self._lock:
            # Read the clock under the lock: a time read before the ticker closed an
            # interval must not reopen that interval (its summary is already published,
            # and a second one would carry the same id and be dropped as a duplicate).
            now = self._clock()
            if msg.message_id is not None and msg.message_id in self._seen:
                self.counts["duplicates"] += 1
                self._pending.append(msg)  # already counted: acknowledge with the next commit
                return
            key = (mapping.name, msg.topic)
            start = interval_start(now, rollup.interval)
            closed = self._closed.get(key)
            if closed is not None and start <= closed:
                # Late for an interval already published: it counts in the next one.
                start = closed + float(rollup.interval)
            cur = self._open.get(key)
            if cur is not None and start > cur.agg.start:
                self._close(cur)  # a new interval began before the ticker noticed
                cur = None
            if cur is None:
                agg = Aggregate(start, float(rollup.interval))
                cur = self._open[key] = _Open(mapping, msg.topic, agg)
            # start < cur.agg.start: the wall clock stepped back; the open interval takes it.
            try:
                value = extract_value(msg.payload, rollup.field)
            except NonNumeric as exc:
                cur.agg.add_non_numeric()
                self.counts["non_numeric"] += 1
                if cur.agg.non_numeric == 1:
                    log.warning("rollup %r: non-numeric payload on %s (%s); counted as "
                                "non_numeric in the summary, further ones in this interval "
                                "are not logged", mapping.name, msg.topic, exc)
            else:
                cur.agg.add(value)
                self.counts["values"] += 1
            cur.dirty = True
            if msg.message_id is not None:
                expires = cur.agg.end + 2 * rollup.interval
                self._seen[msg.message_id] = expires
                self._new_seen.append((msg.message_id, expires))
            self._pending.append(msg)
            if len(self._pending) >= _BATCH:
                self.flush()

    def flush(self) -> int:
        """Commit what changed and acknowledge the messages it includes."""
        with self._lock:
            if not self._pending:
                return 0
            dirty = [(o.mapping.name, o.topic, o.agg) for o in self._open.values() if o.dirty]
            now = self._clock()
            self._store.commit(dirty, self._new_seen, now)
            for o in self._open.values():
                o.dirty = False
            self._new_seen = []
            if len(self._seen) > 4 * _BATCH:
                self._seen = {k: v for k, v in self._seen.items() if v >= now}
            pending, self._pending = self._pending, []
        for msg in pending:
            msg.ack()
        return len(pending)

    def close_due(self) -> int:
        """Publish the summaries of intervals that have ended; returns how many."""
        now = self._clock()
        n = 0
        with self._lock:
            for o in [o for o in self._open.values() if o.agg.due(now)]:
                self._close(o)
                n += 1
        return n

    def _close(self, o: _Open) -> None:
        self.flush()  # the summary must not include anything still unacknowledged
        if not o.agg.empty:
            payload = o.agg.payload(o.topic)
            self._publish(o.mapping, o.topic, payload,
                          self.summary_id(o.mapping.name, o.topic, o.agg.start))
            self.counts["published"] += 1
        self._store.delete(o.mapping.name, o.topic)
        del self._open[(o.mapping.name, o.topic)]
        self._closed[(o.mapping.name, o.topic)] = o.agg.start

    @property
    def open_intervals(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Commit and acknowledge what is pending; open intervals stay in the store."""
        try:
            self.flush()
        finally:
            self._store.close()
