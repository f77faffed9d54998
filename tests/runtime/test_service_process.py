"""The service as a real process: systemd notifications over NOTIFY_SOCKET, the
watchdog stopping when the loop wedges, SIGTERM, SIGKILL and the last will, and
`fieldmq status`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldmq import Client
from fieldmq.testing import MosquittoBroker
from helpers import Collector

from .conftest import Procs, wait_for


class NotifyListener:
    """A NOTIFY_SOCKET: collects datagrams with their arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.events: list[tuple[float, str]] = []

    def pump(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            for line in data.decode().split("\n"):
                self.events.append((time.monotonic(), line))

    def seen(self, line: str) -> bool:
        self.pump()
        return any(e == line for _, e in self.events)

    def last(self, line: str) -> float | None:
        self.pump()
        times = [t for t, e in self.events if e == line]
        return times[-1] if times else None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    listener = NotifyListener(tmp_path / "notify")
    try:
        yield listener
    finally:
        listener.close()


def _start(procs: Procs, broker: MosquittoBroker, state: Path, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return procs.start(
        "service_app.py", "--broker", broker.url, "--state-dir", str(state),
        "--group", "plant1", "--node", "pi-07", *extra, env=env,
    )


def _ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"service did not start: {line!r}\n{err}")
    return line.split()[1]


def _action(broker: MosquittoBroker, name: str) -> None:
    with Client(client_id=f"sender-{name}", brokers=[broker.url]) as c:
        c.publish(f"plant1/pi-07/action/{name}", b"1").wait(10)


def test_notify_ready_watchdog_wedge_and_stopping(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs, notify: NotifyListener
) -> None:
    """READY=1 at start; WATCHDOG=1 keeps coming while offline; it stops when the main
    loop wedges; SIGTERM brings STOPPING=1 and exit code 0."""
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000",
           "FIELDMQ_WATCHDOG_BEAT_TIMEOUT": "0.5"}
    proc = _start(procs, mosquitto, tmp_path / "state", env=env)
    _ready(proc)
    wait_for(lambda: notify.seen("READY=1"), 10, "READY=1")
    assert notify.seen(f"MAINPID={proc.pid}")
    wait_for(lambda: len([e for _, e in notify.events if e == "WATCHDOG=1"]) >= 3 or
             notify.pump(), 10, "watchdog pings")

    mosquitto.stop()  # offline but alive: the watchdog keeps being fed
    wait_for(lambda: notify.seen("STATUS=offline: connection lost") or
             any(e.startswith("STATUS=offline") for _, e in notify.events), 10, "offline")
    mark = time.monotonic()
    wait_for(lambda: (notify.last("WATCHDOG=1") or 0) > mark + 0.5, 10, "feeding while offline")
    mosquitto.start()
    wait_for(lambda: any(e.startswith("STATUS=connected") for t, e in notify.events
                         if t > mark) or notify.pump(), 20, "reconnected")

    _action(mosquitto, "wedge")
    stall = "STATUS=stalled: the application has not called beat()"

    def stall_time() -> float | None:
        notify.pump()
        return next((t for t, e in notify.events if e.startswith(stall)), None)

    stalled_at = wait_for(stall_time, 10, "stall reported")
    assert isinstance(stalled_at, float)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # observe a window longer than WatchdogSec
        notify.pump()
    last_feed = notify.last("WATCHDOG=1") or 0
    assert last_feed < stalled_at, "the watchdog was fed while the main loop was wedged"
    assert not [e for _, e in notify.events if e.startswith("STATUS=stalled: the network")]
    assert proc.poll() is None

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert notify.seen("STOPPING=1")


def test_sigterm_offline_keeps_messages_and_restart_delivers_all(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs
) -> None:
    """SIGTERM while the broker is down exits within the drain time with code 0;
    unacknowledged messages stay in the store and the next start delivers all."""
    state = tmp_path / "state"
    collector = Collector()
    watcher = Client(client_id="watcher-term", brokers=[mosquitto.url])
    watcher.subscribe("plant1/pi-07/data/reading", collector)
    try:
        assert watcher.wait_connected(10)
        mosquitto.stop()
        proc = _start(procs, mosquitto, state, "--set", "drain_timeout=1",
                      env={"APP_PUBLISH": "50"})
        _ready(proc)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
        _, err = proc.communicate(timeout=10)
        assert "stay in the store" in err
        assert (state / "meter.outbox.db").exists()

        mosquitto.start()
        assert watcher.wait_connected(20)
        proc2 = _start(procs, mosquitto, state)
        _ready(proc2)
        assert collector.wait_count(50, 30), f"got {len(collector.messages)} of 50"
        seqs = sorted(json.loads(m.payload)["seq"] for m in collector.messages)
        assert sorted(set(seqs)) == list(range(50))
        _action(mosquitto, "exit")
        assert proc2.wait(timeout=30) == 0
    finally:
        watcher.close()


