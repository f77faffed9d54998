"""PostgreSQL through psycopg 3: ``COPY`` into temporary tables, then
``insert ... on conflict do nothing returning`` into the real ones, in one transaction.

Several ingest processes (a ``$share`` group) may write to one database at once: the
primary keys decide which process stores a redelivered message, ``returning`` tells each
process which messages it inserted, and only their readings are folded into ``rollups``
(upserts in key order, so concurrent writers cannot deadlock). Tables live in one schema
(default ``fieldmq``), created if missing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import SinkError, require
from ..records import Batch, unique_readings
from ..rollups import DEFAULT_WIDTHS, rollup
from .base import QueryResult, WriteResult

__all__ = ["PostgresSink"]

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DDL = """
create schema if not exists {s};
create table if not exists {s}.messages (
    message_id text primary key, topic text, grp text, device text, kind text, name text,
    ts double precision, received double precision, payload text);
create table if not exists {s}.readings (
    message_id text, device text, metric text, ts double precision,
    value double precision, primary key (message_id, metric));
create table if not exists {s}.rejected (
    message_id text primary key, topic text, received double precision, reason text,
    payload text);
create table if not exists {s}.alerts (
    alert_id text primary key, grp text, device text, metric text, ts double precision,
    value double precision, detector text, score double precision, detail text);
create table if not exists {s}.rollups (
    device text, metric text, width bigint, bucket double precision, n bigint,
    total double precision, "min" double precision, "max" double precision,
    first_ts double precision, last_ts double precision,
    primary key (device, metric, width, bucket));
create index if not exists readings_device_ts on {s}.readings (device, ts);
create index if not exists messages_device_ts on {s}.messages (device, ts);
"""

_COLUMNS = {
    "messages": "message_id, topic, grp, device, kind, name, ts, received, payload",
    "rejected": "message_id, topic, received, reason, payload",
    "alerts": "alert_id, grp, device, metric, ts, value, detector, score, detail",
    "rollups": 'device, metric, width, bucket, n, total, "min", "max", first_ts, last_ts',
}

_MERGE = """
insert into {s}.rollups select * from _in_rollups order by device, metric, width, bucket
on conflict (device, metric, width, bucket) do update set
    n = rollups.n + excluded.n, total = rollups.total + excluded.total,
    "min" = least(rollups."min", excluded."min"), "max" = greatest(rollups."max", excluded."max"),
    first_ts = least(rollups.first_ts, excluded.first_ts),
    last_ts = greatest(rollups.last_ts, excluded.last_ts)
