"""A client with a bandwidth cap stays under it and sends higher priorities first."""

from __future__ import annotations

import time
from pathlib import Path

from fieldmq import Client, RateLimit
from fieldmq.testing import MosquittoBroker
from helpers import Collector, wait_until


def test_cap_is_never_exceeded(mosquitto: MosquittoBroker, tmp_path: Path, topic: str) -> None:
    """40 KB through a 20 KB/s cap with a 4 KB burst takes at least (40-4)/20 s."""
    with Client(client_id="cap", brokers=[mosquitto.url], store=tmp_path / "cap.db",
                rate_limit=RateLimit(20_000, burst=4_000)) as c:
        assert c.wait_connected(10)
        payload = b"x" * 984  # 1000 bytes per message with the topic and framing
        start = time.monotonic()
        handles = [c.publish(f"{topic}/c", payload) for _ in range(40)]
        for h in handles:
            h.wait(30)
        elapsed = time.monotonic() - start
    sent = sum(len(payload) + len(f"{topic}/c") + 16 for _ in handles)
    assert elapsed >= (sent - 4_000 - 1_100) / 20_000


def test_higher_priority_overtakes_a_throttled_backlog(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str, collector: Collector
) -> None:
    """Under the cap, a priority-9 message goes out before the remaining priority-2 backlog."""
    with Client(client_id="capsub", brokers=[mosquitto.url]) as sub:
        sub.subscribe(f"{topic}/#", collector)
        assert sub.wait_connected(10)
        with Client(client_id="cap2", brokers=[mosquitto.url], store=tmp_path / "c2.db",
                    rate_limit=RateLimit(5_000, burst=1_000)) as c:
            assert c.wait_connected(10)
            for _ in range(30):
                c.publish(f"{topic}/low", b"l" * 480, priority=2)
            assert wait_until(lambda: collector.wait_count(2, timeout=0.1), timeout=20)
            urgent = c.publish(f"{topic}/alarm", b"fire", priority=9)
            urgent.wait(20)
            assert collector.wait_for(lambda ms: any(m.topic.endswith("alarm") for m in ms))
            position = next(i for i, m in enumerate(collector.messages)
                            if m.topic.endswith("alarm"))
            assert position < 15, position
            assert c.drain(30)
