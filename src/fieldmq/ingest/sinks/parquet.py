"""Parquet files partitioned by date and device, readable by any engine::

    ROOT/messages/date=2025-01-31/device=sensor-001/<writer>-<seq>.parquet
    ROOT/readings/date=.../device=.../...
    ROOT/alerts/date=.../device=.../...
    ROOT/rejected/date=.../...
    ROOT/_index.sqlite          message keys, files and rollups (SQLite, WAL)

Every file also holds its ``device`` (and ``ts``) columns, so it is complete on its own.
A write takes the index's write lock (``BEGIN IMMEDIATE``: several ingest processes on
one host may share a directory), skips keys already in the index, writes each file under
a temporary name and renames it, then commits the new keys, file names and rollups. A
file on disk that the index does not list was renamed by a write that never committed:
its messages were not acknowledged, so the broker sends them again, and the next open
deletes such files. ``query()`` runs DuckDB over the files (``analytics`` extra).
Many small files cost read time: give this sink large batches (``--batch-delay 5``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import SinkError, require
from ..raw import RawBatch, merge
from ..records import Batch, unique_readings
from ..rollups import DEFAULT_WIDTHS, rollup
from ._arrow import _schema, pa, table
from ._expand import READINGS, stage
from .base import QueryResult, WriteResult

__all__ = ["ParquetSink"]

_INDEX = """
create table if not exists keys (kind text, key text, primary key (kind, key)) without rowid;
create table if not exists files (path text primary key);
create table if not exists rollups (
    device text, metric text, width integer, bucket real, n integer, total real,
    "min" real, "max" real, first_ts real, last_ts real,
    primary key (device, metric, width, bucket));
"""
_MERGE = """
insert into rollups values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
on conflict (device, metric, width, bucket) do update set
    n = n + excluded.n, total = total + excluded.total, "min" = min("min", excluded."min"),
    "max" = max("max", excluded."max"), first_ts = min(first_ts, excluded.first_ts),
    last_ts = max(last_ts, excluded.last_ts)
"""
_DATA_TABLES = ("messages", "readings", "rejected", "alerts")

# what a write prepares: its result, the files it wrote, the keys and rollup cells
_Prepared = tuple[WriteResult, list[str], list[tuple[str, str]], list[tuple[Any, ...]]]

# the day of a timestamp, as _date() gives it
_DAY = """(case when {ts} >= 0 and {ts} < 253402300800
      then strftime(make_timestamp(cast(round({ts} * 1000000) as bigint)), '%Y-%m-%d')
      else 'invalid' end)"""
_NEW_MESSAGES = f"""select message_id, topic, grp, device, kind, name, ts, received, payload,
       {_DAY.format(ts="ts")} as _date
from _c semi join _new using (message_id) order by _date, device"""
_NEW_READINGS = f"""select *, {_DAY.format(ts="ts")} as _date from _rr order by _date, device"""


def _cells(src: str, widths: Sequence[int]) -> str:
    """The rollup cells of the readings in ``src`` (DuckDB SQL)."""
    ws = ", ".join(str(int(w)) for w in widths)
    return f"""(select device, metric, w.width, floor(ts / w.width) * w.width as bucket,
       count(*) as n, sum(value) as total, min(value), max(value), min(ts), max(ts)
from {src}, (select unnest([{ws}]) as width) w group by all)"""


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _keys_table(keys: Sequence[str]) -> Any:
    p = pa()
    return p.table({"message_id": p.array(list(keys), type=p.string())})


def _to_arrow(rel: Any) -> Any:
    """A DuckDB relation's rows as an Arrow table (``to_arrow_table`` from DuckDB 1.4)."""
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _date(ts: float) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "invalid"