"""


def _psycopg() -> Any:
    return require("psycopg", "postgres", "the PostgreSQL sink")


class PostgresSink:
    """Tables in ``schema`` of the database at ``conninfo`` (a libpq URL or DSN)."""

    name = "postgres"

    def __init__(self, conninfo: str, *, schema: str = "fieldmq",
                 widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        psycopg = _psycopg()
        if not _SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"schema must be a lower-case SQL identifier, got {schema!r}")
        self.schema = schema
        self.widths = tuple(widths)
        self._lock = threading.Lock()
        self._where = urlsplit(conninfo).hostname or conninfo.split("?")[0]
        try:
            self._con: Any = psycopg.connect(conninfo, autocommit=False)
            with self._con.transaction():
                # Several ingest processes may start at once: serialise the DDL, or two
                # "create ... if not exists" race and one fails on a unique index.
                self._con.execute("select pg_advisory_xact_lock(hashtext(%s))",
                                  (f"fieldmq-ddl-{schema}",))
                self._con.execute(_DDL.format(s=schema))
                for name, cols in _COLUMNS.items():
                    self._con.execute(
                        f"create temp table if not exists _in_{name} as "
                        f"select {cols} from {schema}.{name} with no data")
            self._con.commit()
        except psycopg.Error as exc:
            raise SinkError(f"cannot open PostgreSQL sink ({self._where}): {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> PostgresSink:
        """``postgresql://user@host:port/db?schema=NAME`` (other query keys go to libpq)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "fieldmq")
        return cls(urlunsplit(parts._replace(query=urlencode(query))), schema=schema)

    def __repr__(self) -> str:
        return f"PostgresSink({self._where!r}, schema={self.schema!r})"

    def _check(self) -> Any:
        if self._con is None:
            raise RuntimeError("the sink is closed; open a new one")
        return self._con

    def known(self, keys: Sequence[str]) -> set[str]:
        con = self._check()
        if not keys:
            return set()
        psycopg = _psycopg()
        with self._lock:
            try:
                rows = con.execute(
                    f"select message_id from {self.schema}.messages "
                    "where message_id = any(%s)", (list(keys),)).fetchall()
                con.commit()
            except psycopg.Error as exc:
                con.rollback()
                raise SinkError(f"PostgreSQL lookup failed: {exc}") from exc
        return {r[0] for r in rows}

    def _copy_in(self, cur: Any, name: str, rows: Sequence[tuple[Any, ...]]) -> None:
        cur.execute(f"truncate _in_{name}")
        with cur.copy(f"copy _in_{name} ({_COLUMNS[name]}) from stdin") as copy:
            for row in rows:
                copy.write_row(row)

    def _insert(self, cur: Any, name: str, key: str, rows: Sequence[tuple[Any, ...]]) -> set[str]:
        if not rows:
            return set()
        self._copy_in(cur, name, rows)
        cur.execute(f"insert into {self.schema}.{name} select distinct on ({key}) * "
                    f"from _in_{name} on conflict do nothing returning {key}")
        return {r[0] for r in cur.fetchall()}

    def write(self, batch: Batch) -> WriteResult:
        con = self._check()
        psycopg = _psycopg()
        s = self.schema
        with self._lock:
            try:
                with con.transaction(), con.cursor() as cur:
                    new = self._insert(cur, "messages", "message_id", [
                        (m.message_id, m.topic, m.group, m.device, m.kind, m.name, m.ts,
                         m.received, m.payload) for m in batch.messages])
                    readings = unique_readings(batch.readings, new)
                    if readings:
                        with cur.copy(f"copy {s}.readings (message_id, device, metric, ts, "
                                      "value) from stdin") as copy:
                            for r in readings:
                                copy.write_row((r.message_id, r.device, r.metric, r.ts,
                                                r.value))
                        cells = rollup(readings, self.widths)
                        self._copy_in(cur, "rollups", [
                            (k.device, k.metric, k.width, k.bucket, c.n, c.total, c.min,
                             c.max, c.first_ts, c.last_ts) for k, c in sorted(cells.items())])
                        cur.execute(_MERGE.format(s=s))
                    rejected = self._insert(cur, "rejected", "message_id", [
                        (r.message_id, r.topic, r.received, r.reason, r.payload)
                        for r in batch.rejected])
                    alerts = self._insert(cur, "alerts", "alert_id", [
                        (a.alert_id, a.group, a.device, a.metric, a.ts, a.value, a.detector,
                         a.score, a.detail) for a in batch.alerts])
                con.commit()
            except psycopg.Error as exc:
                con.rollback()
                raise SinkError(f"PostgreSQL write failed ({self._where}): {exc}") from exc
        n = len(batch.messages)
        return WriteResult(len(new), n - len(new), len(rejected), len(alerts))

    def query(self, sql: str) -> QueryResult:
        con = self._check()
        psycopg = _psycopg()
        with self._lock:
            try:
                con.execute(f"set local search_path to {self.schema}, public")
                cur = con.execute(sql)
                columns = tuple(d.name for d in cur.description or ())
                rows = [tuple(r) for r in cur.fetchall()] if columns else []
                con.commit()
            except psycopg.Error as exc:
                con.rollback()
                raise SinkError(f"query failed: {exc}") from exc
        return QueryResult(columns, rows)

    def drop(self) -> None:
        """Drop the schema and everything in it (for tests and clean-ups)."""
        con = self._check()
        with self._lock:
            con.execute(f"drop schema if exists {self.schema} cascade")
            con.commit()

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()

    def __enter__(self) -> PostgresSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
