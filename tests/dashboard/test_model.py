"""The dashboard's fleet model (pure)."""

from __future__ import annotations

import json

import pytest

from fieldmq.dashboard import FleetModel


def tel(**values: object) -> bytes:
    return json.dumps(values).encode()


def test_telemetry_builds_bounded_series_per_metric() -> None:
    """Numeric fields become series (at most `points` each); bookkeeping fields do not."""
    m = FleetModel(points=3)
    for i in range(5):
        assert m.apply("fleet/d1/data/telemetry",
                       tel(device="d1", profile="sensor", tick=i, ts=100.0 + i, cpu=i * 1.5,
                           temp=20 + i, label="x"), now=200.0 + i)
    data = m.device("d1")
    assert data is not None
    assert set(data["series"]) == {"cpu", "temp"}
    assert data["series"]["cpu"] == [[102.0, 103.0, 104.0], [3.0, 4.5, 6.0]]
    assert data["row"]["profile"] == "sensor" and data["row"]["messages"] == 5


def test_status_sets_queue_depth_reconnects_and_online() -> None:
    """A health status carries the device client's queue depth, reconnects and link state."""
    m = FleetModel()
    m.apply("fleet/d2/status/health",
            tel(queued=42, inflight=3, connected=False, reconnects=2), now=10.0)
    row = m.snapshot(now=10.0)["devices"][0]
    assert (row["queue_depth"], row["inflight"], row["reconnects"], row["online"]) == (
        42, 3, 2, False)


def test_last_will_marks_offline_and_staleness_too() -> None:
    """'offline' on status/online marks a device offline; so does silence past stale_after."""
    m = FleetModel(stale_after=5.0)
    m.apply("fleet/d3/data/telemetry", tel(cpu=1.0), now=0.0)
    m.apply("fleet/d4/data/telemetry", tel(cpu=1.0), now=0.0)
    m.apply("fleet/d3/status/online", b"offline", now=1.0)
    rows = {r["device"]: r for r in m.snapshot(now=2.0)["devices"]}
    assert rows["d3"]["online"] is False and rows["d4"]["online"] is True
    rows = {r["device"]: r for r in m.snapshot(now=100.0)["devices"]}
    assert rows["d4"]["online"] is False


def test_sample_sums_fleet_queue_depth() -> None:
    """A fleet sample is the sum of the devices' latest queue depths and the online count."""
    m = FleetModel()
    m.apply("fleet/a/status/health", tel(queued=5, connected=True), now=1.0)
    m.apply("fleet/b/status/health", tel(queued=7, connected=True), now=1.0)
    assert m.sample(now=2.0) == (2.0, 12, 2)
    m.apply("fleet/a/status/health", tel(queued=0, connected=True), now=3.0)
    assert m.sample(now=4.0) == (4.0, 7, 2)
    assert [p[1] for p in m.snapshot(now=4.0)["queue_history"]] == [12, 7]


def test_alerts_and_boot_events() -> None:
    """Alerts go to the anomaly list (newest first); boot events are counted."""
    m = FleetModel(max_anomalies=2)
    for i in range(3):
        m.apply("fleet/d/alerts", tel(metric="cpu", value=99.0 + i, ts=50.0 + i), now=60.0)
    m.apply("fleet/d/status/event/boot", tel(event="boot"), now=61.0)
    snap = m.snapshot(now=62.0)
    assert [a["value"] for a in snap["anomalies"]] == [101.0, 100.0]
    assert snap["devices"][0]["boots"] == 1


@pytest.mark.parametrize(
    ("topic", "payload"),
    [("short/topic", b"{}"), ("fleet/d/data/t", b"not json"), ("fleet/d/data/t", b"[1,2]"),
     ("fleet/d/status/health", b"\xff\xfe"), ("fleet/d/unknown/x", b"{}")],
)
def test_messages_not_understood_are_counted_not_fatal(topic: str, payload: bytes) -> None:
    """Malformed or unknown messages are counted as ignored and change no series."""
    m = FleetModel()
    assert m.apply(topic, payload, now=1.0) is False
    assert m.ignored == 1
    assert all(not d.series for d in m.devices.values())


def test_updates_coalesce_device_rows() -> None:
    """Many changes to one device give one row update (the latest) per batch."""
    m = FleetModel()
    for q in range(5):
        m.apply("fleet/d/status/health", tel(queued=q), now=1.0)
    updates = m.drain_updates()
    rows = [u for u in updates if u["type"] == "device"]
    assert len(rows) == 1 and rows[0]["row"]["queue_depth"] == 4
    assert m.drain_updates() == []


def test_nan_and_infinite_values_are_skipped() -> None:
    """Non-finite numbers never reach a chart."""
    m = FleetModel()
    m.apply("fleet/d/data/t", b'{"cpu": NaN, "mem": Infinity, "temp": 20}', now=1.0)
    data = m.device("d")
    assert data is not None and set(data["series"]) == {"temp"}


def test_bad_sizes_rejected() -> None:
    """Nonsensical buffer sizes raise ValueError."""
    with pytest.raises(ValueError, match="points"):
        FleetModel(points=1)
