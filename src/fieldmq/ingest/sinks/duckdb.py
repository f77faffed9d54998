"""The default sink: one DuckDB database file, no server.

Rows go in as Arrow tables, never row by row (``insert ... select * from arrow_table``
reaches hundreds of thousands of rows per second; ``executemany`` about 1.5k). Keys are
primary keys and inserts say ``on conflict do nothing``, so writing a batch twice changes
nothing; ``returning`` tells which messages were new, and only their readings are inserted
and folded into ``rollups`` (an ``on conflict do update`` merge), all in one transaction.
So ``readings`` needs no key of its own: a reading is written exactly when its message is
first written, each ``(message_id, metric)`` once (keeping a unique index on it cost a
fifth of the insert rate). Files created with that key (before 0.1) keep it and work as
they are.

DuckDB allows one process to open a database file for writing: a second process gets
:class:`~fieldmq.ingest.errors.SinkLocked` at once (never a hang). Several ingest
processes need the PostgreSQL or Parquet sink.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import SinkError, SinkLocked, require
from ..raw import RawBatch, merge
from ..records import Batch, unique_readings
from ..rollups import DEFAULT_WIDTHS
from ._arrow import table
from ._expand import MESSAGES, READINGS, stage
from .base import QueryResult, WriteResult

__all__ = ["DDL", "DuckDBSink"]

DDL = """
create table if not exists messages (
    message_id varchar primary key, topic varchar, grp varchar, device varchar,
    kind varchar, name varchar, ts double, received double, payload varchar);
create table if not exists readings (
    message_id varchar, device varchar, metric varchar, ts double, value double);
create table if not exists rejected (
    message_id varchar primary key, topic varchar, received double, reason varchar,
    payload varchar);
create table if not exists alerts (
    alert_id varchar primary key, grp varchar, device varchar, metric varchar, ts double,
    value double, detector varchar, score double, detail varchar);
create table if not exists rollups (
    device varchar, metric varchar, width bigint, bucket double, n bigint, total double,
    "min" double, "max" double, first_ts double, last_ts double,
    primary key (device, metric, width, bucket));
"""

MERGE_ROLLUPS = """
insert into rollups select * from {src} on conflict (device, metric, width, bucket)
do update set n = rollups.n + excluded.n, total = rollups.total + excluded.total,
    "min" = least(rollups."min", excluded."min"), "max" = greatest(rollups."max", excluded."max"),
    first_ts = least(rollups.first_ts, excluded.first_ts),
    last_ts = greatest(rollups.last_ts, excluded.last_ts)
