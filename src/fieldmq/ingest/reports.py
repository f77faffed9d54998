"""Fleet reports over any sink, and output as tables (humans), JSON or CSV (machines).

The SQL runs unchanged on DuckDB and PostgreSQL. Per device: first and last reading,
messages, message rate, gaps (intervals longer than ``gap_factor`` times the device's
median interval between telemetry readings), the longest interval, alerts; per device
and metric: readings, min/avg/max (from the hourly rollups).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .sinks.base import QueryResult, Sink

__all__ = ["fleet_report", "render", "render_fleet"]

_DEVICES = """
with d as (
    select device, ts, ts - lag(ts) over (partition by device order by ts) as dt
    from messages where kind = 'data'),
s as (
    select device, count(*) as messages, min(ts) as first_ts, max(ts) as last_ts,
           percentile_cont(0.5) within group (order by dt) as interval_s,
           max(dt) as max_gap_s
    from d group by device),
g as (
    select d.device, count(*) as gaps from d join s on d.device = s.device
    where d.dt > {factor} * s.interval_s group by d.device),
a as (select device, count(*) as alerts from alerts group by device)
select s.device, s.last_ts as last_seen, s.messages,
       case when s.last_ts > s.first_ts
            then (s.messages - 1) * 60.0 / (s.last_ts - s.first_ts) end as per_minute,
       s.interval_s, coalesce(g.gaps, 0) as gaps, s.max_gap_s, coalesce(a.alerts, 0) as alerts
from s left join g on g.device = s.device left join a on a.device = s.device
order by s.device
"""

_METRICS = """
select device, metric, sum(n) as n, min("min") as min, sum(total) / sum(n) as avg,
       max("max") as max
from rollups where width = {width} group by device, metric order by device, metric
"""


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def fleet_report(sink: Sink, *, gap_factor: float = 3.0, width: int = 3600) -> list[dict[str, Any]]:
    """One dict per device (``metrics`` maps metric -> ``{n, min, avg, max}``)."""
    if not (math.isfinite(gap_factor) and gap_factor > 1):
        raise ValueError(f"gap factor must be a number > 1, got {gap_factor!r}")
    devices = sink.query(_DEVICES.format(factor=float(gap_factor))).dicts()
    metrics = sink.query(_METRICS.format(width=int(width))).dicts()
    out: dict[str, dict[str, Any]] = {}
    for d in devices:
        row = {k: _plain(v) for k, v in d.items()}
        row["metrics"] = {}
        out[row["device"]] = row
    for m in metrics:
        owner = out.get(m["device"])
        if owner is not None:
            owner["metrics"][m["metric"]] = {k: _plain(m[k]) for k in ("n", "min", "avg", "max")}
    return list(out.values())


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _when(ts: Any) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]
    return "\n".join([line, rule, *body])


def render(result: QueryResult, fmt: str = "table") -> str:
    """A query result as ``table``, ``json`` (a list of objects) or ``csv``."""
    if fmt == "json":
        return json.dumps([{k: _plain(v) for k, v in d.items()} for d in result.dicts()],
                          default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(result.columns)
        w.writerows([[_plain(v) for v in r] for r in result.rows])
        return buf.getvalue().rstrip("\n")
    if not result.columns:
        return "(no result)"
    text = _table(result.columns, result.rows)
    return f"{text}\n({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})"


def render_fleet(report: list[dict[str, Any]], fmt: str = "table") -> str:
    """The fleet report as tables (devices, then metrics), JSON or CSV (one row per
    device and metric, device columns repeated)."""
    if fmt == "json":
        return json.dumps(report, default=str)
    flat_cols = ("device", "last_seen", "messages", "per_minute", "interval_s", "gaps",
                 "max_gap_s", "alerts")
    if fmt == "csv":
        cols = (*flat_cols, "metric", "n", "min", "avg", "max")
        rows: list[tuple[Any, ...]] = []
        for d in report:
            base = tuple(d[c] for c in flat_cols)
            for metric, m in sorted(d["metrics"].items()) or [("", {})]:
                rows.append((*base, metric, *(m.get(k) for k in ("n", "min", "avg", "max"))))
        return render(QueryResult(cols, rows), "csv")
    if not report:
        return "no telemetry stored yet"
    dev_rows = [(d["device"], _when(d["last_seen"]), d["messages"], d["per_minute"],
                 d["interval_s"], d["gaps"], d["max_gap_s"], d["alerts"]) for d in report]
    met_rows = [(d["device"], metric, m["n"], m["min"], m["avg"], m["max"])
                for d in report for metric, m in sorted(d["metrics"].items())]
    return "\n\n".join([
        _table(("device", "last seen (UTC)", "messages", "msg/min", "interval s", "gaps",
                "longest gap s", "alerts"), dev_rows),
        _table(("device", "metric", "readings", "min", "avg", "max"), met_rows),
    ])
