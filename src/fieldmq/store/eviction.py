"""Which messages give way when the store is full: the pure choice of a priority, and
the queue's eviction planning (a part of :class:`~fieldmq.store.queue.DurableQueue`,
called with its lock held)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ..errors import StoreFull
from .base import Entry

if TYPE_CHECKING:
    from .memory import MemoryBackend
    from .sqlite import SQLiteBackend

__all__ = ["Eviction", "victim_priority"]

_LOAD_BATCH = 256


def victim_priority(queued_by_priority: Mapping[int, int], new_priority: int) -> int | None:
    """The priority whose oldest queued message is evicted to make room for a new
    message of ``new_priority``, or ``None`` when the new message must be rejected.

    The lowest priority that has a queued message loses its oldest one, but never
    a priority higher than the new message's: a message is never evicted to make
    room for one that matters less. Equal priority evicts the oldest (the newest
    reading of the same importance wins).
    """
    for prio in sorted(queued_by_priority):
        if queued_by_priority[prio] > 0:
            return prio if prio <= new_priority else None
    return None


class Eviction:
    """The eviction half of ``DurableQueue`` (state is created by its ``__init__``)."""

    _backend: SQLiteBackend | MemoryBackend
    max_messages: int
    max_bytes: int
    _count: int
    _bytes: int
    _dropped: Counter[str]
    _hot: list[deque[Entry]]
    _cold_count: list[int]
    _cold_buf: list[deque[Entry]]
    _cursor: list[int]

    def _pop_next(self, p: int) -> Entry | None:
        raise NotImplementedError

    def _drop(self, e: Entry, reason: str) -> None:
        raise NotImplementedError

    def _make_room(self, priority: int, size: int, count: int = 1) -> None:
        if size > self.max_bytes or count > self.max_messages:
            self._dropped["rejected"] += 1
            raise StoreFull(
                f"{count} message(s) of {size} bytes exceed the store limits (max_messages="
                f"{self.max_messages}, max_bytes={self.max_bytes}); raise Limits or send less"
            )
        need_count = self._count + count - self.max_messages
        need_bytes = self._bytes + size - self.max_bytes
        plan = self._plan_eviction(priority, need_count, need_bytes)
        if plan is None:
            self._dropped["rejected"] += 1
            raise StoreFull(
                f"store is full ({self._count} messages, {self._bytes} bytes) and evicting "
                f"messages of priority <= {priority} cannot make room; message rejected"
            )
        for p, k in plan:
            for _ in range(k):
                victim = self._pop_next(p)
                if victim is None:  # pragma: no cover - the plan counted it
                    break
                self._drop(victim, "evicted")

    def _plan_eviction(
        self, priority: int, need_count: int, need_bytes: int
    ) -> list[tuple[int, int]] | None:
        """How many of the oldest messages to evict per priority (lowest first) to free
        ``need_count`` messages and ``need_bytes`` bytes, or None when impossible.
        Looks without changing anything, so a rejected message evicts nothing."""
        plan: list[tuple[int, int]] = []
        freed_count = 0
        freed_bytes = 0

        def enough() -> bool:
            return freed_count >= need_count and freed_bytes >= need_bytes

        for p in range(1, priority + 1):
            if enough():
                break
            k = 0
            for e in self._peek_oldest(p):
                if enough():
                    break
                k += 1
                freed_count += 1
                freed_bytes += e.size
            if k:
                plan.append((p, k))
        return plan if enough() else None

    def _peek_oldest(self, p: int) -> Iterator[Entry]:
        """Queued messages of priority ``p``, oldest first, without removing them."""
        remaining = self._cold_count[p]
        last = self._cursor[p]
        for e in self._cold_buf[p]:
            if remaining <= 0:
                break
            remaining -= 1
            last = e.seq
            yield e
        hot = self._hot[p]
        upper = hot[0].seq if hot else None
        while remaining > 0:
            rows = self._backend.load(p, last, _LOAD_BATCH)
            if upper is not None:
                rows = [r for r in rows if r.seq < upper]
            if not rows:
                break
            for e in rows[:remaining]:
                last = e.seq
                yield e
            remaining -= len(rows)
        yield from hot
