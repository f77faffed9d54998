"""The durable backend: an append-only journal plus a SQLite backlog.

Files for ``store="dev.db"``:

* ``dev.db`` (+ ``-wal``/``-shm``): SQLite in WAL mode, ``synchronous=FULL``. Holds
  the backlog (messages that waited longer than ``spill_after`` while offline, or
  that did not fit in memory), one row per batch of messages (see :mod:`.backlog`),
  the dead letters and metadata.
* ``dev.db.journal-<n>``: the journal segment. Every accepted message is appended
  here with one ``write()`` before ``publish()`` returns (so it survives SIGKILL) and
  the segment is ``fdatasync``'d by the writer thread within ``fsync_interval``
  (so it survives a power cut). Acks append 17-byte records. Messages acked while
  still young never touch SQLite: that is what keeps disk writes per message near
  the payload size (SD cards wear out, seed 09).
* ``dev.db.lock``: ``flock``'d while a process has the store open.

On open the journal is replayed into SQLite in one transaction and a fresh
segment is started, so a crash at any point loses nothing that was acknowledged
to the caller.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import StoreCorrupt, StoreError, StoreFull, StoreLocked
from . import backlog, records
from .base import Entry, Recovered

__all__ = ["SQLiteBackend"]

log = logging.getLogger("fieldmq.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    props BLOB
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    props BLOB,
    reason TEXT NOT NULL,
    at_wall REAL NOT NULL
);
"""

SCHEMA_VERSION = 2  # 2: the backlog in batches (backlog.py); 1: one row per message


def _translate(exc: sqlite3.Error, doing: str, path: Path) -> StoreError:
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk i/o" in text):
        return StoreFull(f"store {path} is full while {doing}: {exc}")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    ):
        return StoreCorrupt(f"store {path} is corrupt ({doing}): {exc}")
    return StoreError(f"store {path} failed while {doing}: {exc}")


