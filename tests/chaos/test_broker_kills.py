"""Matrix item 1: broker SIGKILL and restart 10 times during a steady QoS 1 load."""

from __future__ import annotations

from pathlib import Path

from chaos.common import FAST, Ledger, Load, drained, subscriber
from fieldmq import Client
from fieldmq.testing import MosquittoBroker
from helpers import wait_until

KILLS = 10


def test_broker_sigkill_ten_times_during_qos1_load(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    """Broker SIGKILLed 10x under QoS 1 load: every message acked by a broker PUBACK, 0 dropped.

    What is measured. The client's guarantee: a message is deleted only after a broker
    PUBACK, so every handle must end ``acked`` with nothing dropped, and queue and
    in-flight drain to 0 with the client connected. End to end, a receiver dedups by
    ``message_id``; mosquitto itself forgets what it had acked but not yet passed on
    when it is SIGKILLed (``save()`` before each kill keeps the subscriber's session), so
    receipt is asserted strictly for everything published after the last restart and
    the earlier broker-side losses are reported, not asserted."""
    ledger = Ledger()
    sub = subscriber(mosquitto.url, f"{topic}/#", "bk-sub", ledger)
    try:
        with Client(client_id="bk-pub", brokers=[mosquitto.url], store=tmp_path / "bk.db",
                    backoff=FAST) as pub:
            load = Load(pub, f"{topic}/m", rate=300).start()
            for _ in range(KILLS):
                target = pub.stats()["acked"] + 100
                assert wait_until(lambda t=target: pub.stats()["acked"] >= t, 30), pub.stats()
                mosquitto.save()
                mosquitto.kill()
                mosquitto.start()
            after_last_restart = len(load.handles)
            target = pub.stats()["acked"] + 200
            assert wait_until(lambda: pub.stats()["acked"] >= target, 30), pub.stats()
            handles = load.stop()
            stats = drained(pub)
            assert [h.status for h in handles].count("acked") == len(handles)
            assert stats["dropped"] == {} and stats["reconnects"] >= KILLS
            assert pub.dead_letters() == []
        tail = {h.message_id for h in handles[after_last_restart:]}
        assert ledger.wait_all(tail, 30) == set()
        lost_by_broker = ledger.wait_all(load.ids(), 5)
        print(f"chaos[1] published={len(handles)} acked={len(handles)} client_lost=0 "
              f"broker_lost={len(lost_by_broker)} duplicated={len(ledger.duplicated())}")
    finally:
        sub.close()
