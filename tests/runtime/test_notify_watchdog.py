"""sd_notify over a real datagram socket, and the pure watchdog decisions."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldmq.runtime.notify import Notifier, watchdog_interval
from fieldmq.runtime.watchdog import WatchdogPolicy, feed_period


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A NOTIFY_SOCKET datagram listener on a filesystem path."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield path, sock
    finally:
        sock.close()


def test_ready_watchdog_stopping_status(listener: tuple[str, socket.socket]) -> None:
    """Each call sends one datagram of KEY=VALUE lines."""
    path, sock = listener
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("connected to broker")
    assert sock.recv(4096).decode().split("\n") == [
        "READY=1", f"MAINPID={os.getpid()}", "STATUS=connected to broker"]
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("queue\n 5")
    assert sock.recv(4096) == b"STATUS=queue 5"
    assert n.extend_timeout(1.5)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=1500000"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace_socket() -> None:
    """An address starting with '@' is an abstract socket."""
    name = f"fieldmq-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        n = Notifier(f"@{name}")
        assert n.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
        n.close()
    finally:
        sock.close()


def test_no_socket_is_a_noop() -> None:
    """Without NOTIFY_SOCKET nothing is sent and calls return False."""
    n = Notifier(env={})
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.stopping()


def test_send_failure_is_logged_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A vanished socket makes sends return False with a single warning."""
    n = Notifier(str(tmp_path / "gone.sock"))
    with caplog.at_level("WARNING", logger="fieldmq.runtime"):
        assert not n.watchdog()
        assert not n.watchdog()
    n.close()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


def test_malformed_lines_rejected(listener: tuple[str, socket.socket]) -> None:
    """Lines must be KEY=VALUE without newlines."""
    with pytest.raises(ValueError):
        Notifier(listener[0]).send("READY")


def test_watchdog_interval_from_env() -> None:
    """WATCHDOG_USEC gives the interval, unless WATCHDOG_PID names another process."""
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 3.0
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_policy_feeds_only_on_progress() -> None:
    """A fresh loop feeds; a stalled loop, a stopped client or a missing beat do not."""
    p = WatchdogPolicy(max_loop_age=5.0)
    assert p.should_feed(loop_age=0.0, beat_age=None)  # offline-but-alive clients report 0
    assert p.should_feed(loop_age=5.0, beat_age=None)
    assert not p.should_feed(loop_age=5.1, beat_age=None)
    assert p.problem(loop_age=None, beat_age=None) == "the client is not running"
    q = WatchdogPolicy(max_loop_age=5.0, beat_timeout=2.0)
    assert not q.should_feed(loop_age=0.1, beat_age=None)
    assert q.should_feed(loop_age=0.1, beat_age=2.0)
    assert "beat() for 2.5s" in (q.problem(loop_age=0.1, beat_age=2.5) or "")


def test_policy_defaults_from_watchdog_sec() -> None:
    """max_loop_age defaults to WatchdogSec/2, or 30 s without a watchdog."""
    assert WatchdogPolicy.for_watchdog(20.0).max_loop_age == 10.0
    assert WatchdogPolicy.for_watchdog(None).max_loop_age == 30.0
    assert WatchdogPolicy.for_watchdog(1.0).max_loop_age == 2.5  # idle loops tick ~1/s
    assert WatchdogPolicy.for_watchdog(20.0, max_loop_age=3.0).max_loop_age == 3.0
    assert feed_period(30.0) == 10.0
    with pytest.raises(ValueError):
        feed_period(0)
    with pytest.raises(ValueError):
        WatchdogPolicy(max_loop_age=0)
    with pytest.raises(ValueError):
        WatchdogPolicy(max_loop_age=1, beat_timeout=0)
