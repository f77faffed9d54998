"""Matrix item 3: a half-open link (blackhole) for longer than keepalive, then recovery."""

from __future__ import annotations

import time
from pathlib import Path

from chaos.common import FAST, Ledger, Load, drained, subscriber
from fieldmq import Client
from fieldmq.testing import FaultProxy, MosquittoBroker
from helpers import wait_until

KEEPALIVE = 4.0
WINDOW = 200


def test_blackhole_detected_within_1_5x_keepalive(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    """Dead link noticed within 1.5x keepalive; stall messages not lost, dups only in-flight."""
    ledger = Ledger()
    sub = subscriber(mosquitto.url, f"{topic}/#", "bh-sub", ledger)
    try:
        with FaultProxy(("127.0.0.1", mosquitto.port)) as proxy, Client(
            client_id="bh-pub", brokers=[proxy.url], store=tmp_path / "bh.db", backoff=FAST,
            keepalive=KEEPALIVE, window=WINDOW,
        ) as pub:
            load = Load(pub, f"{topic}/m", rate=100).start()
            assert wait_until(lambda: pub.stats()["acked"] >= 100, 30)
            proxy.blackhole()
            t0 = time.monotonic()
            assert wait_until(lambda: not pub.stats()["connected"], 3 * KEEPALIVE, 0.005)
            detected = time.monotonic() - t0
            sent_before_detection = len(load.handles)
            proxy.passthrough()  # the held bytes flow: the old PUBLISHes may arrive too
            assert wait_until(lambda: pub.stats()["connected"], 30)
            target = pub.stats()["acked"] + 100
            assert wait_until(lambda: pub.stats()["acked"] >= target, 30)
            handles = load.stop()
            stats = drained(pub)
            assert all(h.status == "acked" for h in handles) and stats["dropped"] == {}
            assert stats["reconnects"] >= 1
        assert detected <= 1.5 * KEEPALIVE, detected
        assert ledger.wait_all(load.ids(), 30) == set()
        dups = ledger.duplicated()
        early = {h.message_id for h in handles[:sent_before_detection]}
        assert dups <= early and len(dups) <= WINDOW, (len(dups), WINDOW)
        print(f"chaos[3] keepalive={KEEPALIVE} detected_after={detected:.2f}s "
              f"published={len(handles)} lost=0 duplicated={len(dups)} window={WINDOW}")
    finally:
        sub.close()
