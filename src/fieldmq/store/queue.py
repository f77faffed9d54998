"""The durable message queue: ordering, limits, TTL and the writer thread.

State machine of a message (pure bookkeeping under one lock; the backend does I/O)::

    put ──► hot (memory + journal) ──spill──► cold (SQLite backlog)
              │                                  │
              └──────────── take ────────────────┘
                              ▼
                          in flight ──ack──► gone (ACK record, row deleted)
                              │  └─reject──► dead letter
                              └─disconnect──► retry (sent first after reconnect)

    evict / expire: queued ──► gone (DROP record), counted by reason

Order: the retry list first, then by priority (10 first), then by sequence number.
Within a priority the backlog (cold) always precedes the young (hot) messages,
because spilling moves the oldest hot messages.

Time: ``created``/``expires`` are measured in *store time*, which advances with the
monotonic clock while the store is open and, while it was closed, by the wall-clock
gap only when that gap is plausible (0 <= gap <= ``max_offline_credit``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..clock import Clock, SystemClock
from ..errors import StoreError, StoreFull
from . import records
from .base import NO_EXPIRY, Entry
from .eviction import Eviction
from .handles import SpilledHandles
from .writer import PRIORITIES, Writer

if TYPE_CHECKING:
    from ..client.handle import PublishHandle
    from .memory import MemoryBackend
    from .sqlite import SQLiteBackend

__all__ = ["DurableQueue"]

log = logging.getLogger("fieldmq.store")

Durability = Literal["batched", "sync", "process"]
_LOAD_BATCH = 256
_encode_pub = records.encode_pub
_encode_gone = records.encode_gone
_encode_pubs = records.encode_pubs


class DurableQueue(Writer, Eviction):
    """Thread-safe durable priority queue on top of a backend. See module docstring."""

    def __init__(
        self,
        backend: SQLiteBackend | MemoryBackend,
        *,
        clock: Clock | None = None,
        max_messages: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        durability: Durability = "batched",
        fsync_interval: float = 0.005,
        spill_after: float = 0.5,
        hot_max_bytes: int = 8 * 1024 * 1024,
        rotate_bytes: int = 32 * 1024 * 1024,
        max_offline_credit: float = 30 * 86400.0,
        name: str = "store",
        fsync_helper: bool = True,
    ) -> None:
        if durability not in ("batched", "sync", "process"):
            raise ValueError(
                f"durability must be 'batched', 'sync' or 'process', got {durability!r}"
            )
        if not 0 < fsync_interval <= 10:
            raise ValueError(f"fsync_interval must be in (0, 10] seconds, got {fsync_interval!r}")
        self._backend = backend
        self._clock = clock or SystemClock()
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.durability = durability
        self._fsync_interval = fsync_interval
        self._spill_after = spill_after
        self._hot_max_bytes = hot_max_bytes
        self._rotate_bytes = rotate_bytes
        self._max_offline_credit = max_offline_credit
        self._name = name

        self._lock = threading.Lock()
        self._hot: list[deque[Entry]] = [deque() for _ in range(11)]
        self._hot_bytes = 0
        self._cold_count = [0] * 11
        self._cold_buf: list[deque[Entry]] = [deque() for _ in range(11)]
        self._cursor = [0] * 11
        self._inflight: dict[int, Entry] = {}
        self._retry: deque[Entry] = deque()
        self._handles = SpilledHandles()
        self._pending_delete: list[tuple[int, int]] = []  # (seq, backlog row)
        self._pending_dead: list[tuple[Entry, str]] = []
        self._dead_writing = 0  # dead letters the writer thread is storing right now
        self._count = 0
        self._bytes = 0
        self._published = 0
        self._acked = 0
        self._dropped: Counter[str] = Counter()
        self._next_seq = 1
        self._last_seq = 0
        self._store_base = 0.0
        self._mono0 = 0.0
        self._last_clock_save = 0.0
        self._spilled = 0
        self._disk_full = False  # the last spill failed for lack of space
        self._online = False  # a broker connection is sending (see set_online)
        self._last_error: str | None = None
        self.uid = ""
        self.recovered = 0
        self.corrupt_moved_to: str | None = None
        self._writer: threading.Thread | None = None
        self._syncer: threading.Thread | None = None
        self._maint_wake = threading.Event()
        self._room = threading.Condition(self._lock)
        self._init_durability(fsync_helper)
        self._state = "new"
        self.on_ready: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------
    def open(self) -> DurableQueue:
        if self._state != "new":
            raise RuntimeError(f"queue is {self._state}; create a new one instead of reopening")
        mono = self._clock.monotonic()
        wall = self._clock.wall()
        rec = self._backend.open(0.0, wall)
        last_wall = getattr(self._backend, "last_wall", 0.0) or 0.0
        credit = 0.0
        if last_wall:
            gap = wall - last_wall
            if 0 <= gap <= self._max_offline_credit:
                credit = gap
            else:
                log.warning(
                    "store %s: wall clock moved %.0f s since it was last open; not counting "
                    "that gap towards message TTLs (implausible clock step)", self._name, gap,
                )
        self._store_base = rec.store_time + credit
        self._mono0 = mono
        self.uid = rec.uid
        self._next_seq = rec.next_seq
        self._last_seq = self._durable_seq = rec.next_seq - 1
        for prio, n in rec.cold_counts.items():
            if 1 <= prio <= 10:
                self._cold_count[prio] = n
        self._count = sum(rec.cold_counts.values())
        self._bytes = rec.cold_bytes
        self.recovered = rec.recovered_from_journal
        self.corrupt_moved_to = rec.corrupt_moved_to
        if rec.corrupt_moved_to:
            self._last_error = f"corrupt store moved aside to {rec.corrupt_moved_to}"
        self._last_clock_save = mono
        self._state = "open"
        if self._fsync_helper:
            self._start_helper()
        self._writer = threading.Thread(
            target=self._writer_loop, name=f"fieldmq-store-{self._name}", daemon=True
        )
        self._syncer = threading.Thread(
            target=self._sync_main, name=f"fieldmq-fsync-{self._name}", daemon=True
        )
        self._writer.start()
        self._syncer.start()
        return self

    def close(self) -> None:
        """Stop the writer after a final sync; unacknowledged messages stay on disk."""
        with self._lock:
            if self._state != "open":
                self._state = "closed"
                return
            self._state = "closing"
        self._stop_helper()
        self._wake.set()
        self._urgent.set()
        if self._syncer is not None:
            self._syncer.join()
        self._maint_wake.set()
        if self._writer is not None:
            self._writer.join()
        for helper in self._retired:
            helper.release()
        try:
            self._flush_pending()
            now = self.now()
            saver = getattr(self._backend, "save_clock", None)
            if saver is not None:
                saver(now, self._clock.wall())
        except StoreError as exc:
            log.error("store %s: final write failed: %s", self._name, exc)
        finally:
            self._backend.close()
            self._state = "closed"

    def abandon(self) -> None:
        """In a forked child: drop every reference to the parent's files untouched."""
        self._state = "closed"
        for helper in [self._helper, *self._retired]:
            if helper is not None:
                helper.abandon()
        self._helper = None
        self._gens.clear()
        abandon = getattr(self._backend, "abandon", None)
        if abandon is not None:
            abandon()

    # -- time ------------------------------------------------------------------
    def now(self) -> float:
        """Current store time (seconds)."""
        return self._store_base + (self._clock.monotonic() - self._mono0)

    # -- producer side ---------------------------------------------------------
    def put(
        self,
        topic: str,
        topic_b: bytes,
        payload: bytes,
        qos: int,
        retain: bool,
        priority: int,
        ttl: float | None,
        props: bytes | None,
        handle: PublishHandle | None,
    ) -> Entry:
        size = len(payload) + len(topic_b)
        with self._lock:
            if self._state != "open":
                raise RuntimeError("the store is closed; create a new client to publish again")
            if self._count >= self.max_messages or self._bytes + size > self.max_bytes:
                self._make_room(priority, size)
            self._check_disk(size)
            now = self.now()
            e = Entry(
                self._next_seq, topic, payload, qos, retain, priority, now,
                now + ttl if ttl is not None else NO_EXPIRY, props, handle,
            )
            self._append_new(_encode_pub(e, topic_b))
            self._hot[priority].append(e)
            self._accepted(1, size)
        self._after_put()
        return e

    def _accepted(self, n: int, size: int) -> None:
        """Bookkeeping once ``n`` new messages (``size`` bytes) are in the journal and the
        hot deques (caller holds the lock)."""
        self._next_seq += n
        if self._helper is not None:
            self._track_durable(self._next_seq - n)
        self._last_seq = self._next_seq - 1
        self._hot_bytes += size
        self._count += n
        self._bytes += size
        self._published += n
        if not self._dirty:
            self._dirty = True
            self._dirty_since = self._clock.monotonic()
            self._wake.set()
        if self._hot_bytes > 2 * self._hot_limit():
            self._backpressure()

    def _after_put(self) -> None:
        """Outside the lock: let the sender know, and wait for fsync in ``sync`` mode."""
        if self.on_ready is not None:
            self.on_ready()
        if self.durability == "sync":
            self.wait_durable(self._last_seq, None)

    def put_many(
        self,
        items: Sequence[tuple[str, bytes, bytes, int, bool, int, float | None, bytes | None]],
        handle: PublishHandle | None,
    ) -> list[Entry]:
        """Accept many messages with one journal write. All or nothing on a full store.
        Items are ``(topic, topic_bytes, payload, qos, retain, priority, ttl, props)``."""
        if not items:
            return []
        total = sum([len(i[2]) + len(i[1]) for i in items])

        def build(seq: int, now: float) -> list[Entry]:
            return [
                Entry(s, topic, payload, qos, retain, prio,
                      now, now + ttl if ttl is not None else NO_EXPIRY, props, handle)
                for s, (topic, _, payload, qos, retain, prio, ttl, props)
                in zip(range(seq, seq + len(items)), items, strict=True)
            ]

        return self._put_entries(build, len(items), total, min(i[5] for i in items))

    def put_batch(
        self,
        topics: Sequence[str],
        payloads: Sequence[bytes],
        total: int,
        qos: int,
        retain: bool,
        priority: int,
        ttl: float | None,
        handle: PublishHandle | None,
    ) -> list[Entry]:
        """:meth:`put_many` for messages that share their options (``publish_many()`` of
        ``(topic, payload)`` pairs): ``total`` is the size of payloads and topics in bytes."""
        n = len(topics)
        if not n:
            return []

        def build(seq: int, now: float) -> list[Entry]:
            expires = now + ttl if ttl is not None else NO_EXPIRY
            return [
                Entry(s, topic, payload, qos, retain, priority, now, expires, None, handle)
                for s, topic, payload in zip(range(seq, seq + n), topics, payloads, strict=True)
            ]

        return self._put_entries(build, n, total, priority)

    def _put_entries(
        self, build: Callable[[int, float], list[Entry]], n: int, total: int, min_prio: int
    ) -> list[Entry]:
        """Make room, build the entries with their seqs and time, journal them as PUBS
        records (one per run of a priority), queue them: all under the lock."""
        with self._lock:
            if self._state != "open":
                raise RuntimeError("the store is closed; create a new client to publish again")
            if self._count + n > self.max_messages or self._bytes + total > self.max_bytes:
                self._make_room(min_prio, total, count=n)
            self._check_disk(total)
            out = build(self._next_seq, self.now())
            hot = self._hot
            prio = out[0].priority
            if all([e.priority == prio for e in out]):
                self._append_new(_encode_pubs(out, prio))
                hot[prio].extend(out)
            else:
                runs = []
                start = 0
                for i in range(1, n + 1):
                    if i == n or out[i].priority != out[start].priority:
                        runs.append(out[start:i])
                        start = i
                self._append_new(b"".join([_encode_pubs(r, r[0].priority) for r in runs]))
                for run in runs:
                    hot[run[0].priority].extend(run)
            self._accepted(n, total)
        self._after_put()
        return out

    def _check_disk(self, size: int) -> None:
        """Disk full: the backlog cannot be written, so memory holds what waits; refuse
        new messages once that reaches ``hot_max_bytes`` (caller holds the lock)."""
        if self._disk_full and self._hot_bytes + size > self._hot_max_bytes:
            self._dropped["rejected"] += 1
            raise StoreFull(
                f"store {self._name}: the disk is full ({self._last_error}); "
                f"{self._hot_bytes} bytes wait in memory; message rejected until space is freed"
            )

    def _append_new(self, data: bytes) -> None:
        try:
            self._backend.append(data)
        except StoreFull as exc:
            self._dropped["rejected"] += 1
            self._last_error = str(exc)
            raise

    # -- consumer side (network thread) ------------------------------------------
    def set_online(self, online: bool) -> None:
        """The network thread says whether a broker connection is up. While it is, young
        messages are not moved to the backlog for their age alone: they go out soon, and
        writing them to SQLite only to read and delete them again would cost more than
        sending them (memory stays bounded by ``hot_max_bytes``). Offline, messages that
        wait longer than ``spill_after`` move to the backlog as before."""
        self._online = online
        if not online:
            self._maint_wake.set()

    def take(self, n: int) -> list[Entry]:
        """Up to ``n`` messages to send, in delivery order; they become in flight."""
        out: list[Entry] = []
        with self._lock:
            if self._count - len(self._inflight) <= 0:
                return out
            now = self.now()
            retry = self._retry
            while retry and len(out) < n:
                e = retry.popleft()
                if e.expired(now):
                    self._drop(e, "expired")
                    continue
                out.append(e)
            for p in PRIORITIES:
                hot = self._hot[p]
                if hot and not self._cold_count[p] and len(out) < n:
                    # only young messages of this priority: take a run at once
                    run = [hot.popleft() for _ in range(min(n - len(out), len(hot)))]
                    self._hot_bytes -= sum([e.size for e in run])
                    self._cursor[p] = max(self._cursor[p], run[-1].seq)
                    if any([e.expires != NO_EXPIRY for e in run]):
                        for e in run:
                            (self._drop(e, "expired") if e.expired(now) else out.append(e))
                    else:
                        out += run
                while len(out) < n:
                    nxt = self._pop_next(p)
                    if nxt is None:
                        break
                    if nxt.expired(now):
                        self._drop(nxt, "expired")
                        continue
                    out.append(nxt)
                if len(out) >= n:
                    break
            self._inflight.update([(e.seq, e) for e in out])
        return out

    def _pop_next(self, p: int) -> Entry | None:
        """Remove the oldest queued message of priority ``p`` (caller holds the lock)."""
        hot = self._hot[p]
        if self._cold_count[p] > 0:
            buf = self._cold_buf[p]
            if not buf:
                rows = self._backend.load(p, self._cursor[p], _LOAD_BATCH)
                upper = hot[0].seq if hot else None
                if upper is not None:
                    rows = [r for r in rows if r.seq < upper]
                if not rows:
                    log.error(
                        "store %s: %d backlog messages of priority %d could not be found; "
                        "resetting the count", self._name, self._cold_count[p], p,
                    )
                    self._count -= self._cold_count[p]
                    self._cold_count[p] = 0
                    return self._pop_next(p)
                buf.extend(rows)
            e = buf.popleft()
            self._cold_count[p] -= 1
            e.handle = self._handles.pop(e.seq)
        elif hot:
            e = hot.popleft()
            self._hot_bytes -= e.size
        else:
            return None
        if e.seq > self._cursor[p]:
            self._cursor[p] = e.seq
        return e

    def acked(self, entries: Sequence[Entry]) -> None:
        """The broker acknowledged these: they are gone for good."""
        from ..client.handle import ACKED

        chunks = []
        with self._lock:
            inflight = self._inflight
            for e in entries:
                if inflight.pop(e.seq, None) is None:
                    continue
                e.done = True
                chunks.append(_encode_gone(records.ACK, e.seq))
                if e.in_db:
                    self._pending_delete.append((e.seq, e.in_db))
                self._count -= 1
                self._bytes -= e.size
                self._acked += 1
                h = e.handle
                if h is not None:
                    h.settle(ACKED, None)
            if chunks and self._state == "open":
                try:
                    self._backend.append(b"".join(chunks))
                except StoreError as exc:  # an ack record lost only means a resend
                    self._last_error = str(exc)
                if self._helper is not None:
                    self._maybe_cancel()
                if not self._dirty:
                    self._dirty = True
                    self._dirty_since = self._clock.monotonic()
                    self._wake.set()

    def requeue(self, entries: Sequence[Entry]) -> None:
        """The connection dropped before these were acknowledged: send them first next time."""
        with self._lock:
            back = [e for e in entries if self._inflight.pop(e.seq, None) is not None]
            self._retry.extendleft(reversed(back))
        if back and self.on_ready is not None:
            self.on_ready()

    def requeue_all(self) -> int:
        """Move everything in flight back to the retry list (connection lost)."""
        with self._lock:
            back = sorted(self._inflight.values(), key=lambda e: e.seq)
            self._inflight.clear()
            self._retry.extendleft(reversed(back))
            return len(back)

    def reject(self, entry: Entry, reason: str) -> None:
        """The broker refused this message for good: move it to the dead letters."""
        from ..client.handle import DROPPED

        with self._lock:
            if self._inflight.pop(entry.seq, None) is None:
                return
            entry.done = True
            try:
                self._backend.append(_encode_gone(records.DROP, entry.seq))
            except StoreError as exc:  # the dead-letter row is still written below
                self._last_error = str(exc)
            self._pending_dead.append((entry, reason))
            self._count -= 1
            self._bytes -= entry.size
            self._dropped[reason] += 1
            if entry.handle is not None:
                entry.handle.settle(DROPPED, reason)
            self._wake.set()

    def _drop(self, e: Entry, reason: str) -> None:
        from ..client.handle import DROPPED, EXPIRED

        e.done = True
        try:
            self._backend.append(_encode_gone(records.DROP, e.seq))
        except StoreError as exc:
            self._last_error = str(exc)
        if e.in_db:
            self._pending_delete.append((e.seq, e.in_db))
        self._count -= 1
        self._bytes -= e.size
        self._dropped[reason] += 1
        h = e.handle if e.handle is not None else self._handles.pop(e.seq)
        if h is not None:
            h.settle(EXPIRED if reason == "expired" else DROPPED, reason)

    # -- introspection -----------------------------------------------------------
    def oldest_created(self) -> float | None:
        with self._lock:
            candidates = [e.created for e in self._inflight.values()]
            candidates += [e.created for e in self._retry]
            for p in range(1, 11):
                if self._cold_count[p] > 0:
                    if not self._cold_buf[p]:
                        rows = self._backend.load(p, self._cursor[p], _LOAD_BATCH)
                        hot = self._hot[p]
                        if hot:
                            rows = [r for r in rows if r.seq < hot[0].seq]
                        self._cold_buf[p].extend(rows)
                    if self._cold_buf[p]:
                        candidates.append(self._cold_buf[p][0].created)
                elif self._hot[p]:
                    candidates.append(self._hot[p][0].created)
            return min(candidates) if candidates else None

    def stats(self) -> dict[str, Any]:
        oldest = self.oldest_created()
        with self._lock:
            inflight = len(self._inflight) + len(self._retry)
            return {
                "queued": self._count - inflight,
                "inflight": inflight,
                "queued_bytes": self._bytes,
                "published": self._published,
                "acked": self._acked,
                "dropped": dict(self._dropped),
                "oldest_age": None if oldest is None else max(0.0, self.now() - oldest),
                "durable_lag": self._last_seq - self.durable_seq,
                "fsync_lag_ms": self.fsync_lags(),
                "fsync_helper": None if self._helper is None else self._helper.pid,
                "spilled": self._spilled,
                "recovered": self.recovered,
                "store_bytes": self._backend.size_on_disk(),
                "store_error": self._last_error,
            }

    def pending_count(self) -> int:
        """Messages not yet acknowledged (queued + in flight + retry)."""
        return self._count

    def sendable(self) -> int:
        """Messages waiting to be sent (not in flight)."""
        return self._count - len(self._inflight)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def __repr__(self) -> str:
        return f"DurableQueue({self._backend!r}, state={self._state}, count={self._count})"
