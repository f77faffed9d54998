"""End-to-end delivery through a real mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldmq import Client, Deduplicator, Message, PublishHandle, unwrap
from fieldmq.testing import MosquittoBroker
from helpers import Collector, wait_until


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_is_received_byte_exact(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str, collector: Collector, qos: int
) -> None:
    """Every byte value arrives unchanged at QoS 0, 1 and 2, with the sender's id."""
    payload = bytes(range(256)) * 3
    with Client(client_id="sub", brokers=[mosquitto.url]) as sub:
        sub.subscribe(f"{topic}/#", collector, qos=2)
        assert sub.wait_connected(10)
        assert wait_until(lambda: _subscribed(sub, mosquitto, f"{topic}/probe", collector))
        with Client(client_id="pub", brokers=[mosquitto.url], store=tmp_path / "p.db") as pub:
            handle = pub.publish(f"{topic}/data", payload, qos=qos)
            handle.wait(10)
            assert handle.status == "acked"
            assert collector.wait_for(lambda ms: any(m.topic == f"{topic}/data" for m in ms))
    got = [m for m in collector.messages if m.topic == f"{topic}/data"]
    assert got[0].payload == payload
    assert got[0].message_id == handle.message_id


def _subscribed(sub: Client, broker: MosquittoBroker, probe: str, collector: Collector) -> bool:
    """Publish probes until the subscription is live (the SUBACK raced the first one)."""
    with Client(client_id="probe", brokers=[broker.url]) as p:
        p.publish(probe, b"probe", qos=1).wait(10)
    return collector.wait_for(lambda ms: any(m.topic == probe for m in ms), timeout=0.5)


def test_publish_before_broker_exists_is_delivered_later(
    tmp_path: Path, topic: str, collector: Collector
) -> None:
    """Messages published while no broker runs are delivered once one starts, in order."""
    from fieldmq.testing import FaultProxy

    broker = MosquittoBroker(workdir=tmp_path / "broker")
    try:
        with FaultProxy(upstream=("127.0.0.1", broker.port)) as proxy, Client(
            client_id="early", brokers=[proxy.url], store=tmp_path / "early.db"
        ) as pub:
            handles = [pub.publish(f"{topic}/n", str(i).encode()) for i in range(50)]
            assert not pub.connected
            assert pub.stats()["queued"] == 50
            proxy.refuse()  # the publisher waits until the subscriber is in place
            broker.start()
            with Client(client_id="early-sub", brokers=[broker.url]) as sub:
                sub.subscribe(f"{topic}/#", collector, timeout=10)
                proxy.passthrough()
                for h in handles:
                    h.wait(20)
                assert collector.wait_for(
                    lambda ms: sum(m.topic == f"{topic}/n" for m in ms) >= 50
                )
    finally:
        broker.close()
    got = [int(m.payload) for m in collector.messages if m.topic == f"{topic}/n"]
    assert got == list(range(50))


def test_priority_order_of_backlog(mosquitto: MosquittoBroker, tmp_path: Path, topic: str,
                                   collector: Collector) -> None:
    """A backlog drains highest priority first, FIFO within a priority."""
    with Client(client_id="prio-sub", brokers=[mosquitto.url], persistent_session=True) as sub:
        sub.subscribe(f"{topic}/#", collector, timeout=10)
        mosquitto.stop()  # the subscriber's session (and subscription) is saved
        with Client(client_id="prio", brokers=[mosquitto.url],
                    store=tmp_path / "prio.db") as pub:
            for i in range(5):
                pub.publish(f"{topic}/m", f"low-{i}", priority=2)
                pub.publish(f"{topic}/m", f"high-{i}", priority=9)
            mosquitto.start()
            assert pub.drain(20)
            assert collector.wait_for(
                lambda ms: sum(m.topic == f"{topic}/m" for m in ms) >= 10)
    got = [m.payload.decode() for m in collector.messages if m.topic == f"{topic}/m"]
    assert got == [f"high-{i}" for i in range(5)] + [f"low-{i}" for i in range(5)]


def test_wildcard_subscriptions_are_restored_after_broker_restart(
    mosquitto: MosquittoBroker, topic: str, collector: Collector
) -> None:
    """A subscription with + and # keeps delivering after the broker was killed and restarted."""
    with Client(client_id="wild", brokers=[mosquitto.url]) as sub:
        sub.subscribe(f"{topic}/+/temp/#", collector)
        assert sub.wait_connected(10)
        mosquitto.kill()
        assert wait_until(lambda: not sub.connected)
        mosquitto.start()
        assert wait_until(lambda: sub.connected, timeout=30)
        with Client(client_id="wild-pub", brokers=[mosquitto.url]) as pub:
            assert wait_until(
                lambda: (pub.publish(f"{topic}/dev1/temp/c", b"21").wait(10) is None
                         and collector.wait_count(1, timeout=0.5)),
                timeout=20,
            )
            pub.publish(f"{topic}/dev1/humidity", b"no").wait(10)
            pub.publish(f"{topic}/dev2/temp", b"22").wait(10)
            assert collector.wait_for(lambda ms: any(m.payload == b"22" for m in ms))
    assert all(m.payload != b"no" for m in collector.messages)


