"""Wire helpers for the network thread: PUBLISH user properties packed once, the
stored form of user properties (a JSON list of pairs), and waiting on sockets."""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from .identity import ID_PROPERTY, unwrap, wrap
from .message import Message

if TYPE_CHECKING:
    from ..store.base import Entry
    from .config import ConnectionSettings

__all__ = [
    "PackedProperties",
    "ReadProbe",
    "close_socket",
    "decode_user_props",
    "make_paho",
    "new_props",
    "outgoing",
    "poll_serve",
    "publish_properties",
    "send_disconnect",
    "to_message",
]


def decode_user_props(raw: bytes) -> list[tuple[str, str]]:
    """User properties as stored with the message (JSON pairs)."""
    return [(str(k), str(v)) for k, v in json.loads(raw)]


def new_props(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _user_property(key: str, value: str) -> bytes:
    kb, vb = key.encode(), value.encode()
    return b"\x26" + len(kb).to_bytes(2, "big") + kb + len(vb).to_bytes(2, "big") + vb


_ID_HEAD = _user_property(ID_PROPERTY, "")[:-2]  # 0x26, key length, key
# the bytes before a message id of length n: property length, 0x26, key, value length
_ID_PREFIX = [
    _varint(len(_ID_HEAD) + 2 + n) + _ID_HEAD + n.to_bytes(2, "big") for n in range(100)
]


class PackedProperties:
    """PUBLISH properties holding only user properties, packed once up front.

    paho's generic ``Properties`` probes every MQTT 5 property by name when built and
    packed; paho's ``publish()`` only calls ``pack()`` on what it is given, so this
    small object stands in for it (see :func:`publish_properties`)."""

    __slots__ = ("_packed",)

    def __init__(self, packed: bytes) -> None:
        self._packed = packed

    def pack(self) -> bytes:
        return self._packed


def publish_properties(user: list[tuple[str, str]], message_id: str | None = None) -> Properties:
    """PUBLISH properties: the message id (first) and ``user`` properties, packed."""
    if message_id is not None and not user:  # the common case: one table look-up
        vb = message_id.encode()
        if len(vb) < len(_ID_PREFIX):
            return cast(Properties, PackedProperties(_ID_PREFIX[len(vb)] + vb))
    pairs = ([(ID_PROPERTY, message_id)] if message_id is not None else []) + user
    body = b"".join([_user_property(k, v) for k, v in pairs])
    return cast(Properties, PackedProperties(_varint(len(body)) + body))


def poll_serve(fd: int, wake: int, want_write: bool,
               timeout: float) -> tuple[bool, bool, bool]:
    """poll(2) on the MQTT socket ``fd`` and the wake pipe ``wake`` (skipped when < 0):
    ``(readable, woken, writable)``. Unlike select(), poll works with any descriptor
    number: a process holding many clients passes 1024 descriptors."""
    p = select.poll()
    p.register(fd, select.POLLIN | (select.POLLOUT if want_write else 0))
    if wake >= 0:
        p.register(wake, select.POLLIN)
    readable = woken = writable = False
    for f, ev in p.poll(max(0.0, timeout) * 1000.0):
        if f == fd:
            readable = bool(ev & (select.POLLIN | select.POLLERR | select.POLLHUP))
            writable = bool(ev & select.POLLOUT)
        elif f == wake:
            woken = True
    return readable, woken, writable


class ReadProbe:
    """Is more of the MQTT socket readable right now (without blocking)? paho's
    ``loop_read()`` reads one packet per call for a client that only receives, so the
    network loop asks this between reads and takes what is waiting in one go instead of
    going round its whole loop (and ``poll``) once per received packet. Counts bytes
    already decrypted and buffered by a TLS socket, which ``poll`` cannot see."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)

    def __call__(self) -> bool:
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
            return True
        return bool(self._poll.poll(0))


def make_paho(s: ConnectionSettings, tls: ssl.SSLContext | None) -> mqtt.Client:
    """A paho client for one connection: fieldmq bounds what is in flight itself, so
    paho's own inflight limit and queue are off; reconnecting is fieldmq's job too."""
    v5 = s.protocol == 5
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not s.persistent_session,
        reconnect_on_failure=False,
    )
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    if s.ack_mode != "auto":
        c.manual_ack_set(True)
    c.connect_timeout = s.connect_timeout
    if tls is not None:
        c.tls_set_context(tls)
    if s.will is not None:
        c.will_set(s.will.topic, s.will.payload, s.will.qos, s.will.retain)
    return c


def to_message(msg: mqtt.MQTTMessage, acker: Callable[[], None] | None) -> Message:
    """A received paho message as a :class:`Message`: the sender's id from the ``fmq-id``
    user property or the 3.1.1 envelope, the other user properties, the payload exact."""
    payload = bytes(msg.payload)
    message_id: str | None = None
    user: tuple[tuple[str, str], ...] = ()
    props = getattr(msg, "properties", None)
    if props is not None and hasattr(props, "UserProperty"):
        pairs = tuple((str(k), str(v)) for k, v in props.UserProperty)
        for k, v in pairs:
            if k == ID_PROPERTY:
                message_id = v
        user = tuple(p for p in pairs if p[0] != ID_PROPERTY)
    if message_id is None and payload[:1] == b"\xf0":
        message_id, payload = unwrap(payload)
    return Message(msg.topic, payload, msg.qos, bool(msg.retain), message_id, user,
                   acker, bool(msg.dup))


_DISCONNECT = b"\xe0\x00"  # MQTT 3.1.1 and 5 (remaining length 0: reason 0, normal)


def send_disconnect(c: mqtt.Client, name: str) -> None:
    """A clean DISCONNECT (best effort on the way out, within a second): paho's pending
    output (acknowledgements) first, then DISCONNECT, then a half-close and reading
    until the broker closes its side. Closing a socket that still has unread bytes sends
    a TCP reset, and a broker may drop what it had not read yet, such as the last
    PUBACKs, whose messages it would then deliver again. (paho's own ``disconnect()``
    closes the socket as soon as DISCONNECT is written.)"""
    log = logging.getLogger("fieldmq.client")
    try:
        sock = c.socket()
        deadline = time.monotonic() + 1.0
        while sock is not None and c.want_write() and time.monotonic() < deadline:
            c.loop_write()
        if sock is None or c.want_write() or not isinstance(sock, socket.socket):
            c.disconnect()  # paho's way
            return
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        sock.sendall(_DISCONNECT)
        sock.shutdown(socket.SHUT_WR)  # (an SSLSocket drops its TLS layer here)
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            try:
                if not sock.recv(65536):
                    break  # the broker closed: everything before was read
            except (BlockingIOError, InterruptedError):
                continue
    except Exception as exc:  # pragma: no cover - best effort on the way out
        log.debug("%s: DISCONNECT failed: %s", name, exc)


def close_socket(c: mqtt.Client) -> None:
    """Close paho's socket (paho has no public call that only does that)."""
    try:
        sock = c.socket()
        if sock is not None:
            sock.close()
    except OSError:  # pragma: no cover
        pass


def outgoing(e: Entry, uid: str, s: ConnectionSettings) -> tuple[bytes, Properties | None]:
    """The payload and MQTT 5 properties a stored message is sent with: its id
    ``<uid>-<seq>`` as the ``fmq-id`` user property (MQTT 5) or in the envelope (3.1.1,
    ``envelope=True``), and its own user properties."""
    v5 = s.protocol == 5
    if s.message_ids and (v5 or s.envelope):
        mid_text = f"{uid}-{e.seq}"
        if not v5:
            return wrap(mid_text, e.payload), None
        user = decode_user_props(e.props) if e.props else []
        return e.payload, publish_properties(user, mid_text)
    if v5 and e.props:
        return e.payload, publish_properties(decode_user_props(e.props))
    return e.payload, None
