"""robmqtt compatibility: the client's delivery and durability scenarios through the
robmqtt API, against a real mosquitto."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fieldmq import Message, StoreFull
from fieldmq.compat.robmqtt import ProductionMQTTClient, PublishInfo
from fieldmq.testing import MosquittoBroker
from helpers import Collector, wait_until

RobFactory = Callable[..., ProductionMQTTClient]
SubscriberFactory = Callable[[str, Collector, str], ProductionMQTTClient]


def _payloads(collector: Collector, topic: str) -> list[bytes]:
    return [m.payload for m in list(collector.messages) if m.topic == topic]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_online_delivery_byte_exact(
    rob: RobFactory, rob_subscriber: SubscriberFactory, topic: str, collector: Collector,
    qos: int,
) -> None:
    """Connected publish delivers bytes and str payloads unchanged to a robmqtt callback."""
    rob_subscriber(f"{topic}/#", collector, "on-sub")
    pub = rob("on-pub")
    assert wait_until(lambda: pub.is_connected, 10)
    binary = bytes(range(256)) * 4
    infos = [pub.publish(f"{topic}/b", binary, qos=qos), pub.publish(f"{topic}/s", "23.5 °C", qos)]
    for info in infos:
        assert isinstance(info, PublishInfo) and info.rc == 0
        info.wait_for_publish(10)
        assert info.is_published()
    assert collector.wait_for(lambda ms: {m.topic for m in ms} >= {f"{topic}/b", f"{topic}/s"})
    assert _payloads(collector, f"{topic}/b") == [binary]
    assert _payloads(collector, f"{topic}/s") == ["23.5 °C".encode()]
    got = next(m for m in collector.messages if m.topic == f"{topic}/b")
    assert got.qos == min(qos, 1) and got.retain is False
    stats = pub.get_statistics()
    assert stats["is_connected"] and stats["connected"]
    assert stats["offline_queue_size"] == 0 and stats["inflight_count"] == 0


def test_offline_queueing_then_delivery_by_priority(
    mosquitto: MosquittoBroker, rob: RobFactory, rob_subscriber: SubscriberFactory,
    topic: str, collector: Collector,
) -> None:
    """Published while the broker is down: counted as offline, then delivered, by priority."""
    mosquitto.stop()
    pub = rob("off-pub")
    for i in range(10):
        pub.publish(f"{topic}/m", f"low-{i}", qos=1, priority=2)
        pub.publish(f"{topic}/m", f"high-{i}", qos=1, priority=9)
    stats = pub.get_statistics()
    assert stats["is_connected"] is False and stats["connected"] is False
    assert stats["offline_queue_size"] == 20
    assert stats["offline_queue"]["total_messages"] == 20
    assert stats["offline_queue"]["capacity_used_percent"] == pytest.approx(2.0)
    assert stats["current_backoff_seconds"] == pub.max_backoff
    pub.stop()  # nothing sent yet: the subscriber must be there before the backlog goes
    mosquitto.start()
    rob_subscriber(f"{topic}/#", collector, "off-sub")
    pub = rob("off-pub")
    assert wait_until(lambda: pub.get_statistics()["offline_queue_size"] == 0
                      and pub.get_statistics()["inflight_count"] == 0, 20)
    assert collector.wait_for(lambda ms: sum(m.topic == f"{topic}/m" for m in ms) >= 20)
    got = [p.decode() for p in _payloads(collector, f"{topic}/m")]
    assert got == [f"high-{i}" for i in range(10)] + [f"low-{i}" for i in range(10)]
    assert pub.get_statistics()["is_connected"] is True


@pytest.mark.slow
def test_broker_kill_and_restart_during_load(
    mosquitto: MosquittoBroker, rob: RobFactory, rob_subscriber: SubscriberFactory,
    topic: str, collector: Collector,
) -> None:
    """A broker SIGKILL and restart mid-load: every QoS1 message is acked, queue and
    inflight drain to 0, reconnect_count counts the drop, connected at the end."""
    rob_subscriber(f"{topic}/#", collector, "kill-sub")
    pub = rob("kill-pub", max_queue_size=10_000)
    assert wait_until(lambda: pub.is_connected, 10)
    killed = threading.Event()

    def chaos() -> None:
        wait_until(lambda: pub.fieldmq_client.stats()["acked"] >= 500, timeout=30)
        mosquitto.kill()
        killed.set()
        mosquitto.start()

    t = threading.Thread(target=chaos)
    t.start()
    infos = [pub.publish(f"{topic}/m", str(i), qos=1, priority=5) for i in range(3000)]
    t.join(60)
    assert killed.is_set()
    assert wait_until(lambda: all(i.is_published() for i in infos), 60), pub.get_statistics()
    assert wait_until(lambda: pub.is_connected, 20)
    stats = pub.get_statistics()
    assert stats["offline_queue_size"] == 0 and stats["inflight_count"] == 0
    assert stats["reconnect_count"] >= 1 and stats["is_connected"] is True
    assert stats["dropped"] == {}


def test_priority_eviction(
    mosquitto: MosquittoBroker, rob: RobFactory, rob_subscriber: SubscriberFactory,
    topic: str, collector: Collector,
) -> None:
    """A full queue evicts the oldest lowest-priority message for a higher one, and
    refuses (StoreFull) rather than evict a higher priority for a lower one."""
    mosquitto.stop()
    pub = rob("ev-pub", max_queue_size=5)
    lows = [pub.publish(f"{topic}/m", f"low-{i}", qos=1, priority=1) for i in range(5)]
    alarm = pub.publish(f"{topic}/m", "alarm", qos=1, priority=9)
    assert lows[0].status == "dropped" and lows[0].handle.reason == "evicted"
    assert [i.status for i in lows[1:]] == ["queued"] * 4 and alarm.status == "queued"
    for i in range(4):
        pub.publish(f"{topic}/m", f"alarm-{i}", qos=1, priority=9)
    assert all(i.status == "dropped" for i in lows)
    before = pub.get_statistics()
    assert before["offline_queue_size"] == 5
    assert before["offline_queue"]["capacity_used_percent"] == pytest.approx(100.0)
    assert before["dropped"] == {"evicted": 5}
    with pytest.raises(StoreFull):
        pub.publish(f"{topic}/m", "routine", qos=1, priority=1)
    assert pub.get_statistics()["offline_queue_size"] == 5
    pub.stop()
    mosquitto.start()
    rob_subscriber(f"{topic}/#", collector, "ev-sub")
    pub = rob("ev-pub", max_queue_size=5)
    assert collector.wait_for(lambda ms: sum(m.topic == f"{topic}/m" for m in ms) >= 5)
    got = [p.decode() for p in _payloads(collector, f"{topic}/m")]
    assert got == ["alarm"] + [f"alarm-{i}" for i in range(4)]


def test_restart_on_same_store(
    mosquitto: MosquittoBroker, rob: RobFactory, rob_subscriber: SubscriberFactory,
    topic: str, collector: Collector,
) -> None:
    """stop() keeps unacked messages in db_path; a new client on it sends them, and
    acked ones never come back."""
    pub = rob("same")
    pub.publish(f"{topic}/a", "first", qos=1).wait_for_publish(10)
    pub.stop()
    mosquitto.stop()
    pub = rob("same")
    pub.publish(f"{topic}/a", "second", qos=1)
    assert pub.get_statistics()["offline_queue_size"] == 1
    pub.stop()
    mosquitto.start()
    rob_subscriber(f"{topic}/#", collector, "same-sub")
    pub = rob("same")
    assert collector.wait_for(lambda ms: any(m.payload == b"second" for m in ms))
    assert wait_until(lambda: pub.get_statistics()["offline_queue_size"] == 0
                      and pub.get_statistics()["inflight_count"] == 0, 20)
    assert b"first" not in _payloads(collector, f"{topic}/a")


PUBLISHER = textwrap.dedent(
    """
    import sys
    from fieldmq.compat.robmqtt import ProductionMQTTClient
    host, port, db, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    c = ProductionMQTTClient("killed", host, port, db_path=db)
    c.connect()
    c.start()
    for i in range(200):
        c.publish(topic, str(i), qos=1, priority=5)
        print(i, flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


def test_publisher_sigkill_restart_on_same_store(
    mosquitto: MosquittoBroker, rob: RobFactory, rob_subscriber: SubscriberFactory,
    tmp_path: Path, topic: str, collector: Collector,
) -> None:
    """Messages whose publish() returned survive a SIGKILL of the publisher process."""
    db = tmp_path / "killed.db"
    mosquitto.stop()
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, mosquitto.host, str(mosquitto.port), str(db),
         f"{topic}/k"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last == 99:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stdin.close()
    mosquitto.start()
    rob_subscriber(f"{topic}/#", collector, "killed-sub")
    rob("killed", db_path=str(db))
    want = {str(i).encode() for i in range(last + 1)}
    assert collector.wait_for(lambda ms: want <= {m.payload for m in ms if m.topic == f"{topic}/k"})


def test_subscribe_unsubscribe_and_replace(
    rob: RobFactory, rob_subscriber: SubscriberFactory, topic: str, collector: Collector,
) -> None:
    """Callbacks get (topic, payload, qos, retain); re-subscribing replaces the callback;
    after unsubscribe() the callback is no longer called."""
    sub = rob_subscriber(f"{topic}/#", collector, "s-sub")
    pub = rob("s-pub")
    second = Collector()
    seen: list[tuple[str, bytes, int, bool]] = []

    def replaced(t: str, p: bytes, q: int, r: bool) -> None:
        seen.append((t, p, q, r))
        second(Message(topic=t, payload=p, qos=q, retain=r))

    sub.subscribe(f"{topic}/#", replaced, qos=1)
    pub.publish(f"{topic}/x", b"one", qos=1).wait_for_publish(10)
    assert second.wait_count(1)
    assert seen[0] == (f"{topic}/x", b"one", 1, False)
    assert not any(m.payload == b"one" for m in collector.messages)
    assert sub.get_statistics()["active_subscriptions"] == 1
    sub.unsubscribe(f"{topic}/#")
    assert sub.get_statistics()["active_subscriptions"] == 0
    pub.publish(f"{topic}/x", b"two", qos=1).wait_for_publish(10)
    marker = Collector()
    sub.subscribe(f"{topic}/marker", lambda t, p, q, r: marker(Message(topic=t, payload=p)))
    assert wait_until(lambda: pub.publish(f"{topic}/marker", b"m", qos=1) is not None
                      and marker.wait_count(1, 0.5))
    assert [p for _, p, _, _ in seen] == [b"one"]