class SQLiteBackend:
    """Journal + SQLite persistence. See the module docstring for the file layout."""

    def __init__(self, path: str | os.PathLike[str], *, max_pages: int | None = None) -> None:
        self.path = Path(path)
        self._max_pages = max_pages
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._jfd: int | None = None
        self._jnum = 0
        self._jsize = 0

    # -- helpers -----------------------------------------------------------
    def _segment(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.journal-{n}")

    def _segments(self) -> list[tuple[int, Path]]:
        prefix = f"{self.path.name}.journal-"
        found = []
        for p in self.path.parent.glob(f"{self.path.name}.journal-*"):
            tail = p.name[len(prefix) :]
            if tail.isdigit():
                found.append((int(tail), p))
        return sorted(found)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        if self._max_pages:
            db.execute(f"PRAGMA max_page_count={int(self._max_pages)}")
        return db

    def _take_lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"store {self.path} is already open in process {holder}; "
                "two processes must not share one store: give each its own store path"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _set_aside(self, exc: BaseException) -> str:
        moved = self._move_aside()
        log.error(
            "store %s could not be read (%s); moved it aside to %s and started a fresh one",
            self.path, exc, moved,
        )
        return moved

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        return str(target)

    # -- Backend -------------------------------------------------------------
    def open(self, store_time_now: float, wall_now: float) -> Recovered:
        self._take_lock()
        try:
            return self._open_locked(store_time_now, wall_now)
        except BaseException:
            self.close()  # release the lock and any connection: a retry sees the real error
            raise

    def _open_locked(self, store_time_now: float, wall_now: float) -> Recovered:
        corrupt_to: str | None = None
        while True:
            # Corruption shows either when the file is opened or, for a damaged page
            # deeper in the file, while the backlog is read during recovery. Either way
            # the file is moved aside once and a fresh store replays the journal.
            try:
                db = self._open_db()
            except (sqlite3.DatabaseError, StoreCorrupt) as exc:
                if corrupt_to is not None:
                    raise
                corrupt_to = self._set_aside(exc)
                continue
            self._db = db
            try:
                rec = self._recover(db, store_time_now, wall_now)
                break
            except (sqlite3.Error, ValueError) as exc:  # ValueError: a damaged batch blob
                err = (_translate(exc, "recovering", self.path) if isinstance(exc, sqlite3.Error)
                       else StoreCorrupt(f"store {self.path} is corrupt (recovering): {exc}"))
                if corrupt_to is not None or not isinstance(err, StoreCorrupt):
                    raise err from exc
                _rollback(db)
                db.close()
                self._db = None
                corrupt_to = self._set_aside(err)
        rec.corrupt_moved_to = corrupt_to
        self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._reader.execute("PRAGMA query_only=1")
        return rec

    def _open_db(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            db.executescript(_SCHEMA + backlog.SCHEMA)
            db.execute("SELECT count(*) FROM meta").fetchone()
            row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                db.close()
                raise StoreError(
                    f"store {self.path} was written by a newer fieldmq (schema {row[0]}); "
                    "upgrade fieldmq or use another store path"
                )
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _recover(self, db: sqlite3.Connection, store_now: float, wall_now: float) -> Recovered:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        uid = str(meta.get("uid") or secrets.token_hex(6))
        next_seq = int(meta.get("next_seq") or 1)
        last_store = float(meta.get("store_time") or 0.0)
        last_wall = float(meta.get("wall") or 0.0)
        live: dict[int, Entry] = {}
        gone: set[int] = set()
        replayed = 0
        segments = self._segments()
        for _, seg in segments:
            data = seg.read_bytes()
            for kind, value in records.decode(data):
                if kind == records.PUB:
                    assert isinstance(value, Entry)
                    live[value.seq] = value
                    next_seq = max(next_seq, value.seq + 1)
                elif kind in (records.ACK, records.DROP):
                    assert isinstance(value, int)
                    live.pop(value, None)
                    gone.add(value)  # its row may already be in the backlog
                elif kind == records.CLOCK:
                    assert isinstance(value, tuple)
                    if value[0] > last_store or (value[0] == last_store and value[1] > last_wall):
                        last_store, last_wall = value
                elif kind == records.HDR:
                    assert isinstance(value, records.Header)
                    next_seq = max(next_seq, value.next_seq)
                    if value.store_time > last_store or (
                        value.store_time == last_store and value.wall > last_wall
                    ):
                        last_store, last_wall = value.store_time, value.wall
                    if "uid" not in meta and value.uid:
                        uid = value.uid
        for query in ("SELECT max(seq) FROM messages", "SELECT max(last_seq) FROM batches",
                      "SELECT max(seq) FROM dead_letters"):
            row = db.execute(query).fetchone()
            if row and row[0] is not None:
                next_seq = max(next_seq, int(row[0]) + 1)
        db.execute("BEGIN IMMEDIATE")
        replayed = backlog.recover(db, live, gone)
        db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [
                ("uid", uid),
                ("version", SCHEMA_VERSION),
                ("next_seq", next_seq),
                ("store_time", last_store),
                ("wall", last_wall),
            ],
        )
        db.execute("COMMIT")
        counts: dict[int, int] = {}
        total = 0
        for prio, n, b in db.execute(
            "SELECT priority, sum(count), sum(bytes) FROM batches GROUP BY priority"
        ):
            counts[int(prio)] = int(n)
            total += int(b or 0)
        # Everything is in SQLite now (meta included): drop the old segments before
        # writing the new one, so a nearly full disk needs no room for both.
        for _, seg in segments:
            seg.unlink(missing_ok=True)
        self._fsync_dir()
        # The new segment starts at the recovered store time, stamped with the wall
        # time of this open, so a crash before any clock record still credits correctly.
        header = records.encode_header(records.Header(next_seq, last_store, wall_now, uid))
        self._start_segment(header, (segments[-1][0] + 1) if segments else 1)
        self._fsync_dir()
        if replayed:
            log.info("store %s: recovered %d messages from the journal", self.path, replayed)
        rec = Recovered(uid=uid, next_seq=next_seq, store_time=last_store)
        rec.cold_counts = counts
        rec.cold_bytes = total
        rec.recovered_from_journal = replayed
        # Remember the last wall time for crediting the closed period.
        self.last_wall = last_wall
        return rec

    last_wall: float = 0.0

    def _start_segment(self, initial: bytes, num: int) -> None:
        """Write and sync segment ``num``; on failure nothing changes (the old one stays)."""
        path = self._segment(num)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        fd = -1
        try:
            fd = os.open(path, flags, 0o644)
            _write_all(fd, initial)
            os.fdatasync(fd)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            path.unlink(missing_ok=True)
            raise _os_error(exc, "starting a journal segment", self.path) from exc
        self._jnum = num
        old = self._jfd
        self._jfd = fd
        self._jsize = len(initial)
        if old is not None:
            os.close(old)

    def _fsync_dir(self) -> None:
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def append(self, data: bytes) -> None:
        fd = self._jfd
        if fd is None:
            raise RuntimeError("store is closed")
        try:
            _write_all(fd, data)
        except OSError as exc:
            # Cut a half-written record off so that later records stay readable.
            try:
                os.ftruncate(fd, self._jsize)
            except OSError:  # pragma: no cover - nothing more we can do
                pass
            raise _os_error(exc, "appending to the journal", self.path) from exc
        self._jsize += len(data)

    def sync(self) -> None:
        fd = self._jfd
        if fd is not None:
            try:
                os.fdatasync(fd)
            except OSError as exc:
                raise _os_error(exc, "syncing the journal", self.path) from exc

    def spill(self, entries: Sequence[Entry]) -> list[int]:
        db = self._require_db()
        try:
            db.execute("BEGIN IMMEDIATE")
            rows = backlog.insert(db, entries)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(db)
            raise _translate(exc, "writing the backlog", self.path) from exc
        return rows

    def delete(self, gone: Iterable[tuple[int, int]]) -> None:
        db = self._require_db()
        gone = list(gone)
        if not gone:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            backlog.forget(db, gone)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(db)
            raise _translate(exc, "deleting acknowledged messages", self.path) from exc

    def dead_letter(self, entries: Sequence[tuple[Entry, str]]) -> None:
        db = self._require_db()
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO dead_letters VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (e.seq, e.topic, e.payload, e.qos, int(e.retain), e.priority, e.props, r, now)
                    for e, r in entries
                ],
            )
            backlog.forget(db, [(e.seq, e.in_db) for e, _ in entries if e.in_db])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(db)
            raise _translate(exc, "writing dead letters", self.path) from exc

    def load(self, priority: int, after_seq: int, limit: int) -> list[Entry]:
        reader = self._reader
        if reader is None:
            raise RuntimeError("store is closed")
        try:
            return backlog.load(reader, priority, after_seq, limit)
        except sqlite3.Error as exc:
            raise _translate(exc, "reading the backlog", self.path) from exc
        except ValueError as exc:
            raise StoreCorrupt(f"store {self.path}: {exc}") from exc

    def rotate(self, header: bytes, live: bytes) -> None:
        old_num = self._jnum
        self._start_segment(header + live, old_num + 1)
        self._fsync_dir()
        self._segment(old_num).unlink(missing_ok=True)

    def save_clock(self, store_time: float, wall: float) -> None:
        db = self._require_db()
        try:
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("store_time", store_time), ("wall", wall)],
            )
        except sqlite3.Error as exc:
            raise _translate(exc, "saving the clock", self.path) from exc

    def journal_fd(self) -> tuple[int, int]:
        """The open journal segment: (file descriptor, segment number)."""
        if self._jfd is None:
            raise RuntimeError("store is closed")
        return self._jfd, self._jnum

    def journal_size(self) -> int:
        return self._jsize

    def size_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(str(self.path) + suffix).st_size
            except FileNotFoundError:
                pass
        return total + self._jsize

    def dead_letters(self, limit: int) -> list[dict[str, object]]:
        reader = self._reader
        if reader is None:
            raise RuntimeError("store is closed")
        rows = reader.execute(
            "SELECT seq, topic, payload, qos, retain, priority, reason, at_wall "
            "FROM dead_letters ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("seq", "topic", "payload", "qos", "retain", "priority", "reason", "at_wall")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is closed")
        return self._db

    def close(self) -> None:
        for conn in (self._reader, self._db):
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:  # pragma: no cover - best effort
                    log.warning("closing store %s: %s", self.path, exc)
        self._reader = self._db = None
        if self._jfd is not None:
            try:
                os.fdatasync(self._jfd)
            finally:
                os.close(self._jfd)
                self._jfd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon(self) -> None:
        """Forget every handle without touching the files: used in a forked child,
        where closing SQLite could checkpoint or delete the parent's WAL."""
        self._reader = self._db = None
        self._jfd = self._lock_fd = None

    def __repr__(self) -> str:
        return f"SQLiteBackend({str(self.path)!r})"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _rollback(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:  # pragma: no cover
        pass


def _os_error(exc: OSError, doing: str, path: Path) -> StoreError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFull(f"store {path} is full while {doing}: {exc}")
    return StoreError(f"store {path} failed while {doing}: {exc}")
