"""The store's writer thread, a part of :class:`~fieldmq.store.queue.DurableQueue`:
spilling messages that wait into the SQLite backlog, deleting acknowledged rows,
writing dead letters, clock records and journal rotation. How the journal becomes
power-safe is in ``durability.py``; the queue's bookkeeping stays in ``queue.py``;
this mixin only declares the state it shares with them."""

from __future__ import annotations

import logging
import threading
from collections import deque
from itertools import groupby, islice
from operator import attrgetter
from typing import TYPE_CHECKING

from ..clock import Clock
from ..errors import StoreError, StoreFull
from . import records
from .base import Entry
from .durability import Durability
from .handles import SpilledHandles

if TYPE_CHECKING:
    from .memory import MemoryBackend
    from .sqlite import SQLiteBackend

__all__ = ["PRIORITIES", "Writer"]

log = logging.getLogger("fieldmq.store")

PRIORITIES = range(10, 0, -1)
_handle_of = attrgetter("handle")
# Messages moved to the backlog per SQLite transaction (each commit is an fsync); the
# backlog stores them in rows of up to 2,000 (see backlog.BATCH).
_SPILL_PASS = 8000
_encode_pub = records.encode_pub
_encode_gone = records.encode_gone


class Writer(Durability):
    """The writer-thread part of ``DurableQueue`` (state is created by its ``__init__``)."""

    _backend: SQLiteBackend | MemoryBackend
    _clock: Clock
    _name: str
    _state: str
    durability: str
    uid: str
    _lock: threading.Lock
    _maint_wake: threading.Event
    _room: threading.Condition
    _fsync_interval: float
    _spill_after: float
    _hot_max_bytes: int
    _rotate_bytes: int
    _hot: list[deque[Entry]]
    _hot_bytes: int
    _cold_count: list[int]
    _inflight: dict[int, Entry]
    _retry: deque[Entry]
    _handles: SpilledHandles
    _pending_delete: list[tuple[int, int]]
    _pending_dead: list[tuple[Entry, str]]
    _dead_writing: int
    _next_seq: int
    _last_seq: int
    _last_clock_save: float
    _spilled: int
    _disk_full: bool
    _online: bool
    _last_error: str | None

    def now(self) -> float:
        raise NotImplementedError

    def _hot_limit(self) -> int:
        """Bytes of young messages kept in memory before they move to the backlog: online
        ``hot_max_bytes`` (they go out soon), offline a quarter of it (memory is all
        they would use while they wait; the journal keeps them safe meanwhile)."""
        return self._hot_max_bytes if self._online else self._hot_max_bytes >> 2

    def _backpressure(self) -> None:
        """Producers outrun the disk: wait (up to 5 s) for the writer to move young
        messages to the backlog, so memory stays bounded however fast ``publish()`` is
        called. Caller holds the lock (released while waiting)."""
        if self._disk_full:
            return  # _check_disk decides; waiting would not help
        self._maint_wake.set()
        self._room.wait_for(
            lambda: self._hot_bytes <= self._hot_limit() or self._state != "open"
            or self._disk_full, 5.0)

    # -- the writer thread ``fieldmq-store-*``: spills, deletes, rotates, clock records
    # (the journal's fsync is durability.py's: it never waits behind this work)

    def _writer_loop(self) -> None:
        while True:
            self._maint_wake.wait(0.05)
            self._maint_wake.clear()
            closing = self._state != "open"
            try:
                self._maintain(closing)
                self._error_cleared()
            except StoreError as exc:
                self._last_error = str(exc)
                log.error("store %s: %s", self._name, exc)
                if closing:
                    break
                self._stop_wait(1.0)
            except Exception:  # pragma: no cover - never let the writer die silently
                log.exception("store %s: writer failed", self._name)
                self._stop_wait(1.0)
            finally:
                with self._room:
                    self._room.notify_all()
            if closing:
                break

    def _stop_wait(self, seconds: float) -> None:
        self._maint_wake.wait(seconds)

    def _error_cleared(self) -> None:
        if self._last_error and not self._last_error.startswith("corrupt"):
            self._last_error = None

    def _maintain(self, closing: bool) -> None:
        # Spill in passes of at most _SPILL_PASS messages until what should be spilled is.
        for _ in range(100):
            before = self._spilled
            self._spill(closing)
            if self._spilled == before:
                break
        if self._pending_delete or self._pending_dead:
            self._flush_pending()
        if (self._journal_suspect or self._backend.journal_size() > self._rotate_bytes) \
                and not closing:
            self._rotate()
        mono = self._clock.monotonic()
        if mono - self._last_clock_save >= 5.0 and self._state == "open":
            self._last_clock_save = mono
            with self._lock:
                self._backend.append(records.encode_clock(self.now(), self._clock.wall()))
                self._dirty = True

    def _spill(self, everything: bool) -> None:
        # online, only memory (hot_max_bytes) moves messages to the backlog: see set_online
        limit = self.now() - self._spill_after if not self._online else float("-inf")
        batch: list[Entry] = []
        with self._lock:
            over = self._hot_bytes > self._hot_limit()
            for p in PRIORITIES:
                if everything or over:  # the oldest, whatever their age
                    batch += islice(self._hot[p], _SPILL_PASS - len(batch))
                else:
                    for e in self._hot[p]:
                        if e.created > limit or len(batch) >= _SPILL_PASS:
                            break
                        batch.append(e)
                if len(batch) >= _SPILL_PASS:
                    break
        if not batch:
            return
        try:
            rows = self._backend.spill(batch)
        except StoreFull:
            self._disk_full = True
            raise
        self._disk_full = False
        with self._lock:
            for e, row in zip(batch, rows, strict=True):
                e.in_db = row
            self._pending_delete += [(e.seq, e.in_db) for e in batch if e.done]
            handles = self._handles
            for p in range(1, 11):
                hot = self._hot[p]
                if not hot or not hot[0].in_db:
                    continue
                # what was spilled is a prefix of the deque (minus what take() sent since)
                k = 1
                for e in islice(hot, 1, None):
                    if not e.in_db:
                        break
                    k += 1
                moved = [hot.popleft() for _ in range(k)]
                self._hot_bytes -= sum([e.size for e in moved])
                self._cold_count[p] += k
                # runs of one handle (a publish_many batch) share one entry
                for h, group in groupby(moved, key=_handle_of):
                    if h is not None:
                        run = list(group)
                        handles.add(h, run[0].seq, run[-1].seq)
            self._spilled += len(batch)

    def _flush_pending(self) -> None:
        with self._lock:
            deletes, self._pending_delete = self._pending_delete, []
            dead, self._pending_dead = self._pending_dead, []
            self._dead_writing += len(dead)
        try:
            if dead:
                self._backend.dead_letter(dead)
            if deletes:
                self._backend.delete(deletes)
        except StoreError:
            with self._lock:
                self._pending_delete[:0] = deletes
                self._pending_dead[:0] = dead
            raise
        finally:
            with self._lock:
                self._dead_writing -= len(dead)

    def dead_letters(self, limit: int = 100) -> list[dict[str, object]]:
        """The dead letters, including those the writer thread has yet to store (a
        message refused a moment ago is listed, waiting up to 5 s for the write)."""
        with self._lock:
            if (self._pending_dead or self._dead_writing) and self._state == "open":
                self._maint_wake.set()
                self._room.wait_for(
                    lambda: not (self._pending_dead or self._dead_writing)
                    or self._state != "open", 5.0)
            return self._backend.dead_letters(limit)

    def _rotate(self) -> None:
        # offline, what waits goes to the backlog rather than be copied to the new journal;
        # online it goes out soon, so copying it is cheaper than storing it in SQLite
        for _ in range(1 if self._online else 1000):
            before = self._spilled
            self._spill(True)
            if self._spilled == before:
                break
        self._flush_pending()
        with self._lock:
            live = [e for p in PRIORITIES for e in self._hot[p] if not e.in_db]
            live += [e for e in self._inflight.values() if not e.in_db]
            live += [e for e in self._retry if not e.in_db]
            chunks = [_encode_pub(e, e.topic.encode()) for e in live]
            chunks += [_encode_gone(records.ACK, s) for s, _ in self._pending_delete]
            header = records.encode_header(
                records.Header(self._next_seq, self.now(), self._clock.wall(), self.uid)
            )
            with self._sync_lock:
                self._backend.rotate(header, b"".join(chunks))
                helper = self._helper
                if helper is not None:
                    # syncs begun from now on must cover the new segment
                    fd, segment = self._backend.journal_fd()  # type: ignore[union-attr]
                    helper.switch(fd, segment)  # on failure the helper is killed
                with self._gens_lock:
                    self._gens.clear()
                    self._need_seen = -1
                    # the new segment holds every live message and was synced
                    self._journal_suspect = False
            self._advance_durable(self._last_seq)
