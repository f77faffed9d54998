"""Matrix items 4b and 8 (the connection-closing case) on a real 3-node NATS cluster
serving MQTT 3.1.1 (QoS 0/1): node failover with a persistent-session subscriber, and
a message the broker answers by closing the connection.

NATS acknowledges a QoS 1 PUBLISH after JetStream stored it (R3), so here the
end-to-end count is strict: every published message reaches the persistent-session
subscriber (dedup by message id, carried in the 3.1.1 envelope)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.common import FAST, Ledger, Load, drained
from fieldmq import Client
from fieldmq.client.poison import POISON_REASON
from fieldmq.testing import NatsCluster, NatsNotFound
from helpers import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    try:
        c = NatsCluster(nodes=3, workdir=tmp_path_factory.mktemp("nats"))
    except NatsNotFound as exc:
        pytest.skip(str(exc))
    with c:
        yield c


def _nats_subscriber(urls: list[str], flt: str, name: str, ledger: Ledger) -> Client:
    """A persistent-session MQTT 3.1.1 subscriber (on ``urls[0]`` while it is up), returned
    once it demonstrably receives."""
    url = urls[0]
    sub = Client(client_id=name, brokers=urls, protocol=4, envelope=True,
                 persistent_session=True, backoff=FAST, connect_timeout=3)
    sub.subscribe(flt, ledger)
    assert sub.wait_connected(30)
    with Client(client_id=name + "-probe", brokers=[url], protocol=4, envelope=True,
                backoff=FAST) as probe:
        seen: set[str] = set()

        def received() -> bool:
            h = probe.publish(flt.rstrip("#") + "probe", b"probe")
            seen.add(h.message_id)
            h.wait(10)
            return ledger.wait_all(seen, 0.5) != seen

        assert wait_until(received, timeout=30)
    return sub


def test_nats_node_in_use_killed_during_load(
    cluster: NatsCluster, tmp_path: Path, topic: str
) -> None:
    """Node in use SIGKILLed under load: client fails over (no CONNACK = failed); 0 lost e2e."""
    urls = cluster.mqtt_urls
    ledger = Ledger()
    sub = _nats_subscriber(urls[::-1], f"{topic}/#", "nats-sub", ledger)
    try:
        with Client(client_id="nats-pub", brokers=urls, protocol=4, envelope=True,
                    store=tmp_path / "nats.db", backoff=FAST, connect_timeout=3) as pub:
            assert pub.wait_connected(30) and pub.stats()["broker"] == urls[0]
            load = Load(pub, f"{topic}/m", rate=100).start()
            assert wait_until(lambda: pub.stats()["acked"] >= 100, 30)
            in_use = pub.stats()["broker"]
            node = urls.index(in_use)
            t0 = time.monotonic()
            cluster.kill(node)
            assert wait_until(lambda: pub.stats()["broker"] not in (None, in_use), 60)
            failover = time.monotonic() - t0
            target = pub.stats()["acked"] + 100
            assert wait_until(lambda: pub.stats()["acked"] >= target, 60), pub.stats()
            handles = load.stop()
            stats = drained(pub, 60)
            assert all(h.status == "acked" for h in handles) and stats["dropped"] == {}
        missing = ledger.wait_all(load.ids(), 60)
        assert missing == set(), len(missing)
        print(f"chaos[4b] killed=node{node} published={len(handles)} lost=0 "
              f"failover={failover:.1f}s "
              f"duplicated={len(ledger.duplicated())}")
    finally:
        sub.close()
        for i in range(3):
            if not cluster.running(i):
                cluster.start_node(i)
        cluster.wait_ready()


@pytest.mark.parametrize("bad", ["dot", "qos2"])
def test_nats_connection_closing_message_is_dead_lettered(
    cluster: NatsCluster, tmp_path: Path, topic: str, bad: str
) -> None:
    """A message NATS answers by closing the connection goes to the dead letters; the rest flows."""
    url = cluster.mqtt_urls[1]
    ledger = Ledger()
    sub = _nats_subscriber([url], f"{topic}/#", f"poison-sub-{bad}", ledger)
    try:
        with Client(client_id=f"poison-pub-{bad}", brokers=[url], protocol=4, envelope=True,
                    store=tmp_path / "p.db", backoff=FAST) as pub:
            assert pub.wait_connected(30)
            if bad == "dot":
                poison = pub.publish(f"{topic}/a.b", b"poison", priority=10)
            else:
                poison = pub.publish(f"{topic}/q2", b"poison", qos=2, priority=10)
            good = [pub.publish(f"{topic}/ok", str(i).encode()) for i in range(50)]
            for h in good:
                h.wait(60)
            assert poison.status == "dropped" and poison.reason == POISON_REASON
            stats = drained(pub)
            assert stats["dropped"] == {POISON_REASON: 1}
            letters = pub.dead_letters()
            assert [(d["seq"], d["reason"]) for d in letters] == [(poison.seq, POISON_REASON)]
        assert ledger.wait_all({h.message_id for h in good}, 30) == set()
        print(f"chaos[8-nats-{bad}] dead_lettered=1 delivered={len(good)} "
              f"reconnects={stats['reconnects']}")
    finally:
        sub.close()
