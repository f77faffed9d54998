"""Shared pieces of the failure-matrix tests: a steady publisher, a receiver-side
ledger that counts every delivery by message id, and the end-of-test checks
(nothing lost, queue and in-flight drained to 0, client connected)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fieldmq import Backoff, Client, Message, PublishHandle
from helpers import wait_until

#: Reconnect quickly: the tests inject many faults and measure the client, not its backoff.
FAST = Backoff(initial=0.05, maximum=0.5, stable_after=1.0)


class Ledger:
    """Receiver side: every delivery counted by message id (duplicates are visible)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.payloads: dict[str, bytes] = {}
        self.order: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, msg: Message) -> None:
        if msg.message_id is None:
            return
        with self._cond:
            self.counts[msg.message_id] += 1
            self.payloads[msg.message_id] = msg.payload
            self.order.append(msg.message_id)
            self._cond.notify_all()

    def wait_all(self, ids: set[str], timeout: float = 30.0) -> set[str]:
        """Wait until every id arrived; return the ones still missing."""
        with self._cond:
            self._cond.wait_for(lambda: ids <= self.counts.keys(), timeout)
            return ids - self.counts.keys()

    def wait_for(self, predicate: Callable[[Ledger], bool], timeout: float = 30.0) -> bool:
        """Wait until ``predicate(self)`` holds (checked on every delivery)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def duplicated(self) -> set[str]:
        with self._cond:
            return {k for k, n in self.counts.items() if n > 1}


class Load:
    """A steady QoS 1 publisher thread: ``rate`` messages/s until ``stop()``."""

    def __init__(self, client: Client, topic: str, rate: float = 200.0) -> None:
        self.client = client
        self.topic = topic
        self.rate = rate
        self.handles: list[PublishHandle] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                self.handles.append(self.client.publish(self.topic, f"m{i}".encode(), qos=1))
            except BaseException as exc:  # recorded: the test asserts there were none
                self.errors.append(exc)
                return
            i += 1
            ahead = t0 + i / self.rate - time.monotonic()
            if ahead > 0:
                self._stop.wait(ahead)

    def stop(self) -> list[PublishHandle]:
        self._stop.set()
        self._thread.join(10)
        assert not self.errors, self.errors
        return self.handles

    def ids(self) -> set[str]:
        return {h.message_id for h in self.handles}


def drained(client: Client, timeout: float = 60.0) -> dict[str, Any]:
    """Assert the end state of every matrix test: queue and in-flight at 0, connected."""
    ok = wait_until(
        lambda: (s := client.stats())["queued"] == 0 and s["inflight"] == 0 and s["connected"],
        timeout=timeout, interval=0.05,
    )
    stats = client.stats()
    assert ok, stats
    return stats


def subscriber(url: str, flt: str, name: str, ledger: Ledger, **kwargs: Any) -> Client:
    """A persistent-session subscriber, returned once it demonstrably receives."""
    sub = Client(client_id=name, brokers=[url], persistent_session=True, backoff=FAST, **kwargs)
    sub.subscribe(flt, ledger)
    assert sub.wait_connected(30)
    probe_topic = flt.rstrip("#") + "probe"
    with Client(client_id=name + "-probe", brokers=[url], backoff=FAST, **kwargs) as p:
        seen: list[str] = []

        def probe() -> bool:
            h = p.publish(probe_topic, b"probe")
            seen.append(h.message_id)
            h.wait(10)
            return bool(ledger.wait_all(set(seen), 0.5) != set(seen))

        assert wait_until(probe, timeout=30)
    return sub
