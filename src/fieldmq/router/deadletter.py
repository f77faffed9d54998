"""The durable dead-letter store: a SQLite file (WAL, ``synchronous=FULL``).

A message is written here, and the write committed, *before* it is acknowledged to
the broker: a crash between the two leaves a duplicate (the broker redelivers it and
it may be dead-lettered twice), never a loss. Several worker processes share one file
(SQLite locking, a busy timeout). ``fieldmq dlq list | replay | purge`` work on it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import DeadLetterError

__all__ = ["DeadLetter", "DeadLetterStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    message_id TEXT,
    route TEXT NOT NULL,
    params TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    worker TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_route ON dead_letters(route);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message and why."""

    id: int
    created: float
    topic: str
    payload: bytes
    qos: int
    retain: bool
    message_id: str | None
    route: str
    params: dict[str, str]
    attempts: int
    error: str
    worker: str

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["payload"] = self.payload.decode("utf-8", "backslashreplace")
        return d


class DeadLetterStore:
    """``DeadLetterStore(path)``: open (create) the store. Thread-safe; close it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=30.0, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise DeadLetterError(f"cannot open the dead-letter store {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("this DeadLetterStore is closed; open a new one")
        return self._db

    def put(
        self,
        *,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        message_id: str | None,
        route: str,
        params: dict[str, str],
        attempts: int,
        error: str,
        worker: str,
    ) -> int:
        """Store one message durably (committed when this returns); return its id."""
        with self._lock:
            try:
                cur = self._conn().execute(
                    "INSERT INTO dead_letters (created, topic, payload, qos, retain, message_id,"
                    " route, params, attempts, error, worker) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (time.time(), topic, payload, qos, int(retain), message_id, route,
                     json.dumps(params), attempts, error, worker),
                )
            except sqlite3.Error as exc:
                raise DeadLetterError(f"cannot write to the dead-letter store: {exc}") from exc
            return int(cur.lastrowid or 0)

    def list(self, *, limit: int | None = 100, route: str | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (``route`` filters by the route pattern)."""
        sql = "SELECT * FROM dead_letters"
        args: list[Any] = []
        if route is not None:
            sql += " WHERE route = ?"
            args.append(route)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            try:
                rows = self._conn().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise DeadLetterError(f"cannot read the dead-letter store: {exc}") from exc
        return [
            DeadLetter(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6], r[7],
                       json.loads(r[8]), r[9], r[10], r[11])
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            try:
                return int(self._conn().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
            except sqlite3.Error as exc:
                raise DeadLetterError(f"cannot read the dead-letter store: {exc}") from exc

    def delete(self, ids: Iterable[int]) -> int:
        """Delete the given ids; return how many were deleted."""
        wanted = [(int(i),) for i in ids]
        with self._lock:
            try:
                db = self._conn()
                before = db.total_changes
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM dead_letters WHERE id = ?", wanted)
                db.execute("COMMIT")
                return db.total_changes - before
            except sqlite3.Error as exc:
                raise DeadLetterError(f"cannot delete from the dead-letter store: {exc}") from exc

    def purge(self, *, route: str | None = None) -> int:
        """Delete every dead letter (of ``route``); return how many."""
        with self._lock:
            try:
                db = self._conn()
                if route is None:
                    cur = db.execute("DELETE FROM dead_letters")
                else:
                    cur = db.execute("DELETE FROM dead_letters WHERE route = ?", (route,))
                return int(cur.rowcount)
            except sqlite3.Error as exc:
                raise DeadLetterError(f"cannot purge the dead-letter store: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> DeadLetterStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeadLetterStore({str(self.path)!r})"
