"""Helpers for the store tests: queues over both backends, a fake clock, crashing children."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq.client.handle import PublishHandle
from fieldmq.store.base import Entry
from fieldmq.store.memory import MemoryBackend
from fieldmq.store.queue import DurableQueue
from fieldmq.store.sqlite import SQLiteBackend
from fieldmq.testing.clock import FakeClock

QueueFactory = Callable[..., DurableQueue]


def put(
    q: DurableQueue,
    payload: bytes = b"x",
    *,
    topic: str = "t",
    priority: int = 5,
    ttl: float | None = None,
    qos: int = 1,
) -> PublishHandle:
    """Put one message the way the client does and return its handle."""
    h = PublishHandle(q, "id")
    e = q.put(topic, topic.encode(), payload, qos, False, priority, ttl, None, h)
    h.seq = e.seq
    return h


def take_all(q: DurableQueue, n: int = 100_000) -> list[Entry]:
    """Everything sendable right now, in delivery order (left in flight)."""
    return q.take(n)


def payloads(entries: list[Entry]) -> list[bytes]:
    return [e.payload for e in entries]


def drain(q: DurableQueue) -> list[bytes]:
    """Take and acknowledge everything; return the payloads in delivery order."""
    out = take_all(q)
    q.acked(out)
    return payloads(out)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll ``predicate`` until truthy or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock shared by every queue a test opens."""
    return FakeClock()


class Queues:
    """Opens queues on one store path with one clock; closes them all at teardown."""

    def __init__(self, kind: str, path: Path, clock: FakeClock) -> None:
        self.kind = kind
        self.path = path
        self.clock = clock
        self.opened: list[DurableQueue] = []

    def open(self, **kw: Any) -> DurableQueue:
        backend: SQLiteBackend | MemoryBackend
        backend = SQLiteBackend(self.path) if self.kind != "memory" else MemoryBackend()
        kw.setdefault("clock", self.clock)
        if self.kind == "sqlite-thread":
            kw.setdefault("fsync_helper", False)
        q = DurableQueue(backend, **kw).open()
        self.opened.append(q)
        return q

    def close_all(self) -> None:
        for q in self.opened:
            q.close()


@pytest.fixture(params=["memory", "sqlite", "sqlite-thread"])
def queues(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Queues]:
    """Queues over each backend (the contract suite runs against both; SQLite with the
    fsync helper process and with the fsync thread)."""
    qs = Queues(request.param, tmp_path / "store.db", clock)
    try:
        yield qs
    finally:
        qs.close_all()


@pytest.fixture
def sqlite_queues(tmp_path: Path, clock: FakeClock) -> Iterator[Queues]:
    """Queues over SQLiteBackend on one path in tmp_path (reopen = open again)."""
    qs = Queues("sqlite", tmp_path / "store.db", clock)
    try:
        yield qs
    finally:
        qs.close_all()


CHILD_PRELUDE = """
import os, signal, sys
from fieldmq.store.queue import DurableQueue
from fieldmq.store.sqlite import SQLiteBackend

path = sys.argv[1]

def put(q, payload, priority=5, topic="t", ttl=None):
    return q.put(topic, topic.encode(), payload, 1, False, priority, ttl, None, None)

def wait_for(pred, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("child timed out")
        time.sleep(0.005)

def ready():
    print("READY", flush=True)
    sys.stdin.read()

def die():
    os.kill(os.getpid(), signal.SIGKILL)
"""


def run_and_kill(body: str, path: Path, timeout: float = 30.0) -> None:
    """Run ``body`` in a child python on store ``path``; SIGKILL it once it prints READY
    (or let it kill itself with ``die()``). Fails if the child errored first."""
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(body), str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() == "READY":
            proc.kill()
        proc.wait(timeout=timeout)
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == -9, f"child exited with {proc.returncode}: {line!r} {err}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
