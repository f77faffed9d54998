"""Health decisions from measurements: pure, no broker, no Pi."""

from __future__ import annotations

import pytest

from fieldmq.runtime.health import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    HealthInputs,
    HealthThresholds,
    decode_throttled,
    evaluate,
)

T = HealthThresholds()


def _status(**kw: object) -> str:
    return evaluate(HealthInputs(**kw), T).status  # type: ignore[arg-type]


def test_nothing_measured_is_healthy() -> None:
    """An empty snapshot is healthy with no reasons and HTTP 200."""
    report = evaluate(HealthInputs(), T)
    assert report.status == HEALTHY and report.reasons == () and report.http_status == 200


@pytest.mark.parametrize(
    ("offline_for", "expected"),
    [(0.0, HEALTHY), (29.9, HEALTHY), (30.0, DEGRADED), (599.0, DEGRADED), (600.0, UNHEALTHY)],
)
def test_connection_grades(offline_for: float, expected: str) -> None:
    """Offline time crosses degraded then unhealthy at the thresholds."""
    assert _status(connected=False, offline_for=offline_for) == expected


def test_connected_ignores_offline_for() -> None:
    """A connected client is never graded on a stale offline duration."""
    assert _status(connected=True, offline_for=10_000.0) == HEALTHY


@pytest.mark.parametrize(
    ("queued", "expected"), [(79, HEALTHY), (80, DEGRADED), (94, DEGRADED), (95, UNHEALTHY)]
)
def test_queue_depth_by_count(queued: int, expected: str) -> None:
    """Queue fill ratio by messages: 80% degraded, 95% unhealthy."""
    assert _status(queued=queued, max_messages=100) == expected


def test_queue_depth_by_bytes() -> None:
    """The byte limit is graded like the message limit."""
    report = evaluate(HealthInputs(store_bytes=960, max_bytes=1000), T)
    assert report.status == UNHEALTHY
    assert report.reasons[0].check == "queue" and "960 of at most 1000 bytes" in \
        report.reasons[0].message


def test_oldest_message_age() -> None:
    """The oldest queued message's age is graded against its thresholds."""
    assert _status(oldest_age=299.0) == HEALTHY
    assert _status(oldest_age=300.0) == DEGRADED
    assert _status(oldest_age=3600.0) == UNHEALTHY


def test_disk_free_percent() -> None:
    """Free disk below 15% is degraded, below 5% unhealthy."""
    assert _status(disk_free=16, disk_total=100) == HEALTHY
    assert _status(disk_free=14, disk_total=100) == DEGRADED
    assert _status(disk_free=4, disk_total=100) == UNHEALTHY
    assert _status(disk_free=0, disk_total=0) == HEALTHY  # unknown total: not graded


def test_temperature() -> None:
    """80 C is degraded and 85 C unhealthy."""
    assert _status(temperature_c=79.9) == HEALTHY
    assert _status(temperature_c=80.0) == DEGRADED
    assert _status(temperature_c=85.0) == UNHEALTHY


def test_throttling_now_degrades_past_only_notes() -> None:
    """0x50005 degrades (under-voltage and throttled now); 0x50000 is only a note."""
    now = evaluate(HealthInputs(throttled=0x50005), T)
    assert now.status == DEGRADED
    assert "under-voltage, throttled" in now.reasons[0].message
    past = evaluate(HealthInputs(throttled=0x50000), T)
    assert past.status == HEALTHY
    assert past.checks["throttled_since_boot"] == ["under-voltage", "throttled"]
    assert past.checks["throttled"] == "0x50000"


def test_decode_throttled_bits() -> None:
    """Bits 0-3 are current conditions, 16-19 the same conditions since boot."""
    assert decode_throttled(0x0) == ([], [])
    assert decode_throttled(0x4) == (["throttled"], [])
    assert decode_throttled(0x80008) == (["soft temperature limit"], ["soft temperature limit"])


def test_loop_stall_and_store_error_are_unhealthy() -> None:
    """A stalled network loop or a store failure is unhealthy."""
    assert _status(loop_stalled_for=12.0) == UNHEALTHY
    report = evaluate(HealthInputs(store_error="disk I/O error"), T)
    assert report.status == UNHEALTHY and report.http_status == 503
    assert report.as_dict()["reasons"] == [
        {"check": "store", "status": UNHEALTHY, "message": "the store failed: disk I/O error"}
    ]


def test_worst_check_wins_and_all_reasons_listed() -> None:
    """Several failing checks are all reported; the worst decides."""
    report = evaluate(
        HealthInputs(connected=False, offline_for=40.0, queued=99, max_messages=100,
                     temperature_c=81.0), T)
    assert report.status == UNHEALTHY
    assert [r.check for r in report.reasons] == ["connection", "queue", "temperature"]
    assert [r.status for r in report.reasons] == [DEGRADED, UNHEALTHY, DEGRADED]


def test_threshold_validation() -> None:
    """Negative, inverted or >1 ratio thresholds are rejected with the key name."""
    with pytest.raises(ValueError, match=r"health\.temperature_degraded_c"):
        HealthThresholds(temperature_degraded_c=-1)
    with pytest.raises(ValueError, match="must not exceed"):
        HealthThresholds(oldest_degraded_after=10, oldest_unhealthy_after=5)
    with pytest.raises(ValueError, match="fraction"):
        HealthThresholds(queue_degraded_ratio=0.9, queue_unhealthy_ratio=2)
