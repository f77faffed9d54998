"""``fieldmq bridge`` as a process: SIGKILL and restart, SIGTERM, bad mappings, /health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq import Client, Deduplicator
from fieldmq.testing import MosquittoBroker, free_port
from helpers import Collector, wait_until

Brokers = tuple[MosquittoBroker, MosquittoBroker]


class BridgeProcess:
    def __init__(self, config: Path, state: Path, local: str, upstream: str,
                 *extra: str) -> None:
        self.args = [sys.executable, "-m", "fieldmq", "bridge", "--from", local, "--to", upstream,
                     "--config", str(config), "--state-dir", str(state), *extra]
        self.log = state.parent / f"{state.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out)
        return self

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def bridge_process(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    made: list[BridgeProcess] = []

    def make(toml: str, local: str, upstream: str, *extra: str) -> BridgeProcess:
        cfg = tmp_path / "bridge.toml"
        cfg.write_text(toml)
        p = BridgeProcess(cfg, tmp_path / "state", local, upstream, *extra)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def _client(url: str, made: list[Client], **kwargs: Any) -> Client:
    c = Client(client_id=f"cli-{len(made)}-{os.getpid()}-{time.monotonic_ns()}",
               brokers=[url], **kwargs)
    made.append(c)
    return c


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close(timeout=0.2)


def _wait_bridged(pub: Client, col: Collector, topic: str, timeout: float = 30) -> None:
    """Publish probes until one comes out on the other side: the bridge subscribed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(topic, b"probe")
        if col.wait_for(lambda ms: any(m.topic.endswith(topic) for m in ms), 0.5):
            return
    raise AssertionError(f"nothing came through the bridge on {topic}")


