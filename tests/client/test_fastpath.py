"""The receiving fast path: PUBLISH packets decoded without paho's Properties, PUBACKs of
a burst written at once; what it cannot decode goes to paho's handler unchanged."""

from __future__ import annotations

import struct
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fieldmq import Message
from fieldmq.client.fastpath import _Unsupported, ack_packets, decode_publish, install
from fieldmq.client.identity import ID_PROPERTY, wrap
from fieldmq.testing import MosquittoBroker
from helpers import wait_until


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(topic: str, payload: bytes, qos: int = 1, mid: int = 7,
            props: bytes | None = b"") -> bytearray:
    """A PUBLISH's variable header and payload as paho holds it (``props`` None: 3.1.1)."""
    data = _utf8(topic) + (struct.pack("!H", mid) if qos else b"")
    if props is not None:
        data += _varint(len(props)) + props
    return bytearray(data + payload)


def _user(k: str, v: str) -> bytes:
    return b"\x26" + _utf8(k) + _utf8(v)


def test_v5_publish_with_id_and_user_properties() -> None:
    """The fieldmq id comes out of the user properties; the others keep their order."""
    props = _user("site", "north") + _user(ID_PROPERTY, "abc-12") + _user("k", "é")
    cmd = 0x30 | (1 << 1) | 0x08 | 0x01  # QoS 1, dup, retain
    got = decode_publish(cmd, _packet("plant/é/t", b"\x00payload", props=props), True)
    assert got == ("plant/é/t", b"\x00payload", 1, True, True, 7, "abc-12",
                   (("site", "north"), ("k", "é")))


@pytest.mark.parametrize("prop", [
    b"\x01\x01",  # payload format indicator
    b"\x02\x00\x00\x0e\x10",  # message expiry interval
    b"\x03" + _utf8("application/json"),  # content type
    b"\x08" + _utf8("reply/here"),  # response topic
    b"\x09" + _utf8("corr"),  # correlation data (binary, same layout)
    b"\x0b" + _varint(300),  # subscription identifier
], ids=["format", "expiry", "content-type", "response-topic", "correlation", "sub-id"])
def test_other_publish_properties_are_skipped(prop: bytes) -> None:
    """Properties a broker may add are stepped over, the message is intact."""
    props = prop + _user(ID_PROPERTY, "x-1")
    got = decode_publish(0x32, _packet("a/b", b"data", props=props), True)
    assert got == ("a/b", b"data", 1, False, False, 7, "x-1", ())


def test_qos0_has_no_packet_id_and_empty_payload_is_kept() -> None:
    got = decode_publish(0x30, _packet("a", b"", qos=0), True)
    assert got == ("a", b"", 0, False, False, 0, None, ())


def test_v311_envelope_gives_the_id() -> None:
    """MQTT 3.1.1 has no properties: the id travels in fieldmq's envelope."""
    got = decode_publish(0x32, _packet("a/b", wrap("dev-9", b"23.5"), props=None), False)
    assert got == ("a/b", b"23.5", 1, False, False, 7, "dev-9", ())


@pytest.mark.parametrize("cmd,packet", [
    (0x34, _packet("a", b"x", qos=2)),  # QoS 2: paho tracks its state
    (0x32, _packet("", b"x")),  # empty topic: a topic alias
    (0x32, _packet("a", b"x", props=b"\x23\x00\x01")),  # topic alias property
    (0x32, _packet("a", b"x", props=b"\x7f\x00")),  # unknown property
    (0x32, bytearray(b"\x00\x02\xff\xfe\x00\x07\x00x")),  # topic not UTF-8
    (0x32, bytearray(b"\x00\x09ab")),  # topic longer than the packet
    (0x32, _packet("a", b"x", props=b"\x26\x00\x05ab")),  # property past its block
], ids=["qos2", "empty-topic", "alias", "unknown-prop", "bad-utf8", "short-topic",
        "short-prop"])
def test_what_paho_must_handle_is_refused(cmd: int, packet: bytearray) -> None:
    with pytest.raises((_Unsupported, IndexError, UnicodeDecodeError)):
        decode_publish(cmd, packet, True)


def test_ack_packets_batches_qos1_and_leaves_qos2_to_paho() -> None:
    data, rest = ack_packets([(1, 1), (2, 2), (300, 1)])
    assert data == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x2c"
    assert rest == [(2, 2)]


def _paho(client_id: str, v5: bool = True) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                       clean_session=None if v5 else False)


