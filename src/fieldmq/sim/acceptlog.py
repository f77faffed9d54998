"""The accept log: every message a simulated device's client accepted, in a small
SQLite file per simulator process (``<state-dir>/accepted-<n>.db``), plus the
anomaly labels and each device's final client statistics.

**Order and the crash window.** A row is recorded *after* ``publish()`` returned
(so only accepted messages are logged) and rows are committed in batches, at the
latest ``commit_interval`` seconds (default 0.2 s) or ``batch`` rows (500) after
the first uncommitted one, by the publishing thread itself. A committed row
survives a SIGKILL of the process (SQLite WAL; the client's store makes the same
promise for the message itself). If the process is killed, rows of the last
uncommitted batch are lost from the log while their messages are in the store.
The audit closes most of that window with the stores' gap-free sequence numbers
(see :mod:`.audit`): a seq missing between two logged ones, or an arrival after
the last logged one, is still counted as sent. What remains: a message accepted
in the last ``commit_interval`` before a SIGKILL, by a device that never publishes
again afterwards, *and* never delivered, is invisible to the audit.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import StoreError
from .anomalies import Label
from .audit import AcceptedRow

__all__ = ["AcceptLog", "read_accepted", "read_device_stats", "read_labels"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (
    message_id TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL,
    topic TEXT NOT NULL, kind TEXT NOT NULL, accepted_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    device TEXT NOT NULL, metric TEXT NOT NULL, kind TEXT NOT NULL,
    start_tick INTEGER NOT NULL, end_tick INTEGER NOT NULL, start REAL NOT NULL,
    "end" REAL NOT NULL, truncated INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS device_stats (
    device TEXT PRIMARY KEY, stats TEXT NOT NULL, at REAL NOT NULL);
"""


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the log {path}: {exc}") from exc
    return db


class AcceptLog:
    """Append-only log of accepted messages; not thread-safe (one publishing thread)."""

    def __init__(
        self, path: str | Path, *, commit_interval: float = 0.2, batch: int = 500
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.commit_interval = commit_interval
        self.batch = batch
        self._db: sqlite3.Connection | None = _connect(self.path)
        self._rows: list[tuple[str, str, int, str, str, float]] = []
        self._labels: list[tuple[Any, ...]] = []
        self._first = 0.0
        self.recorded = 0

    def record(self, message_id: str, device: str, seq: int, topic: str, kind: str,
               at: float) -> None:
        """Log one accepted message (call right after ``publish()`` returned)."""
        if not self._rows:
            self._first = time.monotonic()
        self._rows.append((message_id, device, seq, topic, kind, at))
        if len(self._rows) >= self.batch:
            self.commit()

    def label(self, label: Label) -> None:
        self._labels.append((label.device, label.metric, label.kind, label.start_tick,
                             label.end_tick, label.start, label.end, int(label.truncated)))

    def device_stats(self, device: str, stats: dict[str, Any]) -> None:
        """Keep the client's last statistics of ``device`` (its drop counts matter)."""
        db = self._require()
        try:
            db.execute("INSERT OR REPLACE INTO device_stats VALUES (?, ?, ?)",
                       (device, json.dumps(stats, default=str), time.time()))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc

    def due(self) -> bool:
        """Uncommitted rows older than ``commit_interval``."""
        return bool(self._rows or self._labels) and (
            not self._rows or time.monotonic() - self._first >= self.commit_interval
        )

    def commit(self) -> None:
        """Write the pending rows in one transaction."""
        db = self._require()
        if not self._rows and not self._labels:
            return
        try:
            db.execute("BEGIN")
            db.executemany("INSERT INTO accepted VALUES (?, ?, ?, ?, ?, ?)", self._rows)
            db.executemany("INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._labels)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc
        self.recorded += len(self._rows)
        self._rows.clear()
        self._labels.clear()

    def close(self) -> None:
        if self._db is None:
            return
        try:
            self.commit()
        finally:
            self._db.close()
            self._db = None

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("this AcceptLog is closed")
        return self._db

    def __enter__(self) -> AcceptLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _query(paths: Iterable[Path], sql: str) -> Iterator[tuple[Any, ...]]:
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"log file {path} not found")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        try:
            yield from db.execute(sql)
        except sqlite3.Error as exc:
            raise StoreError(f"{path} is not a simulator log: {exc}") from exc
        finally:
            db.close()


def read_accepted(paths: Iterable[Path]) -> list[AcceptedRow]:
    return [AcceptedRow(*row) for row in _query(
        paths, "SELECT message_id, device, seq, topic, accepted_at FROM accepted")]


def read_labels(paths: Iterable[Path]) -> list[Label]:
    rows = _query(paths, 'SELECT device, metric, kind, start_tick, end_tick, start, "end", '
                         "truncated FROM labels ORDER BY start")
    return sorted((Label(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows),
                  key=lambda lb: (lb.start, lb.device))


def read_device_stats(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    return {dev: json.loads(stats)
            for dev, stats in _query(paths, "SELECT device, stats FROM device_stats")}
