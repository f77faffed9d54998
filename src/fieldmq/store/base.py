"""The store's data model and the protocol every persistence backend implements.

A message lives in memory as an :class:`Entry` while it is young or in flight.
The backend makes it durable in two steps: ``append`` writes a journal record
that survives a process kill as soon as the call returns, ``sync`` makes the
journal survive a power cut, and ``spill`` moves messages that wait longer into
the backlog table so memory stays flat however long the broker is away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..client.handle import PublishHandle

__all__ = ["NO_EXPIRY", "Backend", "Entry", "Recovered"]

NO_EXPIRY = -1.0


class Entry:
    """One accepted message. ``created``/``expires`` are in *store time* (seconds on
    the store's own monotonic clock), never wall-clock time."""

    __slots__ = (
        "created",
        "done",
        "expires",
        "handle",
        "in_db",
        "payload",
        "priority",
        "props",
        "qos",
        "retain",
        "seq",
        "size",
        "topic",
    )

    def __init__(
        self,
        seq: int,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        priority: int,
        created: float,
        expires: float,
        props: bytes | None = None,
        handle: PublishHandle | None = None,
        in_db: int = 0,
    ) -> None:
        self.seq = seq
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.priority = priority
        self.created = created
        self.expires = expires
        self.props = props
        # Bytes on the wire: UTF-8 length of the topic (cheap for ASCII topics).
        self.size = len(payload) + (len(topic) if topic.isascii() else len(topic.encode()))
        self.handle = handle
        # The backlog row (batch) that holds the message; 0 while it is only in the journal.
        self.in_db = in_db
        self.done = False

    def expired(self, now: float) -> bool:
        return self.expires != NO_EXPIRY and now >= self.expires

    def __repr__(self) -> str:
        return (
            f"Entry(seq={self.seq}, topic={self.topic!r}, qos={self.qos}, "
            f"priority={self.priority}, size={self.size})"
        )


@dataclass(slots=True)
class Recovered:
    """What a backend found when it opened."""

    uid: str
    next_seq: int
    store_time: float
    cold_counts: dict[int, int] = field(default_factory=dict)
    cold_bytes: int = 0
    recovered_from_journal: int = 0
    corrupt_moved_to: str | None = None


class Backend(Protocol):
    """Persistence for the queue. Every method is called with the queue's lock
    *not* held unless stated, from the thread named in its docstring."""

    def open(self, store_time_now: float, wall_now: float) -> Recovered:
        """Lock, recover the journal into the backlog, start a fresh journal."""
        ...

    def append(self, data: bytes) -> None:
        """Write journal records (caller holds the queue lock). Survives a process kill."""
        ...

    def sync(self) -> None:
        """Make everything appended so far survive a power cut (writer thread)."""
        ...

    def spill(self, entries: Sequence[Entry]) -> list[int]:
        """Durably insert ``entries`` into the backlog (writer thread); returns, for each
        entry, the backlog row (> 0) that now holds it."""
        ...

    def delete(self, gone: Iterable[tuple[int, int]]) -> None:
        """Durably forget backlog messages, given as ``(seq, row)`` (writer thread)."""
        ...

    def dead_letter(self, entries: Sequence[tuple[Entry, str]]) -> None:
        """Move entries with a reason to the dead-letter table (writer thread)."""
        ...

    def load(self, priority: int, after_seq: int, limit: int) -> list[Entry]:
        """Backlog rows of ``priority`` with seq > ``after_seq`` in seq order (any thread)."""
        ...

    def rotate(self, header: bytes, live: bytes) -> None:
        """Start a new journal holding ``header`` and the ``live`` records, drop the old
        one (caller holds the queue lock)."""
        ...

    def journal_size(self) -> int:
        ...

    def size_on_disk(self) -> int:
        ...

    def dead_letters(self, limit: int) -> list[dict[str, object]]:
        ...

    def close(self) -> None:
        ...
