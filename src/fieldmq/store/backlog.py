"""The SQLite backlog's tables and the queries on them, for :mod:`.sqlite`.

Messages that wait are stored one row per *batch* (see :mod:`.batch` for the blob)::

    batches (id, priority, first_seq, last_seq, count, bytes, data)
    gone    (batch, seq)    acknowledged or dropped members of a batch still stored

A batch holds a run of one priority's messages in seq order; the batches of one
priority never overlap, so reading ``ORDER BY first_seq`` gives seq order. A batch
row is deleted once every member is gone; until then its gone members are listed in
``gone`` (durable, so an acknowledged message is never sent again). At open,
:func:`recover` folds the journal's records and ``gone`` into the batches (rewriting
the few partly gone ones) and moves rows of the old one-row-per-message ``messages``
table (schema 1) into batches.

Every function runs inside the caller's transaction and lets ``sqlite3.Error`` through.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence

from .base import Entry
from .batch import batch_seqs, decode_batch, encode_batch

__all__ = ["SCHEMA", "forget", "insert", "load", "recover"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_order ON batches (priority, first_seq);
CREATE TABLE IF NOT EXISTS gone (
    batch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (batch, seq)
) WITHOUT ROWID;
"""

BATCH = 2000  # messages per row at most


def insert(db: sqlite3.Connection, entries: Sequence[Entry]) -> list[int]:
    """Store ``entries`` (runs of one priority in seq order, as the writer spills them)
    as batch rows; the row id for each entry."""
    rows: list[int] = []
    start = 0
    n = len(entries)
    while start < n:
        prio = entries[start].priority
        end = start + 1
        while end < n and end - start < BATCH and entries[end].priority == prio:
            end += 1
        run = entries[start:end]
        cur = db.execute(
            "INSERT INTO batches (priority, first_seq, last_seq, count, bytes, data) "
            "VALUES (?,?,?,?,?,?)",
            (prio, run[0].seq, run[-1].seq, len(run), sum([e.size for e in run]),
             encode_batch(run)),
        )
        row = cur.lastrowid
        assert row is not None
        rows += [row] * len(run)
        start = end
    return rows


def load(db: sqlite3.Connection, priority: int, after_seq: int, limit: int) -> list[Entry]:
    """At least ``limit`` (when there are) stored messages of ``priority`` with seq >
    ``after_seq``, in seq order: whole batches, so possibly more."""
    out: list[Entry] = []
    cur = db.execute(
        "SELECT id, data FROM batches WHERE priority=? AND last_seq>? ORDER BY first_seq",
        (priority, after_seq),
    )
    try:
        for row, data in cur:
            entries = decode_batch(data, priority, row)
            if entries and entries[0].seq <= after_seq:
                entries = [e for e in entries if e.seq > after_seq]
            out += entries
            if len(out) >= limit:
                break
    finally:
        cur.close()  # an open statement would hold the WAL snapshot
    return out


def forget(db: sqlite3.Connection, gone: Iterable[tuple[int, int]]) -> None:
    """Record ``(seq, row)`` members as gone; delete the batch rows that have none left."""
    params = sorted({(row, seq) for seq, row in gone})
    if not params:
        return
    db.executemany("INSERT OR IGNORE INTO gone (batch, seq) VALUES (?,?)", params)
    for row in sorted({r for r, _ in params}):
        found = db.execute("SELECT count FROM batches WHERE id=?", (row,)).fetchone()
        done = db.execute("SELECT count(*) FROM gone WHERE batch=?", (row,)).fetchone()[0]
        if found is None or done >= found[0]:
            db.execute("DELETE FROM batches WHERE id=?", (row,))
            db.execute("DELETE FROM gone WHERE batch=?", (row,))


def recover(db: sqlite3.Connection, live: dict[int, Entry], gone: set[int]) -> int:
    """Fold what the journal says into the backlog: ``live`` messages (not yet acked or
    dropped; some may be stored already) are added, ``gone`` seqs removed, old
    ``messages`` rows moved to batches. Returns how many messages were added."""
    # schema 1 rows: into the batches as if the journal had them
    for r in db.execute(
        "SELECT seq, topic, payload, qos, retain, priority, created, expires, props "
        "FROM messages"
    ).fetchall():
        if r[0] not in gone and r[0] not in live:
            live[r[0]] = Entry(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8])
    db.execute("DELETE FROM messages")
    removals: dict[int, set[int]] = defaultdict(set)
    for row, seq in db.execute("SELECT batch, seq FROM gone"):
        removals[row].add(seq)
    ranges: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # prio -> first, last, id
    for row, prio, first, last in db.execute(
        "SELECT id, priority, first_seq, last_seq FROM batches ORDER BY priority, first_seq"
    ):
        ranges[prio].append((first, last, row))
    firsts = {p: [r[0] for r in rs] for p, rs in ranges.items()}

    def covering(prio: int, seq: int) -> int | None:
        i = bisect.bisect_right(firsts.get(prio, []), seq) - 1
        if i >= 0 and ranges[prio][i][1] >= seq:
            return ranges[prio][i][2]
        return None

    # gone seqs: the batch of any priority whose range covers them (checked by decoding)
    for seq in gone:
        for prio in ranges:
            row = covering(prio, seq)
            if row is not None:
                removals[row].add(seq)
    # live messages already stored are skipped; one inside a batch's range is merged in
    members: dict[int, set[int]] = {}
    additions: dict[int, list[Entry]] = defaultdict(list)
    new: list[Entry] = []
    for e in sorted(live.values(), key=lambda x: x.seq):
        row = covering(e.priority, e.seq)
        if row is None:
            new.append(e)
            continue
        if row not in members:
            data = db.execute("SELECT data FROM batches WHERE id=?", (row,)).fetchone()[0]
            members[row] = set(batch_seqs(data))
        if e.seq not in members[row]:
            additions[row].append(e)
    for row in sorted(set(removals) | set(additions)):
        found = db.execute("SELECT priority, data FROM batches WHERE id=?", (row,)).fetchone()
        db.execute("DELETE FROM batches WHERE id=?", (row,))
        if found is None:
            continue
        drop = removals.get(row, set())
        kept = [e for e in decode_batch(found[1], found[0]) if e.seq not in drop]
        kept += additions.get(row, [])
        kept.sort(key=lambda x: x.seq)
        if kept:
            _insert_as(db, row, kept)
    db.execute("DELETE FROM gone")
    # new runs: split at the existing batches of their priority so none overlaps
    by_gap: dict[tuple[int, int], list[Entry]] = defaultdict(list)
    for e in new:
        by_gap[(e.priority, bisect.bisect_right(firsts.get(e.priority, []), e.seq))].append(e)
    for key in sorted(by_gap):
        insert(db, by_gap[key])
    return len(new) + sum(len(v) for v in additions.values())


def _insert_as(db: sqlite3.Connection, row: int, entries: list[Entry]) -> None:
    """Write a rewritten batch back under its own id (its range only shrinks or takes in
    messages that lie inside it, so it still overlaps no other batch)."""
    db.execute(
        "INSERT INTO batches (id, priority, first_seq, last_seq, count, bytes, data) "
        "VALUES (?,?,?,?,?,?,?)",
        (row, entries[0].priority, entries[0].seq, entries[-1].seq, len(entries),
         sum(e.size for e in entries), encode_batch(entries)),
    )
