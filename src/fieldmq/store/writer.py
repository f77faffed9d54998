"""The store's writer thread, a part of :class:`~fieldmq.store.queue.DurableQueue`:
group ``fsync`` of the journal (and the waits for it), spilling messages that wait
into the SQLite backlog, deleting acknowledged rows, writing dead letters, clock
records and journal rotation. The queue's bookkeeping stays in ``queue.py``; this
mixin only declares the state it shares with it."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from itertools import groupby, islice
from operator import attrgetter
from typing import TYPE_CHECKING

from ..clock import Clock
from ..errors import StoreError, StoreFull
from . import records
from .base import Entry
from .handles import SpilledHandles
from .synchelper import SyncHelper, behind, lag_summary

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


class Writer:
    """The writer-thread half of ``DurableQueue`` (state is created by its ``__init__``)."""

    _backend: SQLiteBackend | MemoryBackend
    _clock: Clock
    _name: str
    _state: str
    durability: str
    uid: str
    _lock: threading.Lock
    _durable_cond: threading.Condition
    _wake: threading.Event
    _urgent: threading.Event
    _maint_wake: threading.Event
    _room: threading.Condition
    _sync_lock: threading.Lock
    _fsyncs: int
    _fsync_interval: float
    _fsync_cost: float
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
    _next_seq: int
    _last_seq: int
    _durable_seq: int
    _dirty: bool
    _dirty_since: float
    _sync_waiters: int
    _last_clock_save: float
    _spilled: int
    _disk_full: bool
    _online: bool
    _last_error: str | None
    _helper: SyncHelper | None
    _gens: deque[tuple[int, int]]
    _gens_lock: threading.Lock
    _gen_seen: int
    _lags: deque[int]

    def now(self) -> float:
        raise NotImplementedError

    # -- durability ------------------------------------------------------------
    def wait_durable(self, seq: int, timeout: float | None) -> bool:
        """Block until message ``seq`` survives a power cut; False on timeout."""
        if self.durability == "process" or self.durable_seq >= seq:
            return self.durable_seq >= seq or self.durability == "process"
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._durable_cond:
            self._sync_waiters += 1
        try:
            while True:
                helper = self._helper
                if helper is not None:  # sync now, and answer when done
                    helper.kick(helper.started(), time.monotonic_ns(), urgent=True)
                else:
                    self._urgent.set()
                    self._wake.set()
                left = None if deadline is None else deadline - time.monotonic()
                # re-ask now and then: an answer may have gone to another waiter's turn
                # or the helper may have died meanwhile
                step = 0.5 if left is None else max(0.0, min(left, 0.5))
                with self._durable_cond:
                    if self._durable_cond.wait_for(
                        lambda: self.durable_seq >= seq or self._state == "closed", step
                    ):
                        return self.durable_seq >= seq
                if left is not None and left <= step:
                    return self.durable_seq >= seq
        finally:
            with self._durable_cond:
                self._sync_waiters -= 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is on disk (fsync'd)."""
        return self.wait_durable(self._last_seq, timeout)

    @property
    def durable_seq(self) -> int:
        """Every message up to this seq survives a power cut."""
        if self._gens:
            self._refresh_durable()
        return self._durable_seq

    # -- the fsync helper process (synchelper.py) -------------------------------------
    def _start_helper(self) -> None:
        jfd = getattr(self._backend, "journal_fd", None)
        if jfd is None or self.durability == "process":
            return
        fd, segment = jfd()
        self._helper = SyncHelper.start(fd, segment, self._fsync_interval)

    def _track_durable(self, first_seq: int) -> None:
        """Writer side of the helper protocol, right after messages from ``first_seq``
        were written to the journal and before ``_last_seq`` covers them (caller holds
        the lock): the first write that sees a new ``STARTED`` value records which sync
        it needs and kicks the helper."""
        helper = self._helper
        if helper is None:
            return
        gen = helper.started()
        if gen != self._gen_seen:
            self._gens.append(((gen + 1) & 0xFFFFFFFF, first_seq))
            if len(self._gens) > 64:  # nobody asked lately: forget what is synced
                self._refresh_durable()
            # if the kick cannot go now, the next write sends it
            self._gen_seen = gen if helper.kick(gen, time.monotonic_ns()) else -1

    def _refresh_durable(self) -> None:
        helper = self._helper
        with self._gens_lock:
            last = self._last_seq  # read before the gens: see _track_durable
            if helper is None:
                return
            done = helper.done()
            gens = self._gens
            while gens and not behind(done, gens[0][0]):
                gens.popleft()
            durable = gens[0][1] - 1 if gens else last
            if durable > self._durable_seq:
                self._durable_seq = durable

    def _sync_main(self) -> None:
        """The ``fieldmq-fsync-*`` thread: while a helper process syncs, wake waiters
        when it answers; without one (or once it is gone) sync from here."""
        helper = self._helper
        if helper is not None:
            while helper.wait_answer(1.0) and not helper.dead:
                if self._sync_waiters:
                    with self._durable_cond:
                        self._durable_cond.notify_all()
            self._helper_gone(helper)
        self._sync_loop()

    def _helper_gone(self, helper: SyncHelper) -> None:
        """The helper exited (closing) or died: what it had not synced is this thread's
        job now."""
        with self._lock:
            self._refresh_durable()
            with self._gens_lock:
                self._helper = None
                self._gens.clear()
            self._dirty = True
            self._dirty_since = self._clock.monotonic()
        if self._state == "open":
            helper.stop(1.0)
            log.warning("store %s: fsync helper process %d exited (code %s); syncing from "
                        "a thread", self._name, helper.pid, helper.exit_code)
        helper.release()
        self._wake.set()

    def _stop_helper(self) -> None:
        helper = self._helper
        if helper is not None:
            helper.stop()

    def fsync_lags(self) -> dict[str, float] | None:
        """Power-safety lag of recent syncs: p50/p99/max in ms (see stats())."""
        helper = self._helper
        if helper is not None:
            return lag_summary(helper.lags_us())
        return lag_summary(list(self._lags))

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

    # -- threads -----------------------------------------------------------------------
    # Two threads, so that fsync latency never waits behind maintenance work:
    # ``fieldmq-fsync-*`` only syncs the journal (the power-safety lag), and
    # ``fieldmq-store-*`` spills, deletes, rotates and writes clock records.

    def _sync_loop(self) -> None:  # without a helper process
        # Each wake-up costs this thread a wait for the GIL (up to the interpreter's switch
        # interval while publishing threads are busy), so a cycle has just two: the timed
        # wait below and the return from fdatasync. No queue lock is taken on the way.
        while True:
            if not self._dirty:
                self._wake.wait(0.2)
            self._wake.clear()
            closing = self._state != "open"
            if self._dirty and not closing and self._sync_waiters == 0:
                # Aim at the fsync *ending* within twice the interval of the oldest unsynced
                # write: on a slow disk (or a busy interpreter) start it earlier.
                start = min(self._fsync_interval, 2 * self._fsync_interval - self._fsync_cost)
                delay = self._dirty_since + start - self._clock.monotonic()
                if delay > 0:
                    self._urgent.wait(delay)
            self._urgent.clear()
            try:
                self._sync()
            except StoreError as exc:
                self._last_error = str(exc)
                log.error("store %s: %s", self._name, exc)
                if not closing:
                    self._urgent.wait(1.0)
            except Exception:  # pragma: no cover - never let the thread die silently
                log.exception("store %s: fsync failed", self._name)
                self._urgent.wait(1.0)
            if closing:
                self._maint_wake.set()
                break

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

    def _needs_fsync(self) -> bool:
        """Is any message accepted since the last fsync still only in the journal?
        When all of them were acknowledged (or dropped) already, there is nothing left to
        make power-safe: skipping the fsync spares the SD card at low rates, where each
        fsync would rewrite a whole 4 KB page for one message (caller holds the lock)."""
        durable = self._durable_seq
        for hot in self._hot:
            if hot and hot[-1].seq > durable:
                return True
        for e in self._retry:
            if e.seq > durable and not e.in_db:
                return True
        return any(e.seq > durable and not e.in_db for e in self._inflight.values())

    def _sync(self) -> None:
        # Lock-free on purpose (the GIL orders these steps): clear the flag *before*
        # reading the target, so a message accepted meanwhile either is covered by the
        # target or sets the flag again for the next round.
        if not self._dirty:
            return
        self._dirty = False
        target = self._last_seq
        needed = self._state != "open" or self._young_unsynced()
        if not needed:
            with self._lock:
                needed = self._needs_fsync()
        with self._sync_lock:  # _rotate moves _durable_seq too
            if needed and (self.durability != "process" or self._state != "open"):
                since = self._dirty_since
                t0 = self._clock.monotonic()
                self._backend.sync()
                self._fsyncs += 1
                # what an fsync costs until it is marked (GIL wait included), decaying
                t1 = self._clock.monotonic()
                self._fsync_cost = max(t1 - t0, 0.8 * self._fsync_cost)
                self._lags.append(int(max(0.0, t1 - since) * 1e6))
            if target > self._durable_seq:
                self._durable_seq = target
        if self._sync_waiters:
            with self._durable_cond:
                self._durable_cond.notify_all()

    def _young_unsynced(self) -> bool:
        """Is a message newer than the last fsync still in memory only (no lock: a deque's
        last item is read atomically)? The common case under load; else see _needs_fsync."""
        durable = self._durable_seq
        for hot in self._hot:
            try:
                if hot and hot[-1].seq > durable:
                    return True
            except IndexError:  # emptied meanwhile
                pass
        return False

    def _maintain(self, closing: bool) -> None:
        # Spill in passes of at most _SPILL_PASS messages until what should be spilled is.
        for _ in range(100):
            before = self._spilled
            self._spill(closing)
            if self._spilled == before:
                break
        if self._pending_delete or self._pending_dead:
            self._flush_pending()
        if self._backend.journal_size() > self._rotate_bytes and not closing:
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
                    self._gen_seen = -1
            self._durable_seq = max(self._durable_seq, self._last_seq)