def _loop_until(c: mqtt.Client, cond: Any, receiver: Any, timeout: float = 10,
                also: mqtt.Client | None = None) -> bool:
    def step() -> bool:
        c.loop(0.02)
        while receiver.buffer is not None and receiver.buffer.pending():  # see install()
            c.loop_read()
        receiver.flush_acks()
        if also is not None:
            also.loop(0.02)
        return bool(cond())
    return wait_until(step, timeout=timeout, interval=0.0)


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_real_broker_messages_match_and_acks_are_received(
    mosquitto: MosquittoBroker, topic: str, v5: bool
) -> None:
    """Through a real mosquitto: QoS 0 and 1 take the fast path, QoS 2 paho's; every
    message arrives with its topic, payload, QoS, flags and user properties; the batched
    PUBACKs reach the broker (reconnecting the persistent session redelivers nothing)."""
    got: list[Message] = []
    lock = threading.Lock()
    cid = f"fp-{'5' if v5 else '3'}-{topic.replace('/', '-')}"

    def deliver(m: Message) -> None:
        with lock:
            got.append(m)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:  # paho's path
        deliver(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    sub = _paho(cid, v5)
    receiver = install(sub, v5, deliver, None)
    assert receiver is not None, "this paho lacks the internals the fast path needs"
    sub.on_message = on_message
    props5 = {"clean_start": False, "properties": None} if v5 else {}
    if v5:
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 300
        props5["properties"] = p
    sub.connect(mosquitto.host, mosquitto.port, **props5)
    sub.subscribe(f"{topic}/#", qos=2)
    assert _loop_until(sub, lambda: sub.is_connected(), receiver)
    sub.loop(0.2)

    pub = _paho(cid + "-pub")
    pub.connect(mosquitto.host, mosquitto.port)
    sent = []
    for i in range(60):
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("n", str(i)), (ID_PROPERTY, f"id-{i}")]
        t = f"{topic}/é/{i}"
        pub.publish(t, f"p{i}".encode(), qos=i % 3, properties=props)
        sent.append((t, f"p{i}".encode(), i % 3))
    assert _loop_until(sub, lambda: len(got) >= 60, receiver, also=pub)
    pub.disconnect()
    with lock:
        by_topic = {m.topic: m for m in got}
    assert sorted(by_topic) == sorted(t for t, _, _ in sent)
    for t, payload, qos in sent:
        m = by_topic[t]
        assert (m.payload, m.qos) == (payload, qos)
        if qos < 2:  # decoded here: the id and the user properties come along
            assert m.message_id == (f"id-{t.rsplit('/', 1)[1]}" if v5 else None)
            assert m.user_properties == ((("n", t.rsplit("/", 1)[1]),) if v5 else ())
    assert receiver.fast == 40 and receiver.fallbacks == 20
    # A barrier: the broker handles a client's packets in order, so once it answers this
    # SUBSCRIBE it has handled the PUBACKs before it. Closing without one raced them: a
    # socket closed with unread bytes sends RST, and the broker may drop what it had not
    # read yet (the last burst of acks came back as redeliveries in about 1 run in 10).
    subscribed: list[int] = []
    sub.on_subscribe = lambda _c, _u, mid, *_: subscribed.append(mid)
    _, barrier = sub.subscribe(f"{topic}/barrier", qos=0)
    assert _loop_until(sub, lambda: barrier in subscribed, receiver)
    sub.disconnect()
    sub.loop(0.1)

    # the same session again: whatever was not acknowledged would come back now
    again: list[Message] = []
    sub2 = _paho(cid, v5)
    r2 = install(sub2, v5, again.append, None)
    assert r2 is not None
    sub2.on_message = lambda _c, _u, msg: again.append(msg)
    sub2.connect(mosquitto.host, mosquitto.port, **props5)
    assert _loop_until(sub2, lambda: sub2.is_connected(), r2)
    for _ in range(10):
        sub2.loop(0.05)
    assert again == []
    sub2.disconnect()
    sub2.loop(0.1)


@pytest.mark.parametrize("inflight", [0, 20], ids=["unlimited", "paho-limit"])
def test_successful_pubacks_take_the_fast_path_and_keep_paho_consistent(
    mosquitto: MosquittoBroker, topic: str, inflight: int
) -> None:
    """Through a real mosquitto (no subscriber: it answers with reason 0x10): each QoS 1
    PUBACK reaches ``acked``, not paho's on_publish, and paho marks the message published;
    QoS 2 completions still go through on_publish. A paho with its own inflight limit (as
    fieldmq never configures it) keeps its handler, which releases its queued messages."""
    acked: list[int] = []
    via_paho: list[int] = []
    pub = _paho(f"fa-{inflight}-{topic.replace('/', '-')}")
    pub.max_inflight_messages_set(inflight)
    receiver = install(pub, True, lambda m: None, None, acked.append)
    assert receiver is not None
    pub.on_publish = lambda _c, _u, mid, _rc, _p: via_paho.append(mid)
    pub.connect(mosquitto.host, mosquitto.port)
    assert _loop_until(pub, pub.is_connected, receiver)
    ones = [pub.publish(f"{topic}/a", b"x", qos=1) for _ in range(30)]
    twos = [pub.publish(f"{topic}/b", b"y", qos=2) for _ in range(5)]
    assert _loop_until(pub, lambda: len(acked) + len(via_paho) >= 35, receiver), (
        len(acked), len(via_paho))
    fast = sorted(i.mid for i in ones) if inflight == 0 else []
    assert sorted(acked) == fast
    assert sorted(via_paho) == sorted(i.mid for i in ones + twos if i.mid not in fast)
    assert all(i.is_published() for i in ones + twos)
    pub.disconnect()
    pub.loop(0.1)
