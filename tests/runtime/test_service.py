"""Service in-process against a real mosquitto: status, heartbeats, actions, health,
metrics, graceful stop."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq import Client
from fieldmq.runtime import AlreadyRunning, HealthThresholds, Service, ServiceConfig
from fieldmq.runtime.config import HttpSettings
from fieldmq.runtime.sysinfo import BoardProbe
from fieldmq.testing import MosquittoBroker
from helpers import Collector

from .conftest import require_tool, wait_for


def _config(tmp_path: Path, broker: MosquittoBroker, **kw: Any) -> ServiceConfig:
    base: dict[str, Any] = {
        "app": "meter",
        "group": "plant1",
        "node": "pi-07",
        "brokers": (broker.url,),
        "state_dir": tmp_path / "state",
        "heartbeat_interval": 0.2,
        "probe_interval": 0.2,
        "drain_timeout": 5.0,
    }
    base.update(kw)
    return ServiceConfig(**base)


def _service(cfg: ServiceConfig, tmp_path: Path) -> Service:
    # No vcgencmd and an empty sysfs: health depends only on the client and the disk.
    probe = BoardProbe(disk_path=tmp_path, sysfs_root=tmp_path / "nosys", vcgencmd=None)
    return Service(cfg, probe=probe, env={}, handle_signals=False)


@pytest.fixture
def watcher(mosquitto: MosquittoBroker) -> Iterator[tuple[Client, Collector]]:
    """A plain client subscribed to everything under plant1/."""
    collector = Collector()
    client = Client(client_id="watcher", brokers=[mosquitto.url])
    client.subscribe("plant1/#", collector)
    assert client.wait_connected(10)
    try:
        yield client, collector
    finally:
        client.close()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _retained(broker: MosquittoBroker, topic: str) -> bytes:
    """The retained payload on ``topic``, read by a fresh subscriber."""
    collector = Collector()
    with Client(client_id="retained-reader", brokers=[broker.url]) as c:
        c.subscribe(topic, collector)
        assert collector.wait_count(1, 10), f"no retained message on {topic}"
    return collector.messages[-1].payload


def test_online_status_heartbeat_data_and_offline_on_stop(
    tmp_path: Path, mosquitto: MosquittoBroker, watcher: tuple[Client, Collector]
) -> None:
    """start() announces online (retained), heartbeats carry uptime/queue/reconnects,
    data uses the convention and codec, stop() leaves a retained offline."""
    _, seen = watcher
    svc = _service(_config(tmp_path, mosquitto), tmp_path).start()
    try:
        assert seen.wait_for(lambda ms: any(m.topic == "plant1/pi-07/status/online"
                                            and m.payload == b"online" for m in ms), 10)
        assert seen.wait_for(lambda ms: any(m.topic == "plant1/pi-07/status/heartbeat"
                                            for m in ms), 10)
        beat = next(m for m in seen.messages if m.topic.endswith("status/heartbeat")).json()
        assert {"uptime", "queued", "reconnects", "health", "pid"} <= set(beat)
        svc.publish("temperature", 21.5).wait(10)
        svc.publish("door", "open").wait(10)
        svc.publish("mode", "auto", kind="status", retain=True).wait(10)
        with pytest.raises(ValueError, match="kind must be one of"):
            svc.publish("x", 1, kind="telemetry")
        assert seen.wait_for(lambda ms: any(m.topic == "plant1/pi-07/data/door" for m in ms), 10)
        payloads = {m.topic: m.payload for m in seen.messages}
        assert payloads["plant1/pi-07/data/temperature"] == b"21.5"
        assert payloads["plant1/pi-07/data/door"] == b"open"
        assert _retained(mosquitto, "plant1/pi-07/status/mode") == b"auto"
        assert _retained(mosquitto, "plant1/pi-07/status/online") == b"online"
    finally:
        assert svc.stop()
    assert svc.state == "stopped"
    assert _retained(mosquitto, "plant1/pi-07/status/online") == b"offline"
    with pytest.raises(RuntimeError, match="accepts no new messages"):
        svc.publish("x", 1)
    with pytest.raises(RuntimeError, match="started once"):
        svc.start()


def test_actions_are_decoded_and_dispatched(
    tmp_path: Path, mosquitto: MosquittoBroker, watcher: tuple[Client, Collector]
) -> None:
    """on_action callbacks get the decoded value for <group>/<node>/action/<name>."""
    client, _ = watcher
    got: list[Any] = []
    svc = _service(_config(tmp_path, mosquitto), tmp_path)
    svc.on_action("set", lambda value, msg: got.append(("set", value)))
    with svc:
        svc.on_action("#", lambda value, msg: got.append((msg.topic, value)))
        assert svc.client.wait_connected(10)
        wait_for(lambda: svc.client.stats()["connected"], 10)
        # Subscriptions are set up asynchronously: retry until delivered.
        def delivered() -> bool:
            client.publish("plant1/pi-07/action/set", b'{"rate": 2}').wait(10)
            return ("set", {"rate": 2}) in got
        wait_for(delivered, 10, "the action")
        assert ("plant1/pi-07/action/set", {"rate": 2}) in got


def test_second_service_same_app_is_refused_other_app_runs(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """A second Service for the same app raises AlreadyRunning; run() returns 75;
    another app in the same state directory starts."""
    cfg = _config(tmp_path, mosquitto)
    with _service(cfg, tmp_path):
        with pytest.raises(AlreadyRunning, match="meter is already running"):
            _service(cfg, tmp_path).start()
        assert _service(cfg, tmp_path).run(configure_logging=False) == 75
        other = _config(tmp_path, mosquitto, app="bnp")
        with _service(other, tmp_path) as svc:
            assert svc.client_id == "bnp-pi-07"


def test_health_moves_through_states_as_broker_dies_and_queue_fills(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """/health: healthy, then degraded when the broker is killed, then unhealthy (503)
    when the queue fills, and healthy again once the broker is back and drained."""
    cfg = _config(
        tmp_path, mosquitto, max_messages=20, http=HttpSettings(port=0),
        health=HealthThresholds(offline_degraded_after=0.0, offline_unhealthy_after=3600,
                                queue_degraded_ratio=0.5, queue_unhealthy_ratio=0.9),
    )
    with _service(cfg, tmp_path) as svc:
        url = f"{svc.http_url}/health"
        wait_for(lambda: _get(url)[1]["status"] == "healthy", 10, "healthy")
        code, body = _get(url)
        assert code == 200 and body["reasons"] == [] and body["app"] == "meter"

        mosquitto.kill()
        wait_for(lambda: _get(url)[1]["status"] == "degraded", 20, "degraded")
        code, body = _get(url)
        assert code == 200
        assert [r["check"] for r in body["reasons"]] == ["connection"]
        assert "disconnected from the broker" in body["reasons"][0]["message"]

        for i in range(19):
            svc.publish("reading", i)
        code, body = _get(url)
        assert code == 503 and body["status"] == "unhealthy"
        assert {"connection", "queue"} <= {r["check"] for r in body["reasons"]}
        assert body["checks"]["queued"] >= 18

        mosquitto.start()
        assert svc.client.drain(30)
        wait_for(lambda: _get(url)[1]["status"] == "healthy", 20, "healthy again")


def test_health_reports_board_problems(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """A throttled, hot board (through the probe seam) shows in /health."""
    script = tmp_path / "vcgencmd"
    script.write_text('#!/bin/sh\ncase "$1" in get_throttled) echo throttled=0x50005;; '
                      "measure_temp) echo \"temp=86.0'C\";; esac\n")
    script.chmod(0o755)
    cfg = _config(tmp_path, mosquitto, http=HttpSettings(port=0))
    probe = BoardProbe(disk_path=tmp_path, vcgencmd=str(script))
    with Service(cfg, probe=probe, env={}, handle_signals=False) as svc:
        wait_for(lambda: svc.client.connected, 10)
        code, body = _get(f"{svc.http_url}/health")
    assert code == 503
    checks = {r["check"]: r["status"] for r in body["reasons"]}
    assert checks == {"temperature": "unhealthy", "throttling": "degraded"}
    assert body["checks"]["throttled"] == "0x50005"


def test_metrics_pass_promtool_and_count_acks(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """/metrics is valid Prometheus exposition (promtool) with queue, drops and latency."""
    cfg = _config(tmp_path, mosquitto, http=HttpSettings(port=0))
    with _service(cfg, tmp_path) as svc:
        for i in range(5):
            svc.publish("reading", i).wait(10)
        wait_for(lambda: b"fieldmq_publish_ack_seconds_count 5.0" in urllib.request.urlopen(
            f"{svc.http_url}/metrics", timeout=10).read(), 10, "5 latencies")
        with urllib.request.urlopen(f"{svc.http_url}/metrics", timeout=10) as resp:
            body = resp.read()
            assert resp.headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    for name in ["fieldmq_queue_messages", "fieldmq_connected 1.0", "fieldmq_acked_messages_total",
                 "fieldmq_reconnects_total", "fieldmq_oldest_message_age_seconds",
                 "fieldmq_health_status 0.0", 'fieldmq_service_info{app="meter"',
                 "fieldmq_publish_ack_seconds_bucket"]:
        assert name in text, name
    promtool = require_tool("promtool", "prometheus")
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == b"", (res.stdout, res.stderr)


def test_http_errors_and_status_file(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """Unknown paths are 404, POST is 405; the status file tracks the service."""
    cfg = _config(tmp_path, mosquitto, http=HttpSettings(port=0))
    with _service(cfg, tmp_path) as svc:
        assert _get(f"{svc.http_url}/nope")[0] == 404
        req = urllib.request.Request(f"{svc.http_url}/health", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        info.value.close()
        assert info.value.code == 405
        status_file = tmp_path / "state" / "meter.status.json"
        wait_for(lambda: json.loads(status_file.read_text()).get("connected"), 10)
    record = json.loads(status_file.read_text())
    assert record["state"] == "stopped" and record["running"] is False
