"""SQLiteBackend at the file level: the single-process lock and a corrupt database."""

from __future__ import annotations

import os

import pytest

from fieldmq.errors import FieldmqError, StoreLocked

from .conftest import Queues, drain, put, run_and_kill


def test_second_open_same_process_is_locked(sqlite_queues: Queues) -> None:
    """A second open of an open store raises StoreLocked naming this PID."""
    sqlite_queues.open()
    with pytest.raises(StoreLocked, match=rf"process {os.getpid()}\b") as info:
        sqlite_queues.open()
    assert isinstance(info.value, FieldmqError)
    assert "own store path" in str(info.value)


def test_second_open_other_process_names_holder_pid(sqlite_queues: Queues) -> None:
    """A store held by another process is refused naming that process's PID; after the
    holder is SIGKILLed the store opens and nothing is lost."""
    import subprocess
    import sys
    import textwrap

    from .conftest import CHILD_PRELUDE

    body = textwrap.dedent(
        """
        q = DurableQueue(SQLiteBackend(path)).open()
        put(q, b"held")
        ready()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + body, str(sqlite_queues.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        with pytest.raises(StoreLocked, match=rf"process {proc.pid}\b"):
            sqlite_queues.open()
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()
    q = sqlite_queues.open()
    assert drain(q) == [b"held"]


def test_lock_released_on_close(sqlite_queues: Queues) -> None:
    """After close the same path opens again in the same process."""
    q = sqlite_queues.open()
    q.close()
    q2 = sqlite_queues.open()
    put(q2, b"x")


def test_corrupt_db_is_moved_aside(sqlite_queues: Queues) -> None:
    """A garbage database is moved to *.corrupt-* and a fresh store opens in its place."""
    path = sqlite_queues.path
    garbage = b"this is not a sqlite database " * 200
    path.write_bytes(garbage)
    q = sqlite_queues.open()
    assert q.corrupt_moved_to is not None
    moved = path.parent / os.path.basename(q.corrupt_moved_to)
    assert moved.name.startswith("store.db.corrupt-")
    assert moved.read_bytes() == garbage
    assert q.stats()["store_error"] and "corrupt" in q.stats()["store_error"]
    put(q, b"fresh")
    q.close()
    q2 = sqlite_queues.open()
    assert q2.corrupt_moved_to is None
    assert drain(q2) == [b"fresh"]


def test_corrupt_db_keeps_journal_messages(sqlite_queues: Queues) -> None:
    """Messages still in the journal survive a database that became garbage after a crash."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path)).open()
        for i in range(5):
            put(q, b"j%d" % i)
        ready()
        """,
        sqlite_queues.path,
    )
    sqlite_queues.path.write_bytes(b"\xff" * 4096)
    for suffix in ("-wal", "-shm"):
        p = sqlite_queues.path.with_name(sqlite_queues.path.name + suffix)
        if p.exists():
            p.unlink()
    q = sqlite_queues.open()
    assert q.corrupt_moved_to is not None
    assert drain(q) == [b"j%d" % i for i in range(5)]
