"""Matrix item 4a: three mosquitto brokers; the one in use is killed, twice.

Measured as in item 1: every handle acked by some broker's PUBACK, nothing dropped,
drained and connected to the third broker; receipt (subscribers on all three, dedup by
message id) is strict for what was published after the last kill, and what mosquitto
lost by being SIGKILLed before that is reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chaos.common import FAST, Ledger, Load, drained, subscriber
from fieldmq import Client
from fieldmq.testing import MosquittoBroker
from helpers import wait_until


def test_failover_across_three_mosquittos(
    mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path, topic: str
) -> None:
    """The broker in use is SIGKILLed twice under load: the client moves on, 0 lost client-side."""
    brokers = [mosquitto_factory() for _ in range(3)]
    ledger = Ledger()
    subs = [subscriber(b.url, f"{topic}/#", f"fo-sub-{i}", ledger) for i, b in enumerate(brokers)]
    try:
        with Client(client_id="fo-pub", brokers=[b.url for b in brokers],
                    store=tmp_path / "fo.db", backoff=FAST) as pub:
            load = Load(pub, f"{topic}/m", rate=300).start()
            used: list[str] = []
            for _ in range(2):
                target = pub.stats()["acked"] + 150
                assert wait_until(lambda t=target: pub.stats()["acked"] >= t, 30)
                url = pub.stats()["broker"]
                used.append(url)
                victim = next(b for b in brokers if b.url == url)
                victim.save()
                victim.kill()
                assert wait_until(lambda u=url: pub.stats()["broker"] not in (None, u), 30)
            after_last_kill = len(load.handles)
            target = pub.stats()["acked"] + 150
            assert wait_until(lambda: pub.stats()["acked"] >= target, 30)
            handles = load.stop()
            stats = drained(pub)
            assert all(h.status == "acked" for h in handles) and stats["dropped"] == {}
            assert stats["broker"] not in used and len(set(used)) == 2
        for b in brokers:
            b.start()  # killed brokers come back: their subscribers get what was saved
        tail = {h.message_id for h in handles[after_last_kill:]}
        assert ledger.wait_all(tail, 30) == set()
        lost_by_broker = ledger.wait_all(load.ids(), 10)
        print(f"chaos[4a] published={len(handles)} client_lost=0 "
              f"broker_lost={len(lost_by_broker)} duplicated={len(ledger.duplicated())}")
    finally:
        for s in subs:
            s.close()
