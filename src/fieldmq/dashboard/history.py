"""Fill the dashboard's model from an ingest database (DuckDB file, PostgreSQL...), so
``fieldmq dashboard --db fleet.duckdb`` shows the recorded fleet before live data arrives.

Uses the ingest sink's tables (``messages``, ``readings``, ``alerts``; see
``docs/ingest.md``) through :func:`fieldmq.ingest.open_sink`, read-only for DuckDB.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from ..ingest.sinks.base import Sink
from .model import DeviceState, FleetModel

__all__ = ["load_history"]


def load_history(model: FleetModel, sink: Sink, *, points: int | None = None) -> int:
    """Load the last ``points`` readings per device and metric, the devices' last status
    and the latest alerts into ``model``; returns the number of readings loaded."""
    n = points or model.points
    loaded = 0
    devices = sink.query(
        "select grp, device, max(received) as last_seen, count(*) as messages "
        "from messages group by grp, device"
    ).dicts()
    for row in devices:
        state = model.devices.get(row["device"])
        if state is None:
            state = model.devices[row["device"]] = DeviceState(device=row["device"],
                                                               group=row["grp"] or "")
        state.last_seen = _f(row["last_seen"])
        state.messages = int(row["messages"] or 0)
    status = sink.query(
        "select device, payload from (select device, payload, row_number() over "
        "(partition by device order by received desc) as rn from messages "
        "where kind = 'status' and name = 'health') as s where rn = 1"
    ).dicts()
    for row in status:
        state = model.devices.get(row["device"])
        data = _json(row["payload"])
        if state is None or not isinstance(data, dict):
            continue
        depth = data.get("queued", data.get("queue_depth"))
        if isinstance(depth, (int, float)):
            state.queue_depth = int(depth)
        if isinstance(data.get("reconnects"), (int, float)):
            state.reconnects = int(data["reconnects"])
        if isinstance(data.get("connected"), bool):
            state.online = data["connected"]
    readings = sink.query(
        "select device, metric, ts, value from (select device, metric, ts, value, "
        "row_number() over (partition by device, metric order by ts desc) as rn "
        f"from readings) as r where rn <= {int(n)} order by device, metric, ts"
    ).rows
    for device, metric, ts, value in readings:
        state = model.devices.get(device)
        if state is None:
            state = model.devices[device] = DeviceState(device=device, group="")
        series = state.series.get(metric)
        if series is None:
            series = state.series[metric] = deque(maxlen=model.points)
        series.append((float(ts), float(value)))
        loaded += 1
    alerts = sink.query(
        "select device, metric, ts, value, detector, score from alerts order by ts desc limit "
        f"{int(model.anomalies.maxlen or 100)}"
    ).dicts()
    for a in reversed(alerts):
        model.anomalies.appendleft({**a, "at": a["ts"]})
    return loaded


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
