"""Manual and after-callback acknowledgement of received messages, bounded prefetch."""

from __future__ import annotations

from fieldmq import Client, Message
from fieldmq.testing import MosquittoBroker
from helpers import Collector, wait_until


def _publish(broker: MosquittoBroker, topic: str, n: int) -> None:
    with Client(client_id=f"acks-pub-{topic[-3:]}", brokers=[broker.url]) as pub:
        for h in [pub.publish(topic, str(i).encode()) for i in range(n)]:
            h.wait(10)


def test_receive_maximum_bounds_unacked_deliveries(mosquitto: MosquittoBroker,
                                                   topic: str) -> None:
    """With ack='manual' and receive_maximum=5 the broker sends 5 until they are acked."""
    got = Collector()
    with Client(client_id="rm", brokers=[mosquitto.url], ack="manual",
                receive_maximum=5) as sub:
        sub.subscribe(f"{topic}/#", got)
        assert sub.wait_connected(10)
        assert wait_until(lambda: sub.stats()["connected"])
        _publish(mosquitto, f"{topic}/m", 20)
        assert got.wait_count(5)
        assert not got.wait_count(6, timeout=0.5)
        for m in list(got.messages):
            m.ack()
        assert got.wait_count(10)
        while len(got.messages) < 20:
            for m in list(got.messages):
                m.ack()
            assert got.wait_count(min(20, len(got.messages) + 1), timeout=10)
    assert sorted(int(m.payload) for m in got.messages) == list(range(20))


def test_unacked_messages_are_redelivered_after_reconnect(mosquitto: MosquittoBroker,
                                                         topic: str) -> None:
    """Messages not acknowledged before the subscriber went away come back; acked ones not."""
    first = Collector()
    sub = Client(client_id="redeliver", brokers=[mosquitto.url], ack="manual",
                 persistent_session=True)
    sub.subscribe(f"{topic}/#", first)
    assert sub.wait_connected(10)
    _publish(mosquitto, f"{topic}/m", 10)
    assert first.wait_count(10)
    for m in first.messages:
        if int(m.payload) % 2 == 0:
            m.ack()
    # Give the acks a moment to be written, then leave without acking the odd ones.
    assert wait_until(lambda: sub.stats()["loop_age"] < 1.0)
    sub.close(timeout=0.5)
    second = Collector()
    with Client(client_id="redeliver", brokers=[mosquitto.url], ack="manual",
                persistent_session=True) as again:
        again.subscribe(f"{topic}/#", second)
        assert second.wait_count(5)
        assert not second.wait_count(6, timeout=0.5)
        for m in second.messages:
            m.ack()
    assert sorted(int(m.payload) for m in second.messages) == [1, 3, 5, 7, 9]


def test_after_callback_acks_once_the_callback_returned(mosquitto: MosquittoBroker,
                                                       topic: str) -> None:
    """ack='after_callback' acknowledges each message after its callbacks ran."""
    seen: list[Message] = []
    with Client(client_id="ac", brokers=[mosquitto.url], ack="after_callback",
                receive_maximum=3) as sub:
        sub.subscribe(f"{topic}/#", seen.append)
        assert sub.wait_connected(10)
        _publish(mosquitto, f"{topic}/m", 30)
        assert wait_until(lambda: len(seen) >= 30)
    assert sorted(int(m.payload) for m in seen) == list(range(30))
