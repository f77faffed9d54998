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


def test_a_clean_close_delivers_the_last_acks(mosquitto: MosquittoBroker, topic: str) -> None:
    """close() while the broker is still sending: the acknowledgements written just before
    the DISCONNECT reach the broker. (Closing a socket with unread bytes sends a TCP
    reset, and mosquitto then dropped the acks it had not read: those messages came back
    to the persistent session as redeliveries.)"""
    import threading

    url = mosquitto.url
    stop = threading.Event()

    def noise() -> None:  # QoS 0 traffic, so the subscriber always has unread bytes
        with Client(client_id="close-noise", brokers=[url]) as n:
            while not stop.is_set():
                n.publish(f"{topic}/noise", b"." * 200, qos=0)
                stop.wait(0.0002)

    redelivered = 0
    try:
        for round_ in range(5):
            got = Collector()
            stop.clear()
            with Client(client_id="close-acks", brokers=[url], persistent_session=True,
                        ack="after_callback") as sub:
                sub.subscribe(f"{topic}/#", got, timeout=10)
                th = threading.Thread(target=noise, daemon=True)
                th.start()
                assert got.wait_for(lambda ms: any(m.topic.endswith("noise") for m in ms))
                _publish(mosquitto, f"{topic}/data/{round_}", 50)
                assert got.wait_for(
                    lambda ms: sum(1 for m in ms if "/data/" in m.topic) >= 50)
                # closed here: the last acks leave with the close, noise still arriving
            stop.set()
            th.join(10)
            again = Collector()
            with Client(client_id="close-acks", brokers=[url], persistent_session=True) as s:
                s.subscribe(f"{topic}/#", again, timeout=10)  # what the session had
                with Client(client_id="close-marker", brokers=[url]) as pub:
                    pub.publish(f"{topic}/marker", b"m").wait(10)
                assert again.wait_for(lambda ms: any(m.topic.endswith("marker") for m in ms))
                redelivered += sum(1 for m in again.messages if "/data/" in m.topic)
    finally:
        stop.set()
    assert redelivered == 0
