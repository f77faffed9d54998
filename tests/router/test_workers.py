"""Supervised worker processes against a real mosquitto: even split, nothing lost when a
worker is SIGKILLed or the router is stopped with a backlog, RouteMQ's failures."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from fieldmq import Client
from fieldmq.testing import MosquittoBroker
from helpers import wait_until
from router.procs import counts, handled, unique


def publish(broker: MosquittoBroker, topics: list[str]) -> None:
    with Client(client_id=f"pub-{os.getpid()}-{time.monotonic_ns()}", brokers=[broker.url]) as c:
        c.publish_many([(t, b"x") for t in topics], qos=1).wait(timeout=120)


def test_20000_messages_split_evenly_over_3_workers(
        mosquitto: MosquittoBroker, run_router: Any, tmp_path: Path) -> None:
    """20,000 QoS 1 messages through 3 workers: each handles a third, none is lost."""
    rp = run_router("even", "--workers", "3")
    rp.wait_ready(3)
    n = 20_000
    publish(mosquitto, [f"even/shared/{i}" for i in range(n)])
    assert wait_until(lambda: len(unique(tmp_path)) >= n, 90, 0.1), counts(tmp_path)
    assert unique(tmp_path) == {str(i) for i in range(n)}
    per_worker = counts(tmp_path)
    assert len(per_worker) == 3
    assert all(abs(c - n / 3) <= n * 0.01 for c in per_worker.values()), per_worker
    assert 'outcome="handled"' in rp.metrics()
    assert rp.stop() == 0


def test_sigkilled_worker_is_restarted_and_nothing_is_lost(
        mosquitto: MosquittoBroker, run_router: Any, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-run is restarted; its unacknowledged messages are redelivered."""
    rp = run_router("kill", "--workers", "3", "--prefetch", "20", COUNT_SLOW="0.002")
    rp.wait_ready(3)
    n = 3000
    publish(mosquitto, [f"kill/shared/{i}" for i in range(n)])
    assert wait_until(lambda: any(c >= 100 for c in counts(tmp_path).values()), 60, 0.02)
    victim = max(counts(tmp_path).items(), key=lambda kv: kv[1])[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(unique(tmp_path)) >= n, 90, 0.1), (
        len(unique(tmp_path)), rp.health())
    assert unique(tmp_path) == {str(i) for i in range(n)}
    assert len(handled(tmp_path)) == 4  # the restarted worker is a new process
    assert wait_until(lambda: rp.health().get("ready") == 3, 30, 0.05)
    assert 'fieldmq_router_worker_restarts_total{worker="' in rp.metrics()
    assert "1" in [ln.rsplit(" ", 1)[1] for ln in rp.metrics().splitlines()
                   if ln.startswith("fieldmq_router_worker_restarts_total{")]
    assert rp.stop() == 0


def test_sigterm_with_backlog_stops_in_time_and_loses_nothing(
        mosquitto: MosquittoBroker, run_router: Any, tmp_path: Path) -> None:
    """SIGTERM with a backlog: stops within the timeout; the rest is handled after restart."""
    args = ("--workers", "2", "--prefetch", "10", "--shutdown-timeout", "3")
    rp = run_router("term", *args, COUNT_SLOW="0.005")
    rp.wait_ready(2)
    n = 3000
    publish(mosquitto, [f"term/shared/{i}" for i in range(n)])
    assert wait_until(lambda: len(unique(tmp_path)) >= 50, 60, 0.02)
    started = time.monotonic()
    assert rp.stop() == 0
    took = time.monotonic() - started
    assert took < 3 + 5, took
    first = len(unique(tmp_path))
    assert first < n  # there was a backlog
    again = run_router("term", *args, "--client-prefix", f"t{rp.port}")  # same sessions
    again.wait_ready(2)
    assert wait_until(lambda: len(unique(tmp_path)) >= n, 90, 0.1), len(unique(tmp_path))
    assert unique(tmp_path) == {str(i) for i in range(n)}
    assert again.stop() == 0


def test_routemq_failures(mosquitto: MosquittoBroker, run_router: Any, tmp_path: Path) -> None:
    """workers=1 is one process; v1.0 is literal; sensors/+/data style works; non-shared once."""
    rp = run_router("rmq", "--workers", "2", COUNT_WORKERS="1")
    rp.wait_ready(2)
    publish(mosquitto, [f"rmq/shared/{i}" for i in range(300)]
            + ["rmq/v1.0/7", "rmq/v1X0/8", "rmq/wild/a/data", "rmq/wild/b/other"]
            + [f"rmq/single/{i}" for i in range(50)])
    assert wait_until(lambda: len(unique(tmp_path)) >= 300
                      and len(unique(tmp_path, "single")) >= 50
                      and unique(tmp_path, "literal") and unique(tmp_path, "wild"), 60, 0.05)
    assert len(counts(tmp_path)) == 1  # a route with workers=1 is served by one process
    assert sum(counts(tmp_path, "single").values()) == 50  # non-shared: each exactly once
    assert rp.stop() == 0
    assert unique(tmp_path, "literal") == {"7"}
    assert unique(tmp_path, "wild") == {"rmq/wild/a/data"}


def test_crash_loop_is_stopped_and_reported(run_router: Any) -> None:
    """Workers that die at start are restarted with backoff, then the router exits 3."""
    rp = run_router("crash", "--workers", "1", "--max-restarts", "2", COUNT_CRASH="1")
    assert rp.proc.wait(60) == 3
    out = rp.output()
    assert "crash loop" in out and "exit status 7" in out


def test_bad_app_and_impossible_worker_count(run_router: Any) -> None:
    """An app that cannot be honoured is refused with a clear message and status 2."""
    rp = run_router("bad", "--workers", "1", COUNT_WORKERS="3")
    assert rp.proc.wait(30) == 2
    assert "run with --workers 3" in rp.output()
