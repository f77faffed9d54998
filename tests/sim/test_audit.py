"""The audit's arithmetic, and the accept/received log files it reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fieldmq.sim.acceptlog import AcceptLog, read_accepted, read_labels
from fieldmq.sim.anomalies import Label
from fieldmq.sim.audit import AcceptedRow, ReceivedRow, audit_logs, percentile
from fieldmq.sim.receiver import ReceivedLog, read_received


def _accepted(uid: str, device: str, seqs: range, topic: str = "t") -> list[AcceptedRow]:
    return [AcceptedRow(f"{uid}-{s}", device, s, topic, 100.0 + s) for s in seqs]


def _arrivals(uid: str, seqs: list[int], topic: str = "t", delay: float = 0.5
              ) -> list[ReceivedRow]:
    return [ReceivedRow(f"{uid}-{s}", topic, 100.0 + s + delay) for s in seqs]


def test_everything_arrived() -> None:
    """All sent and received once: nothing lost, latencies measured."""
    report = audit_logs(_accepted("u1", "d1", range(1, 101)),
                        _arrivals("u1", list(range(1, 101))))
    assert report.ok and report.total.sent == report.total.received == 100
    assert report.total.lost == report.total.duplicated == report.total.out_of_order == 0
    assert report.total.p50 == pytest.approx(0.5)


def test_missing_duplicated_and_out_of_order() -> None:
    """Missing ids are lost (and listed), repeats are duplicates, reordering is counted."""
    arrivals = _arrivals("u1", [1, 2, 4, 3, 5, 5, 6, 8])
    report = audit_logs(_accepted("u1", "d1", range(1, 11)), arrivals)
    d = report.devices[0]
    assert (d.sent, d.received, d.lost, d.duplicated, d.out_of_order) == (10, 7, 3, 1, 1)
    assert d.lost_ids == ["u1-7", "u1-9", "u1-10"]
    assert not report.ok and "lost: u1-7, u1-9, u1-10" in report.table()


def test_order_is_per_topic() -> None:
    """A higher-priority topic overtaking another is not 'out of order'."""
    acc = [*_accepted("u1", "d1", range(1, 4), "a"), *_accepted("u1", "d1", range(4, 6), "b")]
    arr = [*_arrivals("u1", [4, 5], "b"), *_arrivals("u1", [1, 2, 3], "a")]
    assert audit_logs(acc, arr).total.out_of_order == 0


def test_gaps_and_tail_inferred_from_sequence_numbers() -> None:
    """A seq missing from the log between logged ones, or after them, still counts as sent."""
    acc = [r for r in _accepted("u1", "d1", range(1, 11)) if r.seq not in (4, 5)]
    arr = _arrivals("u1", [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12])
    report = audit_logs(acc, arr)
    d = report.devices[0]
    assert d.sent == 12 and d.inferred == 4 and d.received == 11
    assert d.lost == 1 and d.lost_ids == ["u1-4"]


def test_unexpected_arrivals_are_reported_not_counted() -> None:
    """Arrivals from unknown stores, before a store's first logged seq, or without id."""
    acc = _accepted("u1", "d1", range(5, 8))
    arr = [*_arrivals("u1", [1, 5, 6, 7]), *_arrivals("zz", [1]), ReceivedRow(None, "t", 1.0)]
    report = audit_logs(acc, arr)
    assert report.ok and report.unexpected == 3 and report.total.sent == 3


def test_client_reported_drops_are_not_losses() -> None:
    """Messages the client reported dropping (evicted, expired) are not counted as lost."""
    report = audit_logs(_accepted("u1", "d1", range(1, 11)), _arrivals("u1", [1, 2, 3, 4, 5]),
                        dropped={"d1": 3})
    d = report.devices[0]
    assert (d.missing, d.dropped, d.lost) == (5, 3, 2)


def test_late_and_percentiles() -> None:
    """Latency percentiles are nearest-rank; 'late' counts those above the threshold."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert percentile([], 50) is None
    arr = [ReceivedRow(f"u1-{s}", "t", 100.0 + s + (20.0 if s > 8 else 0.1)) for s in range(1, 11)]
    report = audit_logs(_accepted("u1", "d1", range(1, 11)), arr, late_after=10.0)
    assert report.total.late == 2 and report.total.p99 == pytest.approx(20.0)


def test_totals_sum_devices() -> None:
    """The total row is the sum over devices."""
    acc = _accepted("u1", "d1", range(1, 6)) + _accepted("u2", "d2", range(1, 4))
    arr = _arrivals("u1", [1, 2, 3, 4, 5]) + _arrivals("u2", [1, 3, 3])
    report = audit_logs(acc, arr)
    assert [d.device for d in report.devices] == ["d1", "d2"]
    assert (report.total.sent, report.total.received, report.total.lost,
            report.total.duplicated) == (8, 7, 1, 1)
    data = report.as_dict()
    assert data["ok"] is False and data["total"]["lost"] == 1


def test_log_files_round_trip_and_catch_deleted_rows(tmp_path: Path) -> None:
    """Rows written by the logs are read back; rows deleted on purpose show up as lost."""
    with AcceptLog(tmp_path / "accepted-0.db", commit_interval=0.0) as alog:
        for s in range(1, 51):
            alog.record(f"u1-{s}", "d1", s, "fleet/d1/data/telemetry", "telemetry", 100.0 + s)
            if alog.due():
                alog.commit()
        alog.label(Label("d1", "cpu_percent", "spike", 3, 4, 103.0, 104.0))
    rlog = ReceivedLog(tmp_path / "received.db")
    for s in range(1, 51):
        rlog.add(f"u1-{s}", "fleet/d1/data/telemetry", 100.5 + s, 100.0 + s)
    rlog.close()
    acc = read_accepted([tmp_path / "accepted-0.db"])
    rec = read_received([tmp_path / "received.db"])
    assert len(acc) == 50 and len(rec) == 50 and rec[0].payload_ts == 101.0
    assert read_labels([tmp_path / "accepted-0.db"])[0].kind == "spike"
    assert audit_logs(acc, rec).ok
    with sqlite3.connect(tmp_path / "received.db") as db:
        db.execute("DELETE FROM received WHERE message_id IN ('u1-7', 'u1-33')")
    db.close()
    report = audit_logs(acc, read_received([tmp_path / "received.db"]))
    assert report.total.lost == 2 and report.total.lost_ids == ["u1-7", "u1-33"]


def test_reading_a_missing_or_foreign_file_fails_clearly(tmp_path: Path) -> None:
    """A missing log or a SQLite file that is not a log raises naming the file."""
    with pytest.raises(FileNotFoundError, match="not found"):
        read_accepted([tmp_path / "nope.db"])
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(Exception, match="not a simulator log"):
        read_received([other])
