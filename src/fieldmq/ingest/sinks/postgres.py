"""PostgreSQL through psycopg 3: ``COPY`` into temporary tables, then
``insert ... on conflict do nothing returning`` into the real ones, in one transaction.

Several ingest processes (a ``$share`` group) may write to one database at once: the
primary keys decide which process stores a redelivered message, ``returning`` tells each
process which messages it inserted, and only their readings are folded into ``rollups``
(upserts in key order, so concurrent writers cannot deadlock). ``readings`` has no key
of its own: a process writes a message's readings only when its insert of the message
won, in the same transaction (a second process blocks on the message's key until the
first commits, then inserts nothing), so ``(message_id, metric)`` stays unique without an
index to maintain. Tables live in one schema (default ``fieldmq``), created if missing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import SinkError, require
from ..raw import META_SQL, RawBatch, merge
from ..records import Batch, unique_readings
from ..rollups import DEFAULT_WIDTHS
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
    value double precision);
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
}

# Per session, emptied at each commit: raw payloads, their expansion, new readings.
_TEMP = """
create temp table if not exists _in_raw (i integer, message_id text, topic text, payload text)
    on commit delete rows;
create temp table if not exists _in_p (i integer, message_id text, topic text, payload text,
    j json) on commit delete rows;
create temp table if not exists _in_e (i integer, key text, type text, atom text)
    on commit delete rows;
create temp table if not exists _in_c (i integer, message_id text, topic text, grp text,
    device text, kind text, name text, ts double precision, received double precision,
    payload text, is_data boolean) on commit delete rows;
create temp table if not exists _in_new (message_id text) on commit delete rows;
create temp table if not exists _in_r (like {s}.readings) on commit delete rows;
create or replace function pg_temp.fieldmq_json(t text) returns json language plpgsql
    immutable as $$ begin return t::json; exception when others then return null; end $$;
"""

# PostgreSQL's json parser is as strict as Python's (no NaN, no trailing commas).
_PARSE = """insert into _in_p select i, message_id, topic, payload, j
from (select *, {json} as j from _in_raw) r where j is not null"""

# A JSON number is cast to float8 only when that cannot fail: without an exponent and
# under 300 characters, or under 40 characters with an exponent of at most 250. Only
# ever evaluated for numbers, inside a CASE (SQL's AND and OR may evaluate either side).
_SAFE = """(case when strpos(lower(atom), 'e') = 0 then length(atom) < 300
      when length(atom) >= 40 then false
      else abs(split_part(lower(atom), 'e', 2)::numeric) <= 250 end)"""

_STAGE = (
    """insert into _in_e select p.i, e.key, json_typeof(e.value), e.value #>> '{}'
from _in_p p, json_each(p.j) e""",
    f"""insert into _in_c
with a as (
    select i, count(*) as n, count(distinct key) as nd,
        bool_and(type in ('null', 'boolean', 'string', 'number')) as flat,
        bool_and(case when type = 'number' then {_SAFE} else true end) as finite,
        bool_and(key in {META_SQL} or type in ('null', 'number')) as numeric,
        max(case when key = 'device' and type = 'string' then atom end) as pdev,
        bool_or(key = 'ts' and type not in ('null', 'number')) as ts_bad_type,
        max(case when key = 'ts' and type = 'number' then
                 (case when {_SAFE} then atom::float8 end) end) as ts_num
    from _in_e group by i
), x as (
    select p.i, p.message_id, p.topic, p.payload,
           split_part(p.topic, '/', 1) as grp, split_part(p.topic, '/', 2) as device,
           split_part(p.topic, '/', 3) as kind,
           coalesce(substring(p.topic from '^[^/]*/[^/]*/[^/]*/(.*)$'), '') as name,
           a.i is null as empty, coalesce(a.n = a.nd and a.flat and a.finite, false) as sane,
           coalesce(a.numeric, true) as numeric, a.pdev, a.ts_bad_type,
           a.ts_num
    from _in_p p left join a using (i)
)
select distinct on (message_id) i, message_id, topic, grp, device, kind, name,
       case when ts_num >= 0 then (case when ts_num > 1e11 then ts_num / 1000.0
                                        else ts_num end)
            else %(received)s end,
       %(received)s, payload, kind = 'data' and device <> ''
from x
where (empty or sane) and (not (kind = 'data' and device <> '') or (
    numeric and not coalesce(pdev <> device, false)
    and not coalesce(ts_bad_type or ts_num < 0, false)))
order by message_id, i""",
)

_INSERT_CLEAN = """with ins as (
    insert into {s}.messages
    select message_id, topic, grp, device, kind, name, ts, received, payload from _in_c
    order by message_id on conflict do nothing returning message_id)