class KillRun:
    """A bridge SIGKILLed while a load goes through it (1500 raw messages, 300 rollup values
    1.0 .. 300.0 into 0.5 s intervals), restarted, and everything published: what arrived."""

    N_RAW, N_VALUES = 1500, 300

    def __init__(self, brokers: Brokers, bridge_process: Callable[..., BridgeProcess],
                 clients: list[Client], topic: str) -> None:
        local, up = brokers
        self.topic = topic
        self.proc = bridge_process(f"""
id = "killme"
heartbeat_interval = 0
[[forward]]
name = "raw"
from = "{topic}/raw/#"
to = "up/{topic}/raw/#"
[[forward]]
name = "temps"
from = "{topic}/temp"
to = "up/{topic}/temp/summary"
rollup = {{ interval = 0.5 }}
""", local.url, up.url).start()
        self.col = col = Collector()
        sub = _client(up.url, clients)
        sub.subscribe(f"up/{topic}/#", col)
        assert sub.wait_connected(10)
        pub = _client(local.url, clients)
        _wait_bridged(pub, col, f"{topic}/raw/probe")
        done = threading.Event()

        def load() -> None:
            for i in range(self.N_RAW):
                pub.publish(f"{topic}/raw/x", str(i))
                if i % 5 == 0:
                    pub.publish(f"{topic}/temp", json.dumps({"value": float(i // 5 + 1)}))
                if i % 50 == 49:
                    time.sleep(0.01)  # pacing the load, not synchronisation
            done.set()

        threading.Thread(target=load, name="test-load", daemon=True).start()
        assert col.wait_for(lambda ms: sum("/raw/x" in m.topic for m in ms) >= 300, 30)
        assert self.proc.signal(signal.SIGKILL) == -signal.SIGKILL
        self.proc.start()
        assert done.wait(30)

    def raw(self) -> set[bytes]:
        return {m.payload for m in list(self.col.messages) if m.topic.endswith("/raw/x")}

    def summaries(self) -> list[dict[str, Any]]:
        """The summaries a receiver keeps: repeats of one (same fmq-id) dropped."""
        dedup = Deduplicator()
        return [m.json() for m in list(self.col.messages)
                if m.topic.endswith("/summary") and not dedup.seen(m.message_id)]

    def counted(self) -> int:
        return sum(s["count"] for s in self.summaries())


def test_sigkilled_bridge_restarts_without_losing_messages(
    brokers: Brokers, bridge_process: Callable[..., BridgeProcess], clients: list[Client],
    topic: str,
) -> None:
    """SIGKILL mid-load, restart: every raw message arrives, and every rollup value is in
    exactly one summary. (Issue 8: the values the killed bridge had counted but not yet
    committed and acknowledged are redelivered by the broker right after the restart,
    before the bridge's subscribe() calls; the client used to drop them there.)"""
    run = KillRun(brokers, bridge_process, clients, topic)
    expected = {str(i).encode() for i in range(run.N_RAW)}
    assert run.col.wait_for(lambda _: expected <= run.raw(), 60), \
        f"missing {len(expected - run.raw())}"
    assert run.col.wait_for(lambda _: run.counted() >= run.N_VALUES, 30), \
        (run.summaries(), run.proc.output()[-3000:])
    ss = run.summaries()
    assert sum(s["count"] for s in ss) == run.N_VALUES
    # The values are 1.0 .. 300.0, each once: the summaries add up to exactly their sum.
    assert round(sum(s["mean"] * s["count"] for s in ss)) == run.N_VALUES * 301 // 2
    assert min(s["min"] for s in ss) == 1.0 and max(s["max"] for s in ss) == 300.0


def test_bad_mapping_is_rejected_at_start_with_a_clear_message(tmp_path: Path) -> None:
    """A mapping whose target does not fit its filter stops the start with exit 78."""
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[[forward]]\nname = "telemetry"\nfrom = "plant/+/data/#"\n'
                   'to = "cloud/data/#"\n')
    r = subprocess.run([sys.executable, "-m", "fieldmq", "bridge", "--from", "mqtt://127.0.0.1:1",
                        "--to", "mqtt://127.0.0.1:2", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78, r.stderr
    assert "invalid configuration" in r.stderr
    assert "mapping 'telemetry' (forward[0])" in r.stderr
    assert "must have the same wildcards in the same order" in r.stderr


def test_check_prints_the_mappings(tmp_path: Path) -> None:
    """--check validates and lists the mappings without connecting."""
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('id = "gw"\n[[forward]]\nfrom = "a/#"\nto = "up/a/#"\npriority = 8\n'
                   '[[reverse]]\nname = "cmd"\nfrom = "cmd/gw/#"\nto = "cmd/#"\n')
    r = subprocess.run([sys.executable, "-m", "fieldmq", "bridge", "--from", "mqtt://h1",
                        "--to", "mqtts://h2", "--config", str(cfg), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "bridge gw: mqtt://h1:1883 (h1:1883) -> mqtts://h2:8883 (h2:8883)" in r.stdout
    assert "forward forward-1: a/# -> up/a/# qos=1 priority=8" in r.stdout
    assert "reverse cmd: cmd/gw/# <- cmd/# qos=1 priority=5" in r.stdout


def test_service_status_health_metrics_and_sigterm(
    brokers: Brokers, bridge_process: Callable[..., BridgeProcess], clients: list[Client],
    topic: str,
) -> None:
    """The bridge runs as a service: online/offline status, /health, /metrics, exit 0."""
    local, up = brokers
    port = free_port()
    proc = bridge_process(f"""
id = "svc"
[[forward]]
name = "tel"
from = "{topic}/#"
""", local.url, up.url, "--http-port", str(port)).start()
    status = Collector()
    watcher = _client(local.url, clients)
    watcher.subscribe("fieldmq-bridge/svc/status/online", status)
    col = Collector()
    sub = _client(up.url, clients)
    sub.subscribe(f"{topic}/#", col)
    assert sub.wait_connected(10)
    _wait_bridged(_client(local.url, clients), col, f"{topic}/x")
    assert status.wait_for(lambda ms: any(m.payload == b"online" for m in ms))

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read()
        except OSError:
            return 0, b""

    assert wait_until(lambda: get("/health")[0] == 200, 20), proc.output()[-2000:]
    health = json.loads(get("/health")[1])
    assert health["status"] == "healthy" and health["bridge"] == "svc"
    assert health["mappings"]["tel"]["forwarded"] >= 1
    metrics = get("/metrics")[1].decode()
    assert 'fieldmq_bridge_forwarded_messages_total{mapping="tel"}' in metrics
    assert "fieldmq_bridge_upstream_connected 1" in metrics
    assert proc.signal(signal.SIGTERM) == 0, proc.output()[-2000:]
    assert status.wait_for(lambda ms: ms[-1].payload == b"offline")
