"""How accepted messages become power-safe, a part of
:class:`~fieldmq.store.queue.DurableQueue`: the journal's group ``fdatasync`` by the
fsync helper process (``synchelper.py``, ``fsyncd.py``) or, without one, by the
``fieldmq-fsync-*`` thread; ``durable_seq`` and the waits for it (``wait_durable``,
``flush``); what happens when a sync fails. The writer thread (``writer.py``) only
rotates the journal. This mixin declares the state it shares with the queue."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..clock import Clock
from ..errors import StoreError
from . import fsyncd
from .base import Entry
from .synchelper import SyncHelper, behind, lag_summary

if TYPE_CHECKING:
    from .memory import MemoryBackend
    from .sqlite import SQLiteBackend

__all__ = ["Durability"]

log = logging.getLogger("fieldmq.store")


class Durability:
    """The durability part of ``DurableQueue``; see the module docstring."""

    _backend: SQLiteBackend | MemoryBackend
    _clock: Clock
    _name: str
    _state: str
    durability: str
    _lock: threading.Lock
    _maint_wake: threading.Event
    _fsync_interval: float
    _hot: list[deque[Entry]]
    _inflight: dict[int, Entry]
    _retry: deque[Entry]
    _last_seq: int
    _last_error: str | None

    def _init_durability(self, fsync_helper: bool) -> None:
        """The state of this part (called by ``DurableQueue.__init__``)."""
        self._durable_cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()  # the fsync thread: something to sync
        self._urgent = threading.Event()  # ... and someone waits for it
        self._sync_lock = threading.Lock()  # one sync or rotation at a time
        self._durable_seq = 0
        self._dirty = False
        self._dirty_since = 0.0
        self._sync_waiters = 0
        self._fsyncs = 0
        self._fsync_cost = 0.0  # recent fdatasync duration (see _sync_loop)
        self._fsync_helper = fsync_helper
        self._helper: SyncHelper | None = None
        self._gens: deque[tuple[int, int]] = deque()  # (sync needed, first seq)
        self._gens_lock = threading.Lock()
        self._need_seen = -1  # the sync the last recorded write needs (-1: none yet)
        self._min_need: int | None = None  # after a cancel: writes need at least this
        self._cancelled = -1
        self._lags: deque[int] = deque(maxlen=1024)  # thread-mode sync lags (us)
        self._journal_suspect = False  # an fdatasync failed: rewrite before trusting it
        self._retired: list[SyncHelper] = []  # helpers gone; sockets closed with the store

    # -- waiting for durability ---------------------------------------------------------
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
                    with self._lock:
                        need = self._need_for(helper.started())
                    helper.kick((need - 1) & 0xFFFFFFFF, time.monotonic_ns(), urgent=True)
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
        if self._helper is not None and self._durable_seq < self._last_seq:
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
        the lock): the first write that needs a new sync records it and kicks the
        helper. A write that read ``STARTED = g`` needs sync g + 1, or later after a
        cancel (see ``_maybe_cancel``)."""
        helper = self._helper
        if helper is None:
            return
        need = self._need_for(helper.started())
        if need != self._need_seen:
            self._gens.append((need, first_seq))
            if len(self._gens) > 64:  # nobody asked lately: forget what is synced
                self._refresh_durable()
            # if the kick cannot go now, the next write sends it
            ok = helper.kick((need - 1) & 0xFFFFFFFF, time.monotonic_ns())
            self._need_seen = need if ok else -1

    def _need_for(self, started: int) -> int:
        need = (started + 1) & 0xFFFFFFFF
        floor = self._min_need
        if floor is not None:
            if behind(need, floor):
                return floor
            self._min_need = None  # the syncs caught up with it
        return need

    def _maybe_cancel(self) -> None:
        """After acknowledgements (caller holds the lock): when every message written so
        far is acknowledged (or in the SQLite backlog, synced there), the pending sync
        would make nothing power-safe; tell the helper to skip it. At low rates with a
        nearby broker that spares an SD card a page write per message, as the fsync
        thread does. Writes from now on need the sync after it, so a skip never covers
        a write it did not see (kicks and the cancel leave in order, under the lock)."""
        helper = self._helper
        gens = self._gens
        if helper is None or not gens or self._retry or len(self._inflight) > 16:
            return
        need = gens[-1][0]  # every write so far needs this sync at most
        if need == self._cancelled:
            return
        low = self._durable_seq
        for hot in self._hot:
            if hot and hot[-1].seq > low:
                return  # queued, not yet sent
        for e in self._inflight.values():
            if e.seq > low and not e.in_db:
                return  # sent, not yet acknowledged
        if helper.cancel(need):
            self._cancelled = need
            self._min_need = (need + 1) & 0xFFFFFFFF
            self._need_seen = -1

    def _refresh_durable(self) -> None:
        """Move ``_durable_seq`` up to what the helper's finished syncs cover. Under
        ``_gens_lock``, which ``_helper_gone`` also holds to retire the helper: a reader
        never combines a retired helper's counters with writes made after it."""
        with self._gens_lock:
            last = self._last_seq  # read before the gens: see _track_durable
            helper = self._helper
            if helper is None or self._journal_suspect:
                return
            done = helper.done()
            gens = self._gens
            while gens and not behind(done, gens[0][0]):
                gens.popleft()
            # every write adds its entry (or shares one still listed) before _last_seq
            # covers it: with none left, everything up to ``last`` was synced
            durable = gens[0][1] - 1 if gens else last
            if durable > self._durable_seq:
                self._durable_seq = durable

    def _advance_durable(self, seq: int) -> None:
        """``_durable_seq = max(_durable_seq, seq)`` without racing other writers."""
        with self._gens_lock:
            if seq > self._durable_seq and not self._journal_suspect:
                self._durable_seq = seq

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
        job now. Its socket is closed with the store (another thread may still be
        sending on it)."""
        helper.stop(1.0)  # reaps it; at once when it has exited
        failed = helper.exit_code == fsyncd.EXIT_SYNC_FAILED
        with self._lock:
            self._refresh_durable()
            with self._gens_lock:
                self._helper = None
                self._gens.clear()
                if failed:
                    self._journal_suspect = True
            self._dirty = True
            self._dirty_since = self._clock.monotonic()
        self._retired.append(helper)
        if failed:
            log.error("store %s: fdatasync of the journal failed in the fsync helper; "
                      "rewriting the journal from memory", self._name)
            self._maint_wake.set()
        elif self._state == "open":
            log.warning("store %s: fsync helper process %d exited (code %s); syncing from "
                        "a thread", self._name, helper.pid, helper.exit_code)
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

    # -- the fsync thread (no helper process, or after it is gone) ----------------------
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
                try:
                    self._backend.sync()
                except StoreError:
                    # Linux may drop the pages that failed to write and report the error
                    # once: a later fdatasync would succeed without them. Only rewriting
                    # the live messages into a new segment makes them durable again.
                    with self._gens_lock:
                        self._journal_suspect = True
                    self._maint_wake.set()
                    raise
                self._fsyncs += 1
                # what an fsync costs until it is marked (GIL wait included), decaying
                t1 = self._clock.monotonic()
                self._fsync_cost = max(t1 - t0, 0.8 * self._fsync_cost)
                self._lags.append(int(max(0.0, t1 - since) * 1e6))
            self._advance_durable(target)
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
