"""The handles of messages moved to the backlog, for the queue (caller holds its lock).

A message in the backlog is not in memory, so its handle is kept apart: weakly (a
caller that dropped its handle frees it) and found again by seq when the message is
read back, to be settled when it is acknowledged or dropped. A ``publish()`` handle is
one weak entry; the messages of one ``publish_many()`` batch that move together share
one entry for their seq range, instead of a weak reference each.
"""

from __future__ import annotations

import bisect
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client.handle import PublishHandle

__all__ = ["SpilledHandles"]


class SpilledHandles:
    """seq -> handle for backlog messages; see the module docstring."""

    def __init__(self) -> None:
        self._single: weakref.WeakValueDictionary[int, PublishHandle] = (
            weakref.WeakValueDictionary()
        )
        self._starts: list[int] = []  # sorted first seqs of the ranges
        self._ranges: dict[int, tuple[int, weakref.ref[PublishHandle]]] = {}
        self._pruned_at = 64

    def add(self, handle: PublishHandle, first: int, last: int) -> None:
        """``handle`` belongs to the messages with seqs ``first``..``last`` (all of them
        of that handle: seqs of different handles never interleave)."""
        if first == last:
            self._single[first] = handle
            return
        if self._starts and first <= self._starts[-1]:
            bisect.insort(self._starts, first)
        else:
            self._starts.append(first)
        self._ranges[first] = (last, weakref.ref(handle))
        if len(self._starts) > 2 * self._pruned_at:
            self._prune()

    def pop(self, seq: int) -> PublishHandle | None:
        """The handle of message ``seq`` (read back from the backlog), if still alive."""
        h = self._single.pop(seq, None)
        if h is not None or not self._starts:
            return h
        starts = self._starts
        i = bisect.bisect_right(starts, seq) - 1
        if i < 0:
            return None
        first = starts[i]
        last, ref = self._ranges[first]
        if seq > last:
            return None
        h = ref()
        if h is None or seq == last:
            del starts[i]
            del self._ranges[first]
        return h

    def _prune(self) -> None:
        """Forget ranges whose handle is gone (their callers dropped them)."""
        self._ranges = {f: v for f, v in self._ranges.items() if v[1]() is not None}
        self._starts = sorted(self._ranges)
        self._pruned_at = max(64, len(self._starts))

    def __len__(self) -> int:
        return len(self._single) + len(self._ranges)