class ParquetSink:
    """Parquet files under ``root``; ``writer`` names this process's files."""

    name = "parquet"

    def __init__(self, root: str | os.PathLike[str], *, writer: str = "",
                 widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        self.pq = require("pyarrow.parquet", "analytics", "the Parquet sink")
        pa()
        self.root = Path(root)
        self.widths = tuple(widths)
        self.writer = writer or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._duck: Any = None
        self._fsyncs: ThreadPoolExecutor | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.root / "_index.sqlite", timeout=60.0, isolation_level=None,
                check_same_thread=False)
            _retry_locked(lambda: self._check().execute("pragma journal_mode=wal"))
            self._db.execute("pragma synchronous=full")
            _retry_locked(lambda: self._check().executescript(_INDEX))
            self._clean()
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(f"cannot open Parquet sink at {str(self.root)!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"ParquetSink({str(self.root)!r}, writer={self.writer!r})"

    def _check(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the sink is closed; open a new one")
        return self._db

    def _clean(self) -> None:
        """Delete files that no committed write lists (see the module docstring)."""
        db = self._check()
        db.execute("begin immediate")
        try:
            listed = {r[0] for r in db.execute("select path from files")}
            for name in _DATA_TABLES:
                for f in (self.root / name).rglob("*"):
                    rel = f.relative_to(self.root).as_posix()
                    if f.is_file() and (f.suffix == ".tmp" or rel not in listed):
                        f.unlink()
        finally:
            db.execute("commit")

    def known(self, keys: Sequence[str]) -> set[str]:
        db = self._check()
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i:i + 500])
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in db.execute(
                    f"select key from keys where kind = 'm' and key in ({marks})", chunk))
        return found

    def _write_files(self, name: str, rows: Sequence[Any], ts_of: Any,
                     device_of: Any) -> list[tuple[Path, str]]:
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for r in rows:
            groups[(_date(ts_of(r)), device_of(r))].append(r)
        return [self._write_part(name, table(name, part), day, device)
                for (day, device), part in sorted(groups.items())]

    def _write_part(self, name: str, arrow: Any, day: str,
                    device: str | None) -> tuple[Path, str]:
        """Write one file under its temporary name: ``(temporary path, final name)``."""
        folder = Path(name, f"date={day}")
        if device is not None:
            folder /= f"device={quote(device, safe='') or '_'}"
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        rel = (folder / f"{self.writer}-{next(self._seq):06d}.parquet").as_posix()
        tmp = self.root / (rel + ".tmp")
        self.pq.write_table(arrow, tmp)
        return tmp, rel

    def _publish(self, parts: Sequence[tuple[Path, str]]) -> list[str]:
        """fsync the written files (several at once: the file system commits them
        together, one at a time costs a journal commit each), then rename them."""
        if len(parts) > 1:
            list(self._pool().map(_fsync, [tmp for tmp, _ in parts]))
        elif parts:
            _fsync(parts[0][0])
        for tmp, rel in parts:
            os.replace(tmp, self.root / rel)
        return [rel for _, rel in parts]

    def _pool(self) -> ThreadPoolExecutor:
        if self._fsyncs is None:
            self._fsyncs = ThreadPoolExecutor(8, thread_name_prefix="fieldmq-parquet-fsync")
        return self._fsyncs

    def write(self, batch: Batch) -> WriteResult:
        return self._commit(lambda db: self._prepare(db, batch))

    def write_raw(self, raw: RawBatch) -> WriteResult:
        """Like :meth:`write` for the decoded batch; the payloads are expanded by an
        in-memory DuckDB (see :mod:`fieldmq.ingest.raw`) and written from Arrow."""
        return self._commit(lambda db: self._prepare_raw(db, raw))

    def _commit(self, prepare: Callable[[sqlite3.Connection], _Prepared]) -> WriteResult:
        db = self._check()
        with self._lock:
            try:
                db.execute("begin immediate")
            except sqlite3.Error as exc:
                raise SinkError(f"Parquet index at {str(self.root)!r} is busy: {exc}") from exc
            try:
                result, files, keys, cells = prepare(db)
                db.executemany("insert or ignore into keys values (?, ?)", keys)
                db.executemany("insert into files values (?)", [(f,) for f in files])
                db.executemany(_MERGE, cells)
                db.execute("commit")
            except BaseException as exc:
                db.execute("rollback")
                duckdb = sys.modules.get("duckdb")
                if isinstance(exc, (sqlite3.Error, OSError)) or (
                        duckdb is not None and isinstance(exc, duckdb.Error)):
                    raise SinkError(f"Parquet write to {str(self.root)!r} failed: {exc}"
                                    ) from exc
                raise
        return result

    def _have(self, db: sqlite3.Connection, kind: str, keys: Sequence[str]) -> set[str]:
        have: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            marks = ",".join("?" * len(chunk))
            have.update(r[0] for r in db.execute(
                f"select key from keys where kind = ? and key in ({marks})", [kind, *chunk]))
        return have

    def _prepare(self, db: sqlite3.Connection, batch: Batch) -> _Prepared:
        def fresh(kind: str, rows: Sequence[Any], key: Any) -> list[Any]:
            out: dict[str, Any] = {}
            for r in rows:
                out.setdefault(key(r), r)
            if not out:
                return []
            have = self._have(db, kind, list(out))
            return [r for k, r in out.items() if k not in have]

        messages = fresh("m", batch.messages, lambda r: r.message_id)
        new = {m.message_id for m in messages}
        readings = unique_readings(batch.readings, new)
        rejected = fresh("r", batch.rejected, lambda r: r.message_id)
        alerts = fresh("a", batch.alerts, lambda r: r.alert_id)
        files = self._publish(
            self._write_files("messages", messages, lambda r: r.ts, lambda r: r.device)
            + self._write_files("readings", readings, lambda r: r.ts, lambda r: r.device)
            + self._write_files("rejected", rejected, lambda r: r.received, lambda r: None)
            + self._write_files("alerts", alerts, lambda r: r.ts, lambda r: r.device))
        keys = ([("m", m.message_id) for m in messages]
                + [("r", r.message_id) for r in rejected] + [("a", a.alert_id) for a in alerts])
        cells = [(k.device, k.metric, k.width, k.bucket, c.n, c.total, c.min, c.max,
                  c.first_ts, c.last_ts) for k, c in rollup(readings, self.widths).items()]
        cells.sort()  # merged in key order: concurrent writers lock rows alike
        n = len(batch.messages)
        return (WriteResult(len(messages), n - len(messages), len(rejected), len(alerts)),
                files, keys, cells)

    def _engine(self) -> Any:
        """The in-memory DuckDB that expands raw batches (created on first use)."""
        if self._duck is None:
            duckdb = require("duckdb", "analytics", "ParquetSink.write_raw")
            self._duck = duckdb.connect()
            self._duck.execute("set threads = 1")
        return self._duck

    def _prepare_raw(self, db: sqlite3.Connection, raw: RawBatch) -> _Prepared:
        if not raw.keys:
            return self._prepare(db, raw.rest)
        duck = self._engine()
        fallback = stage(duck, raw)
        clean = [r[0] for r in duck.execute("select message_id from _c").fetchall()]
        have = self._have(db, "m", clean)
        new = [k for k in clean if k not in have]
        duck.register("_new", _keys_table(new))
        try:
            duck.execute(READINGS)
            parts = (self._write_sorted("messages", duck.sql(_NEW_MESSAGES))
                     + self._write_sorted("readings", duck.sql(_NEW_READINGS)))
            cells = duck.execute(f"select * from {_cells('_rr', self.widths)} order by all"
                                 ).fetchall()
        finally:
            duck.unregister("_new")
        files = self._publish(parts)
        rest = raw.rest
        if fallback:
            rest = merge(rest, raw.decode(fallback))
        if clean:  # a key stored from the engine's rows is not stored again from Python's
            taken = set(clean)
            rest = Batch(tuple(m for m in rest.messages if m.message_id not in taken),
                         rest.readings, rest.rejected, rest.alerts)
        result, files2, keys, cells2 = self._prepare(db, rest)
        dup = len(raw.keys) - len(fallback) - len(new)
        return (WriteResult(result.inserted + len(new), result.duplicates + dup,
                            result.rejected, result.alerts),
                files + files2, [("m", k) for k in new] + keys, sorted(cells + cells2))

    def _write_sorted(self, name: str, rel: Any) -> list[tuple[Path, str]]:
        """Files of a query's rows ordered by ``_date`` and ``device``, one per pair."""
        arrow = _to_arrow(rel)
        days, devices = arrow.column("_date").to_pylist(), arrow.column("device").to_pylist()
        arrow = arrow.drop_columns(["_date"]).cast(_schema(name))
        parts, start = [], 0
        for i in range(1, len(days) + 1):
            if i == len(days) or days[i] != days[start] or devices[i] != devices[start]:
                parts.append(self._write_part(name, arrow.slice(start, i - start),
                                              days[start], devices[start]))
                start = i
        return parts

    def query(self, sql: str) -> QueryResult:
        db = self._check()
        duckdb = require("duckdb", "analytics", "ParquetSink.query")
        with self._lock:
            files = [r[0] for r in db.execute("select path from files order by path")]
            cells = db.execute("select * from rollups").fetchall()
        con = duckdb.connect()
        try:
            for name in _DATA_TABLES:
                mine = [str(self.root / f) for f in files if f.startswith(name + "/")]
                if mine:
                    paths = ", ".join("'" + f.replace("'", "''") + "'" for f in mine)
                    con.execute(f"create view {name} as select * from read_parquet([{paths}], "
                                "hive_partitioning = false)")
                else:
                    con.register(name, table(name, []))
            p = pa()
            from ._arrow import SCHEMAS

            cols: list[Sequence[Any]] = (list(zip(*cells, strict=True)) if cells
                                         else [[] for _ in SCHEMAS["rollups"]])
            con.register("rollups", p.table({c: list(v) for (c, _), v in
                                             zip(SCHEMAS["rollups"], cols, strict=True)}))
            cur = con.execute(sql)
            columns = tuple(d[0] for d in cur.description or ())
            return QueryResult(columns, cur.fetchall() if columns else [])
        except duckdb.Error as exc:
            raise SinkError(f"query failed: {exc}") from exc
        finally:
            con.close()

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        duck, self._duck = self._duck, None
        if duck is not None:
            duck.close()
        pool, self._fsyncs = self._fsyncs, None
        if pool is not None:
            pool.shutdown()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _retry_locked(action: Callable[[], object], seconds: float = 30.0) -> None:
    """Run ``action``, retrying while another process holds the index (switching to WAL
    and creating tables can fail with "database is locked" without waiting, when several
    ingest processes open the same directory at once)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