"""


# The rollup arithmetic of fieldmq.ingest.rollups, in SQL (the contract suite checks that
# every sink agrees): Python-side cells cost ~20 us per reading, this a fraction of that.
_CELLS = """(
select device, metric, w.width, floor(ts / w.width) * w.width as bucket, count(*) as n,
       sum(value) as total, min(value), max(value), min(ts), max(ts)
from {table}, (select unnest([{widths}]) as width) w
group by device, metric, w.width, bucket)"""


def _duckdb() -> Any:
    return require("duckdb", "analytics", "the DuckDB sink")


class DuckDBSink:
    """A DuckDB database file (created if missing). ``read_only=True`` for reports."""

    name = "duckdb"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        widths: Sequence[int] = DEFAULT_WIDTHS,
    ) -> None:
        duckdb = _duckdb()
        self.path = Path(path)
        self.widths = tuple(widths)
        self.read_only = read_only
        widths_sql = ", ".join(str(int(w)) for w in self.widths)
        self._merge_rollups, self._merge_raw_rollups = (
            MERGE_ROLLUPS.format(src=_CELLS.format(widths=widths_sql, table=t))
            for t in ("_batch", "_rr"))
        self._lock = threading.Lock()
        try:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con: Any = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise SinkLocked(
                    f"DuckDB database {str(self.path)!r} is open in another process "
                    f"({text.splitlines()[0]}); DuckDB allows one writer process: stop the "
                    "other one, or use the PostgreSQL or Parquet sink for several ingest "
                    "processes"
                ) from exc
            raise SinkError(f"cannot open DuckDB database {str(self.path)!r}: {exc}") from exc
        except (duckdb.Error, OSError) as exc:
            raise SinkError(f"cannot open DuckDB database {str(self.path)!r}: {exc}") from exc
        if not read_only:
            try:
                self._con.execute(DDL)
            except duckdb.Error as exc:
                self._con.close()
                raise SinkError(f"cannot create tables in {str(self.path)!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"DuckDBSink({str(self.path)!r}, read_only={self.read_only})"

    def _check(self) -> Any:
        con = self._con
        if con is None:
            raise RuntimeError("the sink is closed; open a new one")
        return con

    def known(self, keys: Sequence[str]) -> set[str]:
        con = self._check()
        if not keys:
            return set()
        duckdb = _duckdb()
        arrow = _arrow_keys(keys)
        with self._lock:
            try:
                con.register("_keys", arrow)
                rows = con.execute(
                    "select m.message_id from messages m join _keys k using (message_id)"
                ).fetchall()
                con.unregister("_keys")
            except duckdb.Error as exc:
                raise SinkError(f"DuckDB lookup failed: {exc}") from exc
        return {r[0] for r in rows}

    def _insert(self, con: Any, name: str, arrow: Any, key: str) -> set[str]:
        con.register("_batch", arrow)
        try:
            rows = con.execute(
                f"insert into {name} select * from _batch on conflict do nothing returning {key}"
            ).fetchall()
        finally:
            con.unregister("_batch")
        return {r[0] for r in rows}

    def write(self, batch: Batch) -> WriteResult:
        return self._transaction(lambda con: self._write_rows(con, batch))

    def write_raw(self, raw: RawBatch) -> WriteResult:
        """Like :meth:`write` for the decoded batch, the payloads expanded in SQL (see
        :mod:`fieldmq.ingest.raw`)."""
        return self._transaction(lambda con: self._write_raw(con, raw))

    def _transaction(self, body: Callable[[Any], WriteResult]) -> WriteResult:
        con = self._check()
        if self.read_only:
            raise RuntimeError("this DuckDB sink was opened read_only")
        duckdb = _duckdb()
        with self._lock:
            try:
                con.execute("begin transaction")
                result = body(con)
                con.execute("commit")
            except duckdb.Error as exc:
                try:
                    con.execute("rollback")
                except duckdb.Error:
                    pass
                raise SinkError(f"DuckDB write to {str(self.path)!r} failed: {exc}") from exc
        return result

    def _write_raw(self, con: Any, raw: RawBatch) -> WriteResult:
        clean = inserted = 0
        rest = raw.rest
        if raw.keys:
            fallback = stage(con, raw)
            clean = len(raw.keys) - len(fallback)
            if fallback:
                rest = merge(rest, raw.decode(fallback))
            new = _arrow_keys([r[0] for r in con.execute(MESSAGES).fetchall()])
            inserted = new.num_rows
            if inserted:
                con.register("_new", new)
                try:
                    con.execute(READINGS)
                finally:
                    con.unregister("_new")
                con.execute("insert into readings select * from _rr")
                con.execute(self._merge_raw_rollups)
        result = self._write_rows(con, rest)
        return WriteResult(result.inserted + inserted,
                           result.duplicates + clean - inserted, result.rejected, result.alerts)

    def _write_rows(self, con: Any, batch: Batch) -> WriteResult:
        new: set[str] = set()
        if batch.messages:
            new = self._insert(con, "messages", table("messages", batch.messages),
                               "message_id")
        readings = unique_readings(batch.readings, new)
        if readings:
            con.register("_batch", table("readings", readings))
            try:
                con.execute("insert into readings select * from _batch")
                con.execute(self._merge_rollups)
            finally:
                con.unregister("_batch")
        rejected = (self._insert(con, "rejected", table("rejected", batch.rejected),
                                 "message_id") if batch.rejected else set())
        alerts = (self._insert(con, "alerts", table("alerts", batch.alerts),
                               "alert_id") if batch.alerts else set())
        n = len(batch.messages)
        return WriteResult(len(new), n - len(new), len(rejected), len(alerts))

    def query(self, sql: str) -> QueryResult:
        con = self._check()
        duckdb = _duckdb()
        with self._lock:
            try:
                cur = con.execute(sql)
                columns = tuple(d[0] for d in cur.description or ())
                rows = cur.fetchall() if columns else []
            except duckdb.Error as exc:
                raise SinkError(f"query failed: {exc}") from exc
        return QueryResult(columns, rows)

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()

    def __enter__(self) -> DuckDBSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _arrow_keys(keys: Sequence[str]) -> Any:
    from ._arrow import pa

    p = pa()
    return p.table({"message_id": p.array(list(keys), type=p.string())})

