"""NatsCluster: a real 3-node nats-server cluster serving MQTT 3.1.1, with node kills."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fieldmq.testing import NatsCluster
from fieldmq.testing.nats import mqtt_connack

pytestmark = pytest.mark.slow


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(0.02)


class Peer:
    """A paho client (MQTT 3.1.1) that records what it receives."""

    def __init__(self, *, client_id: str, clean_session: bool) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(0.1, 1)
        self.received: list[bytes] = []
        self.session_present: bool | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.received.append(msg.payload)
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, *rest: object
    ) -> None:
        self.session_present = bool(getattr(flags, "session_present", False))
        self.connected.set()

    def connect(self, port: int) -> Peer:
        self.connected.clear()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(30), f"no CONNACK from port {port}"
        return self

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(15), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(20)
        assert info.is_published(), f"no PUBACK for {payload!r}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client.reinitialise()  # closes the socket pair loop_start() made


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(nodes=3, workdir=tmp_path / "nats") as c:
        yield c


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(**kwargs: bool | str) -> Peer:
        peer = Peer(**kwargs)  # type: ignore[arg-type]
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def test_cluster_is_formed_with_three_replica_mqtt_streams(cluster: NatsCluster) -> None:
    """Every node is routed to the others, answers MQTT, and made R3 MQTT streams."""
    assert cluster.formed()
    assert len(cluster.mqtt_urls) == 3 and len(set(cluster.mqtt_ports)) == 3
    for index, port in enumerate(cluster.mqtt_ports):
        assert mqtt_connack(port) == 0
        assert "streams/consumers with replicas 3" in cluster.log_tail(index, 100_000)


def test_qos1_reaches_a_persistent_subscriber_on_another_node_after_a_kill(
    cluster: NatsCluster, peers: Callable[..., Peer]
) -> None:
    """QoS1 published on node A reaches a persistent session on node B, also after A is killed."""
    a, b, _ = cluster.mqtt_ports
    topic = f"fieldmq/test/{uuid.uuid4().hex}"
    sub = peers(client_id=f"sub-{uuid.uuid4().hex[:8]}", clean_session=False).connect(b)
    sub.subscribe(topic)
    pub = peers(client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=True).connect(a)
    pub.publish(topic, b"before")
    wait_until(lambda: b"before" in sub.received)
    pub.close()

    cluster.kill(0)
    cluster.wait_ready()  # MQTT on the survivors pauses until JetStream re-elects leaders
    pub_b = peers(client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=True).connect(b)
    pub_b.publish(topic, b"after")
    wait_until(lambda: b"after" in sub.received)
    assert not cluster.running(0)


def test_persistent_session_resumes_on_another_node_when_its_node_dies(
    cluster: NatsCluster, peers: Callable[..., Peer]
) -> None:
    """A session's QoS1 backlog reaches it, in order, on another node after its node dies."""
    a, b, c = cluster.mqtt_ports
    topic = f"fieldmq/test/{uuid.uuid4().hex}"
    client_id = f"sub-{uuid.uuid4().hex[:8]}"
    sub = peers(client_id=client_id, clean_session=False).connect(b)
    sub.subscribe(topic)
    sub.close()  # offline; the session and its subscription stay in JetStream

    cluster.kill(1)
    cluster.wait_ready()
    pub = peers(client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=True).connect(a)
    sent = [b"m%d" % i for i in range(5)]
    for payload in sent:
        pub.publish(topic, payload)

    back = peers(client_id=client_id, clean_session=False).connect(c)
    assert back.session_present is True
    wait_until(lambda: set(sent) <= set(back.received))
    assert list(dict.fromkeys(back.received)) == sent

    cluster.start_node(1)
    assert cluster.running(1) and cluster.formed()
