"""The backlog's batch codec and its SQLite tables: round trips, damage, partial acks,
recovery folding the journal in, and rows of the old one-row-per-message schema."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from fieldmq.store import backlog
from fieldmq.store.base import NO_EXPIRY, Entry
from fieldmq.store.batch import batch_seqs, decode_batch, encode_batch

from .conftest import Queues, drain, put, run_and_kill, wait_for


def _e(seq: int, topic: str = "a/b", payload: bytes = b"p", prio: int = 5, **kw: object) -> Entry:
    return Entry(seq, topic, payload, int(kw.get("qos", 1)), bool(kw.get("retain", False)),  # type: ignore[call-overload]
                 prio, float(kw.get("created", 1.5)), float(kw.get("expires", NO_EXPIRY)),  # type: ignore[arg-type]
                 kw.get("props"))  # type: ignore[arg-type]


def _fields(e: Entry) -> tuple[object, ...]:
    return (e.seq, e.topic, e.payload, e.qos, e.retain, e.priority, e.created, e.expires,
            e.props, e.size)


def test_batch_round_trip_every_field() -> None:
    """Every field survives, per message: topics shared or not, props or none, retain."""
    entries = [
        _e(1),
        _e(2, topic="température/日本", payload=b"\x00\xff" * 50, qos=2, retain=True,
           created=-3.25, expires=1e9, props=b'[["k","v"]]'),
        _e(7, payload=b"", qos=0, props=b""),
        _e(2**62, topic="a/b", payload=b"x" * 70_000),
    ]
    out = decode_batch(encode_batch(entries), 5, in_db=42)
    assert [_fields(e) for e in out] == [_fields(e) for e in entries[:2]] + [
        _fields(_e(7, payload=b"", qos=0, props=b"")), _fields(entries[3])]
    assert all(e.in_db == 42 and e.handle is None for e in out)
    assert batch_seqs(encode_batch(entries)) == (1, 2, 7, 2**62)


def test_damaged_batch_raises_value_error() -> None:
    """A truncated, padded or unknown-version blob is refused, never half read."""
    blob = encode_batch([_e(1), _e(2, props=b"x")])
    for bad in (blob[:-1], blob + b"\x00", b"\x09" + blob[1:], blob[:5]):
        with pytest.raises(ValueError):
            decode_batch(bad, 5)


def _db(tmp_path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    db.executescript(backlog.SCHEMA + "CREATE TABLE messages (seq INTEGER PRIMARY KEY, topic, "
                     "payload, qos, retain, priority, created, expires, props);")
    return db


def test_batch_row_deleted_only_when_every_member_is_gone(tmp_path: Path) -> None:
    """Rows hold runs of one priority; a partly acked row stays (its gone members listed),
    a fully acked one goes; load skips what was read already and keeps seq order."""
    db = _db(tmp_path)
    rows = backlog.insert(db, [_e(1, prio=9), _e(2, prio=9), _e(3, prio=2), _e(4, prio=9)])
    assert rows[0] == rows[1] != rows[2] != rows[3]
    assert [e.seq for e in backlog.load(db, 9, 0, 10)] == [1, 2, 4]
    assert [e.seq for e in backlog.load(db, 9, 1, 1)] == [2]  # whole batches, enough
    assert [e.seq for e in backlog.load(db, 9, 1, 2)] == [2, 4]
    backlog.forget(db, [(1, rows[0])])
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 3
    backlog.forget(db, [(2, rows[1]), (3, rows[2])])
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM gone").fetchone()[0] == 0


def test_recover_folds_journal_gone_and_old_rows(tmp_path: Path) -> None:
    """At open: gone members leave their batch (rewritten), live journal messages already
    stored are not doubled, new ones and schema-1 rows join without overlapping a batch."""
    db = _db(tmp_path)
    (r1,) = set(backlog.insert(db, [_e(10), _e(11), _e(12)]))
    backlog.insert(db, [_e(20), _e(21)])
    db.execute("INSERT INTO gone VALUES (?, ?)", (r1, 10))
    db.execute("INSERT INTO messages VALUES (15, 't', x'00', 1, 0, 5, 0.0, -1.0, NULL)")
    live = {s: _e(s) for s in (5, 12, 16, 30)}  # 12 is stored already
    added = backlog.recover(db, live, gone={11, 99})
    assert added == 4  # 5, 16, 30 and the schema-1 row 15
    assert [e.seq for e in backlog.load(db, 5, 0, 100)] == [5, 12, 15, 16, 20, 21, 30]
    assert db.execute("SELECT count(*) FROM gone").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    firsts = db.execute("SELECT first_seq, last_seq FROM batches ORDER BY first_seq").fetchall()
    assert all(a[1] < b[0] for a, b in itertools.pairwise(firsts))


def test_partly_acked_batch_survives_crash_without_resending(sqlite_queues: Queues) -> None:
    """Half a spilled batch acked and its deletion written, then SIGKILL (the journal ack
    records are rotated away): the acked half never comes back, the rest does, in order."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path), spill_after=0.0, fsync_interval=10,
                         rotate_bytes=4096).open()
        for i in range(40):
            put(q, b"m%03d" % i + b"." * 40)
        q.flush(10)
        wait_for(lambda: q.stats()["spilled"] >= 40)
        q.acked(q.take(15))
        for i in range(40, 140):   # rotations drop the old journal's ack records
            put(q, b"m%03d" % i + b"." * 40, priority=1)
        q.flush(10)
        wait_for(lambda: q.stats()["spilled"] >= 140)
        ready()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open()
    left = [p[:4] for p in drain(q)]
    assert left == [b"m%03d" % i for i in range(15, 140)]


def test_schema_1_rows_are_delivered(sqlite_queues: Queues) -> None:
    """A backlog written one row per message (schema 1) is delivered, by priority, in
    order, and counted."""
    q = sqlite_queues.open()
    put(q, b"journal")
    q.close()
    db = sqlite3.connect(sqlite_queues.path)
    with db:
        db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)",
                       [(100 + i, "t", b"old%d" % i, 1, 0, 3 + 5 * (i % 2), 0.0, -1.0, None)
                        for i in range(4)])
    db.close()
    q = sqlite_queues.open()
    assert q.pending_count() == 5
    assert q.stats()["queued_bytes"] == len(b"journal") + 1 + 4 * (len(b"old0") + 1)
    assert drain(q) == [b"old1", b"old3", b"journal", b"old0", b"old2"]
    assert wait_for(lambda: q.stats()["queued"] == 0)


def test_spilled_batch_handles_are_settled_when_read_back(queues: Queues) -> None:
    """Handles of spilled messages (one publish_many batch, single publishes) are found
    again when the messages come back from the backlog; a dropped handle is simply gone."""
    import gc

    from fieldmq.client.handle import BatchHandle

    q = queues.open(spill_after=0.0)
    batch = BatchHandle(q, "b", q.next_seq, 50)
    items = [("t", b"t", b"%d" % i, 1, False, 5 + i % 2, None, None) for i in range(50)]
    q.put_many(items, batch)
    single = put(q, b"single", priority=5)
    put(q, b"forgotten", priority=5)  # its handle is dropped at once
    gc.collect()
    assert q.flush(5)
    wait_for(lambda: q.stats()["spilled"] >= 52, what="spilled")
    got = q.take(100)
    assert len(got) == 52
    assert all(e.handle is batch for e in got if e.payload not in (b"single", b"forgotten"))
    q.acked(got)
    assert batch.status == "acked" and batch.counts == {"acked": 50, "pending": 0}
    assert single.status == "acked"