def test_mqtt311_envelope_carries_message_id(mosquitto: MosquittoBroker, tmp_path: Path,
                                             topic: str, collector: Collector) -> None:
    """Over MQTT 3.1.1 the optional envelope carries the id; receivers unwrap it."""
    raw: list[bytes] = []
    with Client(client_id="v4sub", brokers=[mosquitto.url], protocol=4) as sub:
        sub.subscribe(f"{topic}/#", collector)
        assert sub.wait_connected(10)
        assert wait_until(lambda: _subscribed(sub, mosquitto, f"{topic}/p", collector))
        with Client(client_id="v4pub", brokers=[mosquitto.url], protocol=4, envelope=True,
                    store=tmp_path / "v4.db") as pub:
            h = pub.publish(f"{topic}/e", b"\xf0binary\x00")
            h.wait(10)
        assert collector.wait_for(lambda ms: any(m.topic == f"{topic}/e" for m in ms))
    msg = next(m for m in collector.messages if m.topic == f"{topic}/e")
    assert msg.message_id == h.message_id
    assert msg.payload == b"\xf0binary\x00"
    raw.append(msg.payload)
    assert unwrap(b"plain") == (None, b"plain")


def test_deduplicator_drops_repeated_ids() -> None:
    """The receiver-side helper reports a repeated id as a duplicate, None never."""
    d = Deduplicator(capacity=2)
    assert not d.seen("a") and d.seen("a")
    assert not d.seen(None) and not d.seen(None)
    d.seen("b")
    d.seen("c")  # evicts "a"
    assert not d.seen("a")
    assert d.duplicates == 1


def test_handle_reports_queued_then_acked(mosquitto: MosquittoBroker, tmp_path: Path,
                                          topic: str) -> None:
    """A handle is queued while offline, acked after delivery, and durable."""
    mosquitto.stop()
    with Client(client_id="h", brokers=[mosquitto.url], store=tmp_path / "h.db") as pub:
        h: PublishHandle = pub.publish(f"{topic}/x", b"1")
        assert h.status == "queued"
        assert h.wait_durable(5)
        with pytest.raises(TimeoutError):
            h.wait(0.05)
        mosquitto.start()
        h.wait(20)
        assert h.status == "acked" and h.done and h.durable
        stats = pub.stats()
        assert stats["acked"] == 1 and stats["queued"] == 0 and stats["inflight"] == 0
        assert stats["connected"] is True and stats["broker"] == mosquitto.url


def test_callbacks_do_not_block_acks(mosquitto: MosquittoBroker, topic: str) -> None:
    """A slow subscription callback does not delay acknowledgements of publishes."""
    import threading

    release = threading.Event()
    seen: list[Message] = []

    def slow(msg: Message) -> None:
        seen.append(msg)
        release.wait(10)

    with Client(client_id="slow", brokers=[mosquitto.url]) as c:
        c.subscribe(f"{topic}/#", slow)
        assert c.wait_connected(10)
        assert wait_until(lambda: (c.publish(f"{topic}/a", b"x").wait(10) is None and bool(seen)),
                          timeout=20)
        # The callback thread is now blocked; publishes must still be acknowledged.
        handles = [c.publish(f"{topic}/b", b"y") for _ in range(20)]
        for h in handles:
            h.wait(10)
        release.set()


def test_user_properties_arrive_with_the_message_id(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str, collector: Collector
) -> None:
    """MQTT 5 user properties (non-ASCII, long) arrive in order next to the message id;
    a message without any carries only the id; ids of every length are packed right."""
    long_value = "é" * 200
    with Client(client_id="sub", brokers=[mosquitto.url]) as sub:
        sub.subscribe(f"{topic}/#", collector, qos=1)
        assert sub.wait_connected(10)
        assert wait_until(lambda: _subscribed(sub, mosquitto, f"{topic}/probe", collector))
        with Client(client_id="p" * 60, brokers=[mosquitto.url], store=tmp_path / "u.db") as pub:
            a = pub.publish(f"{topic}/a", b"1", user_properties=[("k", "v"), ("ü", long_value)])
            b = pub.publish(f"{topic}/b", b"2")
            a.wait(10)
            b.wait(10)
            assert collector.wait_for(lambda ms: {f"{topic}/a", f"{topic}/b"}
                                      <= {m.topic for m in ms})
    got = {m.topic: m for m in collector.messages}
    assert got[f"{topic}/a"].user_properties == (("k", "v"), ("ü", long_value))
    assert got[f"{topic}/a"].message_id == a.message_id
    assert got[f"{topic}/b"].user_properties == ()
    assert got[f"{topic}/b"].message_id == b.message_id