def test_sigkill_leaves_offline_through_last_will(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs
) -> None:
    """A service killed with SIGKILL is marked offline (retained) by its last will,
    and a restart announces online again without waiting for a stale lock."""
    collector = Collector()
    watcher = Client(client_id="watcher-kill", brokers=[mosquitto.url])
    watcher.subscribe("plant1/pi-07/status/online", collector)
    try:
        proc = _start(procs, mosquitto, tmp_path / "state")
        _ready(proc)
        assert collector.wait_for(lambda ms: ms and ms[-1].payload == b"online", 10)
        proc.kill()
        proc.wait(timeout=10)
        assert collector.wait_for(lambda ms: ms[-1].payload == b"offline", 20)
        proc2 = _start(procs, mosquitto, tmp_path / "state")
        _ready(proc2)
        assert collector.wait_for(lambda ms: ms[-1].payload == b"online", 10)
        proc2.send_signal(signal.SIGINT)
        assert proc2.wait(timeout=30) == 0
        assert collector.wait_for(lambda ms: ms[-1].payload == b"offline", 10)
    finally:
        watcher.close()


def test_duplicate_process_exits_75_naming_the_holder(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs
) -> None:
    """A second process of the same app exits 75 with the holder's PID and command line."""
    first = _start(procs, mosquitto, tmp_path / "state")
    _ready(first)
    second = _start(procs, mosquitto, tmp_path / "state")
    _, err = second.communicate(timeout=30)
    assert second.returncode == 75
    assert f"meter is already running: PID {first.pid} (" in err
    assert "service_app.py" in err


def test_bad_configuration_exits_78_with_key_and_source(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs
) -> None:
    """An invalid FIELDMQ_* value stops the start with the key and the variable named."""
    proc = _start(procs, mosquitto, tmp_path / "state", env={"FIELDMQ_TLS_CA_FILE": "/nope.pem"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 78
    assert "tls.ca_file" in err and "env FIELDMQ_TLS_CA_FILE" in err
    proc = _start(procs, mosquitto, tmp_path / "state", env={"FIELDMQ_HTTP_PORT": "eighty"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 78
    assert "invalid configuration: http.port = 'eighty' (env FIELDMQ_HTTP_PORT)" in err
    assert "Traceback" not in err


def test_fieldmq_status_lists_running_and_stopped_services(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs
) -> None:
    """`fieldmq status` shows each service's pid, connection and queue from its files."""
    root = tmp_path / "root"
    meter = _start(procs, mosquitto, root / "meter")
    bnp = procs.start("service_app.py", "--app", "bnp", "--broker", mosquitto.url,
                      "--state-dir", str(root / "bnp"))
    _ready(meter)
    _ready(bnp)
    status_file = root / "meter" / "meter.status.json"
    wait_for(lambda: status_file.exists() and json.loads(status_file.read_text()).get("connected"),
             10, "status file")
    bnp.send_signal(signal.SIGTERM)
    assert bnp.wait(timeout=30) == 0

    def run(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "fieldmq", "status", "--state-root",
                              str(root), *args], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "NO_COLOR": "1"})
        assert res.returncode == 0, res.stderr
        return res.stdout

    rows = {r["app"]: r for r in json.loads(run("--json", "--all"))}
    assert rows["meter"]["running"] is True and rows["meter"]["pid"] == meter.pid
    assert rows["meter"]["connected"] is True and rows["meter"]["queued"] == 0
    assert rows["meter"]["health"] == "healthy"
    assert rows["bnp"]["running"] is False and rows["bnp"]["pid"] is None
    table = run()
    assert table.splitlines()[0].split()[:4] == ["APP", "PID", "UPTIME", "CONNECTED"]
    assert f"meter  {meter.pid}" in table and "bnp" not in table
    assert "stopped" in run("--all")


def test_seed01_with_full_services_sharing_one_state_dir(
    tmp_path: Path, mosquitto: MosquittoBroker, procs: Procs
) -> None:
    """Seed 01 with real services: youtility4, django5 and bnp share one state directory
    and one broker; a second youtility4 is refused naming the first; bnp SIGKILLed
    restarts at once; each app keeps its own client id and status topic."""
    shared = str(tmp_path / "shared")
    collector = Collector()
    watcher = Client(client_id="watcher-seed01", brokers=[mosquitto.url])
    watcher.subscribe("+/+/status/online", collector)
    try:
        assert watcher.wait_connected(10)

        def start(app: str) -> subprocess.Popen[str]:
            return procs.start("service_app.py", "--app", app, "--broker", mosquitto.url,
                               "--state-dir", shared, "--node", "web-1")

        apps = {name: start(name) for name in ("youtility4", "django5", "bnp")}
        for proc in apps.values():
            _ready(proc)

        def online(app: str) -> bool:
            msgs = [m for m in collector.messages if m.topic == f"{app}/web-1/status/online"]
            return bool(msgs) and msgs[-1].payload == b"online"

        for name in apps:
            wait_for(lambda n=name: online(n), 10, f"{name} online")

        duplicate = start("youtility4")
        _, err = duplicate.communicate(timeout=30)
        assert duplicate.returncode == 75
        assert f"PID {apps['youtility4'].pid} (" in err
        assert f"PID {apps['bnp'].pid} " not in err

        apps["bnp"].kill()
        apps["bnp"].wait(timeout=10)
        assert collector.wait_for(lambda ms: [m.payload for m in ms
                                              if m.topic == "bnp/web-1/status/online"][-1]
                                  == b"offline", 20)
        bnp2 = start("bnp")
        _ready(bnp2)
        wait_for(lambda: online("bnp"), 10, "bnp online again")
        assert apps["youtility4"].poll() is None and apps["django5"].poll() is None
        holders = {json.loads((Path(shared) / f"{a}.lock").read_text())["client_id"]
                   for a in ("youtility4", "django5", "bnp")}
        assert holders == {"youtility4-web-1", "django5-web-1", "bnp-web-1"}
    finally:
        watcher.close()
