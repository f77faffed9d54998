"""Edge rollups: a gateway summarises its devices' telemetry locally (DuckDB) and
publishes the summaries upstream instead of the raw stream (seed 08: SQLite buffers on the
device, DuckDB crunches on the gateway, summaries go to the cloud).

``EdgeRollup`` keeps the same tables as the ingest sinks (so the same rollup arithmetic
and idempotency) and, for each bucket that has closed (``bucket + width + grace <= now``),
builds one summary per device and width::

    topic   <group>/<device>/data/rollup/<width>s          (QoS 1)
    payload {"device": "sensor-001", "ts": <bucket start>, "width": 60,
             "cpu_percent_n": 6, "cpu_percent_avg": 8.1, "cpu_percent_min": 7.2,
             "cpu_percent_max": 9.0, ...}

The payload is flat, so an upstream ``fieldmq ingest`` stores it as ordinary readings
(``cpu_percent_avg`` ...). A bucket is published again, with the new totals, if late
readings changed it after it was published. The bridge forwards these topics.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .records import Batch, Rejected, decode_message
from .rollups import DEFAULT_WIDTHS
from .sinks.base import WriteResult
from .sinks.duckdb import DuckDBSink

__all__ = ["EdgeRollup", "rollup_topic"]

_PUBLISHED = """
create table if not exists edge_published (
    device varchar, width bigint, bucket double, n bigint, primary key (device, width, bucket))
"""
_DUE = """
select r.device, r.width, r.bucket, r.metric, r.n, r.total, r."min", r."max"
from rollups r
join (select device, width, bucket, sum(n) as n from rollups
      where bucket + width + {grace} <= {now} group by device, width, bucket) b
  on r.device = b.device and r.width = b.width and r.bucket = b.bucket
left join edge_published p
  on p.device = b.device and p.width = b.width and p.bucket = b.bucket
where p.n is null or p.n <> b.n
order by r.device, r.width, r.bucket, r.metric
"""


def rollup_topic(group: str, device: str, width: int) -> str:
    return f"{group}/{device}/data/rollup/{width}s"


class _Publisher(Protocol):
    def publish_many(self, items: Sequence[Any], *, qos: int = ...) -> Any: ...


class EdgeRollup:
    """Rollups on a gateway. ``path`` is a DuckDB file (``":memory:"`` keeps nothing)."""

    def __init__(self, *, path: str | os.PathLike[str] = ":memory:", group: str = "fleet",
                 widths: Sequence[int] = DEFAULT_WIDTHS, grace: float = 5.0) -> None:
        self.group = group
        self.grace = float(grace)
        self.sink = DuckDBSink(path, widths=widths)
        self.sink.query(_PUBLISHED)

    def __repr__(self) -> str:
        return f"EdgeRollup(path={str(self.sink.path)!r}, group={self.group!r})"

    def add(self, topic: str, payload: bytes, message_id: str | None = None,
            received: float | None = None) -> WriteResult:
        """Fold one telemetry message in (idempotent by message id)."""
        return self.add_many([(topic, payload, message_id)], received)

    def add_many(self, messages: Sequence[tuple[str, bytes, str | None]],
                 received: float | None = None) -> WriteResult:
        now = time.time() if received is None else received
        rows = [decode_message(t, p, mid, now) for t, p, mid in messages]
        ok = [d for d in rows if not isinstance(d, Rejected)]
        return self.sink.write(Batch(
            messages=tuple(d.message for d in ok),
            readings=tuple(r for d in ok for r in d.readings),
            rejected=tuple(d for d in rows if isinstance(d, Rejected))))

    def due(self, now: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(topic, payload)`` of every closed bucket not yet published (or changed)."""
        now = time.time() if now is None else now
        rows = self.sink.query(_DUE.format(grace=float(self.grace), now=float(now))).rows
        out: dict[tuple[str, int, float], dict[str, Any]] = {}
        for device, width, bucket, metric, n, total, lo, hi in rows:
            p = out.setdefault((device, int(width), float(bucket)),
                               {"device": device, "ts": float(bucket), "width": int(width)})
            p[f"{metric}_n"] = int(n)
            p[f"{metric}_avg"] = total / n
            p[f"{metric}_min"] = lo
            p[f"{metric}_max"] = hi
        return [(rollup_topic(self.group, d, w), p) for (d, w, _b), p in out.items()]

    def mark_published(self, summaries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for _topic, p in summaries:
            n = sum(v for k, v in p.items() if k.endswith("_n"))
            self.sink.query(
                "insert into edge_published values "
                f"({_quote(p['device'])}, {int(p['width'])}, {float(p['ts'])!r}, {int(n)}) "
                "on conflict do update set n = excluded.n")

    def publish(self, client: _Publisher, now: float | None = None) -> int:
        """Publish the due summaries with ``client.publish_many`` (QoS 1) and remember
        them; returns how many. Durable once ``publish_many`` returned."""
        summaries = self.due(now)
        if summaries:
            client.publish_many([(t, json.dumps(p).encode()) for t, p in summaries], qos=1)
            self.mark_published(summaries)
        return len(summaries)

    def close(self) -> None:
        self.sink.close()

    def __enter__(self) -> EdgeRollup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
