"""An in-memory sink for tests: the same contract as the others, nothing on disk.
``query()`` runs DuckDB over Arrow copies of the tables (needs the ``analytics`` extra)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ..raw import RawBatch, merge
from ..records import Alert, Batch, MessageRow, Reading, Rejected, unique_readings
from ..rollups import DEFAULT_WIDTHS, RollupCell, RollupKey, merge_into, rollup
from .base import QueryResult, WriteResult

__all__ = ["MemorySink"]


class MemorySink:
    """Rows kept in dicts, keyed like the real tables."""

    name = "memory"

    def __init__(self, *, widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        self.widths = tuple(widths)
        self.messages: dict[str, MessageRow] = {}
        self.readings: list[Reading] = []
        self.rejected: dict[str, Rejected] = {}
        self.alerts: dict[str, Alert] = {}
        self.rollups: dict[RollupKey, RollupCell] = {}
        self.writes = 0
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemorySink(messages={len(self.messages)}, alerts={len(self.alerts)})"

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("the sink is closed; open a new one")

    def known(self, keys: Sequence[str]) -> set[str]:
        self._check()
        with self._lock:
            return {k for k in keys if k in self.messages}

    def write(self, batch: Batch) -> WriteResult:
        self._check()
        with self._lock:
            new: dict[str, MessageRow] = {}
            for m in batch.messages:
                if m.message_id not in self.messages and m.message_id not in new:
                    new[m.message_id] = m
            readings = unique_readings(batch.readings, new)
            rejected = {r.message_id: r for r in batch.rejected
                        if r.message_id not in self.rejected}
            alerts = {a.alert_id: a for a in batch.alerts if a.alert_id not in self.alerts}
            self.messages.update(new)
            self.readings.extend(readings)
            self.rejected.update(rejected)
            self.alerts.update(alerts)
            merge_into(self.rollups, rollup(readings, self.widths))
            self.writes += 1
            return WriteResult(len(new), len(batch.messages) - len(new), len(rejected),
                               len(alerts))

    def write_raw(self, raw: RawBatch) -> WriteResult:
        """:meth:`write` of the batch decoded in Python (no engine here)."""
        return self.write(merge(raw.rest, raw.decode(range(len(raw.keys)))))

    def query(self, sql: str) -> QueryResult:
        self._check()
        from ..errors import SinkError, require
        from ._arrow import rollup_table, table

        duckdb = require("duckdb", "analytics", "MemorySink.query")
        with self._lock:
            tables: dict[str, Any] = {
                "messages": table("messages", list(self.messages.values())),
                "readings": table("readings", self.readings),
                "rejected": table("rejected", list(self.rejected.values())),
                "alerts": table("alerts", list(self.alerts.values())),
                "rollups": rollup_table(self.rollups),
            }
        con = duckdb.connect()
        try:
            for name, arrow in tables.items():
                con.register(name, arrow)
            cur = con.execute(sql)
            columns = tuple(d[0] for d in cur.description or ())
            return QueryResult(columns, cur.fetchall() if columns else [])
        except duckdb.Error as exc:
            raise SinkError(f"query failed: {exc}") from exc
        finally:
            con.close()

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> MemorySink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
