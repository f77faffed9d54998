"""Arrow tables of a batch's rows (for DuckDB and Parquet). Imports pyarrow lazily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import require
from ..records import Alert, MessageRow, Reading, Rejected
from ..rollups import RollupCell, RollupKey

__all__ = ["SCHEMAS", "pa", "rollup_table", "table"]


def pa() -> Any:
    return require("pyarrow", "analytics", "Arrow tables (DuckDB and Parquet sinks)")


# column name -> arrow type name, in table order
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "messages": (("message_id", "string"), ("topic", "string"), ("grp", "string"),
                 ("device", "string"), ("kind", "string"), ("name", "string"),
                 ("ts", "float64"), ("received", "float64"), ("payload", "string")),
    "readings": (("message_id", "string"), ("device", "string"), ("metric", "string"),
                 ("ts", "float64"), ("value", "float64")),
    "rejected": (("message_id", "string"), ("topic", "string"), ("received", "float64"),
                 ("reason", "string"), ("payload", "string")),
    "alerts": (("alert_id", "string"), ("grp", "string"), ("device", "string"),
               ("metric", "string"), ("ts", "float64"), ("value", "float64"),
               ("detector", "string"), ("score", "float64"), ("detail", "string")),
    "rollups": (("device", "string"), ("metric", "string"), ("width", "int64"),
                ("bucket", "float64"), ("n", "int64"), ("total", "float64"),
                ("min", "float64"), ("max", "float64"), ("first_ts", "float64"),
                ("last_ts", "float64")),
}


def _schema(name: str) -> Any:
    p = pa()
    return p.schema([(col, getattr(p, typ)()) for col, typ in SCHEMAS[name]])


def _columns(name: str, rows: Sequence[Any]) -> list[list[Any]]:
    if name == "messages":
        return [[r.message_id for r in rows], [r.topic for r in rows],
                [r.group for r in rows], [r.device for r in rows], [r.kind for r in rows],
                [r.name for r in rows], [r.ts for r in rows], [r.received for r in rows],
                [r.payload for r in rows]]
    if name == "readings":
        return [[r.message_id for r in rows], [r.device for r in rows],
                [r.metric for r in rows], [r.ts for r in rows], [r.value for r in rows]]
    if name == "rejected":
        return [[r.message_id for r in rows], [r.topic for r in rows],
                [r.received for r in rows], [r.reason for r in rows],
                [r.payload for r in rows]]
    if name == "alerts":
        return [[r.alert_id for r in rows], [r.group for r in rows], [r.device for r in rows],
                [r.metric for r in rows], [r.ts for r in rows], [r.value for r in rows],
                [r.detector for r in rows], [r.score for r in rows],
                [r.detail for r in rows]]
    raise ValueError(f"no table {name!r}")


def table(name: str, rows: Sequence[MessageRow | Reading | Rejected | Alert]) -> Any:
    """The Arrow table ``name`` holding ``rows`` (built column by column)."""
    return pa().Table.from_arrays(
        [pa().array(col, type=f.type) for col, f in zip(_columns(name, rows),
                                                          _schema(name), strict=True)],
        schema=_schema(name),
    )


def rollup_table(cells: Mapping[RollupKey, RollupCell]) -> Any:
    items = sorted(cells.items())
    cols: list[list[Any]] = [
        [k.device for k, _ in items], [k.metric for k, _ in items],
        [k.width for k, _ in items], [k.bucket for k, _ in items],
        [c.n for _, c in items], [c.total for _, c in items], [c.min for _, c in items],
        [c.max for _, c in items], [c.first_ts for _, c in items],
        [c.last_ts for _, c in items],
    ]
    schema = _schema("rollups")
    return pa().Table.from_arrays(
        [pa().array(c, type=f.type) for c, f in zip(cols, schema, strict=True)], schema=schema)
