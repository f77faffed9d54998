"""An in-memory backend: the same queue semantics, nothing written anywhere.

Used when a client is created with ``store=None`` (tests, or data you can afford
to lose on restart) and as the reference implementation in the store contract tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from .base import Entry, Recovered

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Keeps the backlog in dictionaries. Survives nothing."""

    def __init__(self) -> None:
        self._rows: dict[int, dict[int, Entry]] = {}
        self._dead: list[dict[str, object]] = []
        self._appended = 0

    def open(self, store_time_now: float, wall_now: float) -> Recovered:
        return Recovered(uid=secrets.token_hex(6), next_seq=1, store_time=store_time_now)

    def append(self, data: bytes) -> None:
        self._appended += len(data)

    def sync(self) -> None:
        pass

    def spill(self, entries: Sequence[Entry]) -> list[int]:
        for e in entries:
            copy = Entry(e.seq, e.topic, e.payload, e.qos, e.retain, e.priority, e.created,
                         e.expires, e.props, in_db=1)
            self._rows.setdefault(e.priority, {})[e.seq] = copy
        return [1] * len(entries)

    def delete(self, gone: Iterable[tuple[int, int]]) -> None:
        for s, _ in gone:
            for rows in self._rows.values():
                if rows.pop(s, None) is not None:
                    break

    def dead_letter(self, entries: Sequence[tuple[Entry, str]]) -> None:
        self.delete([(e.seq, e.in_db) for e, _ in entries])
        for e, reason in entries:
            self._dead.append({"seq": e.seq, "topic": e.topic, "payload": e.payload,
                               "qos": e.qos, "retain": e.retain, "priority": e.priority,
                               "reason": reason, "at_wall": 0.0})

    def load(self, priority: int, after_seq: int, limit: int) -> list[Entry]:
        rows = self._rows.get(priority, {})
        seqs = sorted(s for s in list(rows) if s > after_seq)[:limit]  # spill may add
        return [rows[s] for s in seqs]

    def rotate(self, header: bytes, live: bytes) -> None:
        self._appended = len(header) + len(live)

    def save_clock(self, store_time: float, wall: float) -> None:
        pass

    def journal_size(self) -> int:
        return self._appended

    def size_on_disk(self) -> int:
        return 0

    def dead_letters(self, limit: int) -> list[dict[str, object]]:
        return self._dead[:limit]

    def close(self) -> None:
        self._rows.clear()

    def abandon(self) -> None:
        pass

    def __repr__(self) -> str:
        return "MemoryBackend()"
