"""Bridge health and metrics from a stats snapshot (pure)."""

from __future__ import annotations

from typing import Any

from fieldmq.bridge.observe import OfflineTimer, bridge_health, render_metrics


def _stats(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "state": "running", "retry_backlog": 0, "tick_age": 0.01,
        "mappings": {"tel": {"forwarded": 5, "loops": 1}},
        "rollups": {"values": 3, "non_numeric": 1, "published": 2, "open": 1},
        "local": {"connected": True, "queued": 0, "inflight": 0, "queued_bytes": 0},
        "upstream": {"connected": True, "queued": 10, "inflight": 2, "queued_bytes": 500,
                     "oldest_age": 1.0, "acked": 7, "reconnects": 1,
                     "dropped": {"expired": 2}},
    }
    s.update(over)
    return s


def test_healthy_bridge() -> None:
    """Both links up, small backlog: healthy."""
    rep = bridge_health(_stats(), max_messages=1000, max_bytes=10**6, upstream_offline_for=None,
                        local_offline_for=None)
    assert rep.status == "healthy" and rep.checks["local_connected"] is True


def test_offline_links_full_store_and_stopped_bridge_degrade_health() -> None:
    """Upstream offline long, local offline, retry backlog and a stopped bridge are reported."""
    up = _stats()
    up["upstream"] = dict(up["upstream"], connected=False)
    rep = bridge_health(up, max_messages=1000, max_bytes=10**6, upstream_offline_for=700,
                        local_offline_for=None)
    assert rep.status == "unhealthy" and rep.reasons[0].check == "connection"
    rep = bridge_health(_stats(retry_backlog=3), max_messages=1000, max_bytes=10**6,
                        upstream_offline_for=None, local_offline_for=40)
    assert rep.status == "degraded"
    assert {r.check for r in rep.reasons} == {"local", "bridge"}
    rep = bridge_health(_stats(state="closed"), max_messages=1, max_bytes=1024,
                        upstream_offline_for=None, local_offline_for=None)
    assert rep.status == "unhealthy" and rep.http_status == 503


def test_metrics_text() -> None:
    """Counters per mapping, link gauges and drops by reason are exposed."""
    text = render_metrics(_stats()).decode()
    assert 'fieldmq_bridge_forwarded_messages_total{mapping="tel"} 5' in text
    assert 'fieldmq_bridge_loops_messages_total{mapping="tel"} 1' in text
    assert 'fieldmq_bridge_upstream_queue_messages{side="upstream"} 12' in text
    assert 'fieldmq_bridge_upstream_dropped_messages_total{reason="expired"} 2' in text
    assert "fieldmq_bridge_rollup_summaries_total 2" in text
    assert "# TYPE fieldmq_bridge_local_connected gauge" in text


def test_offline_timer() -> None:
    """The timer counts from the first disconnected sample and resets when connected."""
    t = OfflineTimer()
    assert t.update(False, now=t.update(True, now=0.0) or 10.0) == 0.0
    assert t.update(False, now=15.0) == 5.0
    assert t.update(True, now=16.0) is None