insert into _in_new select message_id from ins"""

_CLEAN_READINGS = f"""insert into _in_r
select c.message_id, c.device, e.key, c.ts, e.atom::float8
from _in_new n join _in_c c using (message_id) join _in_e e on e.i = c.i
where c.is_data and e.key not in {META_SQL} and e.type <> 'null'"""

# rollups of the readings in _in_r, upserted in key order (concurrent writers cannot
# deadlock); the arithmetic of fieldmq.ingest.rollups, in SQL
_MERGE = """
insert into {s}.rollups
select device, metric, w.width, floor(ts / w.width) * w.width as bucket, count(*), sum(value),
       min(value), max(value), min(ts), max(ts)
from _in_r, unnest(array[{widths}]::bigint[]) as w(width)
group by device, metric, w.width, bucket order by device, metric, w.width, bucket
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
                self._con.execute(_TEMP.format(s=schema))
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
        return self._transaction(lambda cur: self._write_rows(cur, batch))

    def write_raw(self, raw: RawBatch) -> WriteResult:
        """Like :meth:`write` for the decoded batch; the payloads are expanded by the
        server (see :mod:`fieldmq.ingest.raw`), in its own process."""
        return self._transaction(lambda cur: self._write_raw(cur, raw))

    def _transaction(self, body: Callable[[Any], WriteResult]) -> WriteResult:
        con = self._check()
        psycopg = _psycopg()
        with self._lock:
            try:
                with con.transaction(), con.cursor() as cur:
                    result = body(cur)
                con.commit()
            except psycopg.Error as exc:
                con.rollback()
                raise SinkError(f"PostgreSQL write failed ({self._where}): {exc}") from exc
        return result

    def _write_raw(self, cur: Any, raw: RawBatch) -> WriteResult:
        psycopg = _psycopg()
        rest, clean, inserted = raw.rest, 0, 0
        if raw.keys:
            with cur.copy("copy _in_raw (i, message_id, topic, payload) from stdin") as copy:
                for row in zip(range(len(raw.keys)), raw.keys, raw.topics, raw.texts,
                               strict=True):
                    copy.write_row(row)
            try:  # one cast for the batch; if a payload is not JSON, check each one
                with cur.connection.transaction():
                    cur.execute(_PARSE.format(json="payload::json"))
            except psycopg.Error:
                cur.execute(_PARSE.format(json="pg_temp.fieldmq_json(payload)"))
            cur.execute(_STAGE[0])
            cur.execute(_STAGE[1], {"received": raw.received})
            fallback = [r[0] for r in cur.execute(
                "select i from _in_raw where i not in (select i from _in_c) and message_id "
                "not in (select message_id from _in_c) order by i").fetchall()]
            clean = len(raw.keys) - len(fallback)
            if fallback:
                rest = merge(rest, raw.decode(fallback))
            cur.execute(_INSERT_CLEAN.format(s=self.schema))
            inserted = cur.rowcount
            if inserted:
                cur.execute(_CLEAN_READINGS)
                self._readings(cur)
        result = self._write_rows(cur, rest)
        return WriteResult(result.inserted + inserted, result.duplicates + clean - inserted,
                           result.rejected, result.alerts)

    def _readings(self, cur: Any) -> None:
        """Store the readings in ``_in_r`` and fold them into the rollups, in SQL."""
        s = self.schema
        cur.execute(f"insert into {s}.readings select * from _in_r")
        widths = ", ".join(str(int(w)) for w in self.widths)
        cur.execute(_MERGE.format(s=s, widths=widths))

    def _write_rows(self, cur: Any, batch: Batch) -> WriteResult:
        new = self._insert(cur, "messages", "message_id", [
            (m.message_id, m.topic, m.group, m.device, m.kind, m.name, m.ts,
             m.received, m.payload) for m in batch.messages])
        readings = unique_readings(batch.readings, new)
        if readings:
            cur.execute("truncate _in_r")
            with cur.copy("copy _in_r (message_id, device, metric, ts, value) from stdin"
                          ) as copy:
                for r in readings:
                    copy.write_row((r.message_id, r.device, r.metric, r.ts, r.value))
            self._readings(cur)
        rejected = self._insert(cur, "rejected", "message_id", [
            (r.message_id, r.topic, r.received, r.reason, r.payload)
            for r in batch.rejected])
        alerts = self._insert(cur, "alerts", "alert_id", [
            (a.alert_id, a.group, a.device, a.metric, a.ts, a.value, a.detector,
             a.score, a.detail) for a in batch.alerts])
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
