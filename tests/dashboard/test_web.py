"""The dashboard served for real: JSON API, SSE stream, and a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldmq import Client, ConfigError
from fieldmq.dashboard import DashboardServer, Hub
from fieldmq.testing import MosquittoBroker, free_port
from helpers import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served() -> Iterator[tuple[Hub, DashboardServer]]:
    hub = Hub(interval=0.1).start()
    server = DashboardServer(hub, port=free_port(), title="test fleet").start()
    try:
        yield hub, server
    finally:
        server.stop()
        hub.close()


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


def test_snapshot_and_device_api(served: tuple[Hub, DashboardServer]) -> None:
    """The JSON API returns the fleet and a device's series; unknown devices are 404."""
    hub, server = served
    hub.apply("fleet/d1/data/telemetry", b'{"ts": 1.0, "cpu": 12.5}')
    hub.apply("fleet/d1/status/health", b'{"queued": 3, "connected": true}')
    snap = _get(server.url + "api/snapshot")
    assert snap["title"] == "test fleet"
    assert [d["device"] for d in snap["devices"]] == ["d1"]  # type: ignore[union-attr,index]
    dev = _get(server.url + "api/device/d1")
    assert dev["series"] == {"cpu": [[1.0], [12.5]]}
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "api/device/nope", timeout=10)
    assert err.value.code == 404
    err.value.close()


def test_event_stream_sends_snapshot_then_updates(served: tuple[Hub, DashboardServer]) -> None:
    """/api/events starts with a snapshot and then streams new batches."""
    hub, server = served
    hub.apply("fleet/d1/data/telemetry", b'{"ts": 1.0, "cpu": 1}')
    with urllib.request.urlopen(server.url + "api/events", timeout=10) as stream:
        events: list[str] = []

        def read_event() -> str:
            lines = []
            while True:
                line = stream.readline().decode()
                if line in ("\n", ""):
                    return "".join(lines)
                lines.append(line)

        first = read_event()
        assert first.startswith("id: ") and "event: snapshot" in first
        hub.apply("fleet/d2/data/telemetry", b'{"ts": 2.0, "cpu": 2}')
        while True:
            ev = read_event()
            events.append(ev)
            if "event: updates" in ev and '"d2"' in ev:
                break
    assert any('"points"' in e for e in events)


def test_port_already_taken_is_a_clear_error() -> None:
    """Starting on a port in use raises ConfigError naming the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        hub = Hub()
        with pytest.raises(ConfigError, match=str(port)):
            DashboardServer(hub, port=port).start()


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (apt-get install chromium)")
def test_browser_shows_devices_and_live_points(mosquitto: MosquittoBroker,
                                               tmp_path: Path) -> None:
    """Headless Chromium finds the devices, sees chart points arrive, and takes a screenshot."""
    from playwright.sync_api import sync_playwright

    hub = Hub(interval=0.2).start()
    hub.connect(mosquitto.url, group="fleet")
    server = DashboardServer(hub, port=free_port()).start()
    stop = threading.Event()

    def fleet() -> None:
        with Client(client_id="dash-fleet", brokers=[mosquitto.url]) as c:
            tick = 0
            while not stop.is_set():
                for d in range(3):
                    c.publish(f"fleet/dev-{d}/data/telemetry",
                              json.dumps({"ts": tick, "cpu": 20 + d + tick % 5,
                                          "profile": "sensor"}))
                    c.publish(f"fleet/dev-{d}/status/health",
                              json.dumps({"queued": tick % 3, "connected": True}))
                tick += 1
                stop.wait(0.2)

    t = threading.Thread(target=fleet)
    t.start()
    shot = tmp_path / "dashboard.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url)
            page.wait_for_selector("#fleet tbody tr >> nth=2", timeout=20_000)
            rows = page.locator("#fleet tbody tr").all_inner_texts()
            assert [r.split("\t")[0] for r in rows] == ["dev-0", "dev-1", "dev-2"]
            count = ("() => { const s = window.fieldmqDashboard.deviceSeries.cpu;"
                     " return s ? s[0].length : 0; }")
            page.wait_for_function(f"({count})() >= 2", timeout=20_000)
            first = page.evaluate(count)
            page.wait_for_function(f"({count})() > {first}", timeout=20_000)
            assert page.locator("#conn").inner_text() == "live"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        stop.set()
        t.join(10)
        server.stop()
        hub.close()
    assert shot.stat().st_size > 10_000
    target = os.environ.get("FIELDMQ_SCREENSHOT")
    if target:
        shutil.copy(shot, target)
    assert wait_until(lambda: True)
