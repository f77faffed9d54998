"""When to commit a batch: by size or by age. Pure: the caller passes the time.

A batch is committed when it holds ``max_rows`` messages, or when its first message has
waited ``max_delay`` seconds, whichever comes first. Larger batches insert faster (DuckDB
takes Arrow tables of thousands of rows at hundreds of thousands of rows per second);
the delay bounds how stale the database and how late the acknowledgements can be. Keep
``max_rows`` at or below the client's ``receive_maximum``: the broker sends no more than
that many unacknowledged messages, and messages are acknowledged only after their batch
is committed, so a larger ``max_rows`` is only ever reached through ``max_delay``. With
``receive_maximum`` at twice ``max_rows`` (``fieldmq ingest``'s default) the next batch
arrives while one commits; at ``max_rows`` exactly, receiving waits for every commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatchPolicy", "Batcher"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """``max_rows`` messages or ``max_delay`` seconds, whichever comes first."""

    max_rows: int = 1000
    max_delay: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int):
            raise TypeError(f"max_rows must be an int, got {self.max_rows!r}")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        if not (isinstance(self.max_delay, (int, float)) and math.isfinite(self.max_delay)
                and self.max_delay >= 0):
            raise ValueError(f"max_delay must be a finite number of seconds >= 0, "
                             f"got {self.max_delay!r}")


class Batcher(Generic[T]):
    """Collects items; says when the batch is due and hands it over with :meth:`take`."""

    def __init__(self, policy: BatchPolicy | None = None) -> None:
        self.policy = policy or BatchPolicy()
        self._items: list[T] = []
        self._opened: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T, now: float) -> bool:
        """Add ``item`` received at ``now``; ``True`` if the batch is now due."""
        if self._opened is None:
            self._opened = now
        self._items.append(item)
        return self.due(now)

    def extend(self, items: list[T], now: float) -> bool:
        """Add several ``items`` received at ``now``; ``True`` if the batch is now due."""
        if items and self._opened is None:
            self._opened = now
        self._items.extend(items)
        return self.due(now)

    def due(self, now: float) -> bool:
        """The batch is full, or its oldest item has waited ``max_delay``."""
        if not self._items:
            return False
        left = self.wait(now)
        return len(self._items) >= self.policy.max_rows or (left is not None and left <= 0.0)

    def wait(self, now: float) -> float | None:
        """Seconds until the batch is due by age (``0`` if overdue); ``None`` when empty."""
        if self._opened is None:
            return None
        return max(0.0, self._opened + self.policy.max_delay - now)

    def take(self) -> list[T]:
        """The items, in arrival order; the batcher is empty afterwards."""
        items, self._items, self._opened = self._items, [], None
        return items
