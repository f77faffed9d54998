"""One contract suite, run against every sink (memory, DuckDB, Parquet, PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from fieldmq.ingest import fleet_report
from fieldmq.ingest.records import Alert, Batch, Rejected, decode_message
from fieldmq.ingest.sinks.base import Sink

T0 = 1_700_000_000.0


def telemetry(n: int, device: str = "dev-1", start: int = 0, step: float = 10.0) -> Batch:
    decoded = []
    for i in range(start, start + n):
        payload = json.dumps({"device": device, "ts": T0 + i * step, "cpu": float(i),
                              "temp": 20.0 + (i % 3)}).encode()
        d = decode_message(f"fleet/{device}/data/telemetry", payload, f"{device}-{i}", T0)
        assert not isinstance(d, Rejected)
        decoded.append(d)
    return Batch(messages=tuple(d.message for d in decoded),
                 readings=tuple(r for d in decoded for r in d.readings))


def count(sink: Sink, table: str) -> int:
    return int(sink.query(f"select count(*) from {table}").rows[0][0])


def test_write_stores_messages_and_readings(sink_spec: str, open_spec: Callable[..., Sink]) -> None:
    """A committed batch is readable: one message row and one reading per metric."""
    sink = open_spec(sink_spec)
    result = sink.write(telemetry(5))
    assert (result.inserted, result.duplicates) == (5, 0)
    assert count(sink, "messages") == 5
    assert count(sink, "readings") == 10
    rows = sink.query("select device, metric, value from readings where metric = 'cpu' "
                      "order by value").rows
    assert [tuple(r) for r in rows] == [("dev-1", "cpu", float(i)) for i in range(5)]


def test_writing_a_batch_twice_changes_nothing(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """Replaying a batch inserts nothing and leaves the rollups as they were."""
    sink = open_spec(sink_spec)
    batch = telemetry(20)
    sink.write(batch)
    before = sink.query("select * from rollups order by device, metric, width, bucket").rows
    again = sink.write(batch)
    assert (again.inserted, again.duplicates) == (0, 20)
    assert count(sink, "messages") == 20
    assert count(sink, "readings") == 40
    after = sink.query("select * from rollups order by device, metric, width, bucket").rows
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


def test_partial_overlap_inserts_only_new_messages(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """A batch mixing stored and new messages inserts the new ones only."""
    sink = open_spec(sink_spec)
    sink.write(telemetry(10))
    result = sink.write(telemetry(10, start=5))
    assert (result.inserted, result.duplicates) == (5, 5)
    assert count(sink, "messages") == 15
    assert sink.known(["dev-1-0", "dev-1-14", "dev-1-99"]) == {"dev-1-0", "dev-1-14"}


def test_duplicate_inside_one_batch_is_stored_once(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """The same message twice in one batch is one row and counts once in the rollups."""
    sink = open_spec(sink_spec)
    one = telemetry(1)
    sink.write(Batch(one.messages * 2, one.readings * 2))
    assert count(sink, "messages") == 1
    assert count(sink, "readings") == 2
    n = sink.query("select n from rollups where metric = 'cpu' and width = 60").rows
    assert int(n[0][0]) == 1


def test_rollups_merge_across_batches(sink_spec: str, open_spec: Callable[..., Sink]) -> None:
    """Minute and hour rollups hold count, sum, min and max over all batches."""
    sink = open_spec(sink_spec)
    sink.write(telemetry(3))           # ts T0, T0+10, T0+20: one minute bucket
    sink.write(telemetry(3, start=3))  # T0+30..T0+50
    rows = sink.query("select width, bucket, n, total, \"min\", \"max\" from rollups "
                      "where metric = 'cpu' order by width, bucket").dicts()
    minute = [r for r in rows if r["width"] == 60]
    assert sum(int(r["n"]) for r in minute) == 6
    assert sum(float(r["total"]) for r in minute) == pytest.approx(15.0)
    assert min(float(r["min"]) for r in minute) == 0.0
    assert max(float(r["max"]) for r in minute) == 5.0
    hour = [r for r in rows if r["width"] == 3600]
    assert len(hour) == 1 and int(hour[0]["n"]) == 6


def test_rejected_and_alerts_are_idempotent(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """Rejected rows and alerts are keyed: writing them again adds nothing."""
    sink = open_spec(sink_spec)
    bad = decode_message("fleet/d/data/telemetry", b"not json {", "bad-1", T0)
    assert isinstance(bad, Rejected)
    alert = Alert("d/cpu/mad/1.000", "fleet", "d", "cpu", T0, 99.0, "mad", 12.5, "z=12.5")
    first = sink.write(Batch(rejected=(bad,), alerts=(alert,)))
    second = sink.write(Batch(rejected=(bad,), alerts=(alert,)))
    assert (first.rejected, first.alerts) == (1, 1)
    assert (second.rejected, second.alerts) == (0, 0)
    reason = sink.query("select reason from rejected").rows[0][0]
    assert "data payload must be a JSON object or a number" in reason
    assert count(sink, "alerts") == 1


def test_data_survives_reopening(sink_spec: str, open_spec: Callable[..., Sink]) -> None:
    """A durable sink keeps its rows and keys across close and reopen."""
    if sink_spec == "memory:":
        pytest.skip("the memory sink keeps nothing by design")
    sink = open_spec(sink_spec)
    sink.write(telemetry(4))
    sink.close()
    again = open_spec(sink_spec)
    assert again.known(["dev-1-0", "dev-1-3"]) == {"dev-1-0", "dev-1-3"}
    assert again.write(telemetry(4)).inserted == 0
    assert count(again, "messages") == 4


def test_fleet_report_runs_on_every_sink(sink_spec: str, open_spec: Callable[..., Sink]) -> None:
    """The portable report SQL gives last seen, rate, gaps and metric ranges."""
    sink = open_spec(sink_spec)
    sink.write(telemetry(10))
    sink.write(telemetry(5, start=20))  # a 110 s hole after reading 9
    sink.write(telemetry(6, device="dev-2"))
    report = {d["device"]: d for d in fleet_report(sink)}
    d1 = report["dev-1"]
    assert d1["messages"] == 15
    assert d1["last_seen"] == pytest.approx(T0 + 240)
    assert d1["gaps"] == 1
    assert d1["max_gap_s"] == pytest.approx(110.0)
    assert d1["metrics"]["cpu"]["min"] == 0.0 and d1["metrics"]["cpu"]["max"] == 24.0
    assert report["dev-2"]["gaps"] == 0 and report["dev-2"]["alerts"] == 0


def test_closed_sink_refuses_use(sink_spec: str, open_spec: Callable[..., Sink]) -> None:
    """Using a closed sink raises RuntimeError; closing twice is harmless."""
    sink = open_spec(sink_spec)
    sink.close()
    sink.close()
    with pytest.raises(RuntimeError, match="closed"):
        sink.write(telemetry(1))
