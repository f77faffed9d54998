"""The receiving fast path: PUBLISH and PUBACK packets handled here, acks written in bulk.

paho builds a ``Properties`` object for every MQTT 5 PUBLISH it receives (a fifth of a
receiving network thread's time) and writes each PUBACK with its own ``send()``. For
the packets a fieldmq consumer gets by the thousand (QoS 0 and 1, the properties
fieldmq and common brokers send), this module decodes the packet directly into a
:class:`~fieldmq.Message` and queues the acknowledgements of one read burst as one
write. Anything else (QoS 2, topic aliases, unknown properties, a topic that is not
UTF-8) goes to paho's own handler unchanged.

It works on paho's internals (``_handle_publish``, ``_in_packet``, ``_packet_queue``),
which are stable across paho-mqtt 2.x (the version fieldmq requires); :func:`install`
checks that they are there and otherwise leaves paho as it is, so an unexpected paho
only costs speed. ``tests/client/test_fastpath.py`` checks both paths give the same
messages.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from .identity import ID_PROPERTY, unwrap
from .message import Message

__all__ = ["BufferedRecv", "FastAcks", "FastReceiver", "install"]

log = logging.getLogger("fieldmq.client")

_PUBACK = 0x40
_PACK_ACK = struct.Struct("!BBH").pack
# MQTT 5 PUBLISH properties: identifier -> how its value is laid out
_BYTE, _U16, _U32, _STR, _BIN, _VARINT = range(6)
_LAYOUT = {
    0x01: _BYTE,  # payload format indicator
    0x02: _U32,  # message expiry interval
    0x03: _STR,  # content type
    0x08: _STR,  # response topic
    0x09: _BIN,  # correlation data
    0x0B: _VARINT,  # subscription identifier
}
_USER_PROPERTY = 0x26
_TOPIC_ALIAS = 0x23


class _Unsupported(Exception):
    """The packet needs paho's full handler."""


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(4):
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise _Unsupported("malformed variable byte integer")


def _string(data: bytes | bytearray, pos: int) -> tuple[str, int]:
    n = (data[pos] << 8) | data[pos + 1]
    pos += 2
    end = pos + n
    if end > len(data):
        raise _Unsupported("string runs past the packet")
    return bytes(data[pos:end]).decode("utf-8"), end


def _user_properties(
    data: bytes | bytearray, pos: int, end: int
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The fieldmq id and the other user properties of a PUBLISH's property block."""
    message_id: str | None = None
    user: list[tuple[str, str]] = []
    while pos < end:
        ident = data[pos]
        pos += 1
        if ident == _USER_PROPERTY:
            k, pos = _string(data, pos)
            v, pos = _string(data, pos)
            if k == ID_PROPERTY:
                message_id = v
            else:
                user.append((k, v))
            continue
        layout = _LAYOUT.get(ident)
        if layout is None:  # topic alias, or a property PUBLISH should not carry
            raise _Unsupported(f"property 0x{ident:02x}")
        if layout == _BYTE:
            pos += 1
        elif layout == _U16:
            pos += 2
        elif layout == _U32:
            pos += 4
        elif layout == _VARINT:
            _, pos = _varint(data, pos)
        else:  # _STR, _BIN: u16 length and the bytes
            pos += 2 + ((data[pos] << 8) | data[pos + 1])
    if pos != end:
        raise _Unsupported("property block length mismatch")
    return message_id, tuple(user)


def decode_publish(
    command: int, data: bytes | bytearray, v5: bool
) -> tuple[str, bytes, int, bool, bool, int, str | None, tuple[tuple[str, str], ...]]:
    """``(topic, payload, qos, retain, dup, mid, message_id, user_properties)`` of a
    QoS 0/1 PUBLISH packet; raises ``_Unsupported`` for what paho must handle."""
    qos = (command & 0x06) >> 1
    if qos > 1:
        raise _Unsupported("QoS 2")
    n = (data[0] << 8) | data[1]
    pos = 2 + n
    if n == 0 or pos > len(data):
        raise _Unsupported("empty topic (an alias) or a topic past the packet")
    try:
        topic = bytes(data[2:pos]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unsupported("topic is not UTF-8") from exc
    mid = 0
    if qos:
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
    message_id: str | None = None
    user: tuple[tuple[str, str], ...] = ()
    if v5:
        length, pos = _varint(data, pos)
        end = pos + length
        if end > len(data):
            raise _Unsupported("properties run past the packet")
        if length:
            message_id, user = _user_properties(data, pos, end)
        pos = end
    payload = bytes(memoryview(data)[pos:])  # paho reads into a bytearray it reuses
    if message_id is None and payload[:1] == b"\xf0":
        message_id, payload = unwrap(payload)
    return topic, payload, qos, bool(command & 0x01), bool(command & 0x08), mid, message_id, user


class FastReceiver:
    """Replaces one paho client's PUBLISH handler (see the module docstring).

    ``deliver(message)`` receives each decoded message on the network thread;
    ``acker(mid, qos)`` makes the acknowledgement callable a manual-ack message
    carries (None in ``auto`` mode, where QoS 1 acks are sent per burst by
    :meth:`flush_acks`)."""

    def __init__(
        self,
        paho: mqtt.Client,
        v5: bool,
        deliver: Callable[[Message], None],
        acker: Callable[[int, int], Callable[[], None]] | None,
    ) -> None:
        self._paho = paho
        self._fallback: Callable[[], Any] = paho._handle_publish
        self._v5 = v5
        self._deliver = deliver
        self._acker = acker
        self._acks: list[bytes] = []
        self.buffer: BufferedRecv | None = None  # set by install()
        self.fast = 0
        self.fallbacks = 0

    def __call__(self) -> Any:
        packet = self._paho._in_packet
        try:
            topic, payload, qos, retain, dup, mid, message_id, user = decode_publish(
                packet["command"], packet["packet"], self._v5
            )
        except (_Unsupported, IndexError, UnicodeDecodeError):
            self.fallbacks += 1
            return self._fallback()
        self.fast += 1
        ack = None
        if qos:
            if self._acker is None:
                self._acks.append(_PACK_ACK(_PUBACK, 2, mid))
            else:
                ack = self._acker(mid, qos)
        self._deliver(Message(topic, payload, qos, retain, message_id, user, ack, dup))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def flush_acks(self) -> None:
        """Write the PUBACKs of the messages decoded since the last call, in one packet
        queue entry (one ``send()``), after paho's other pending output."""
        if self._acks:
            data, self._acks = b"".join(self._acks), []
            self._paho._packet_queue(_PUBACK, data, 0, 1)

    def write_acks(self, acks: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Write the PUBACKs of manually acknowledged QoS 1 ``(mid, qos)`` pairs in one
        go; returns the others (QoS 2), which paho's ``ack()`` must answer."""
        data, rest = ack_packets(acks)
        if data:
            self._paho._packet_queue(_PUBACK, data, 0, 1)
        return rest


class FastAcks:
    """Replaces one paho client's PUBACK handling for the common case, a success (reason
    code below 0x80) with no properties, what a broker sends for all but refused messages:
    paho would build a ``ReasonCode`` and a ``Properties`` object per acknowledgement.
    It keeps paho's own bookkeeping (the message leaves ``_out_messages``, its info is
    marked published) and calls ``acked(mid)``; anything else (a failure, properties,
    PUBCOMP, or a paho with its own inflight limit, which must release queued messages)
    goes to paho's handler, which calls ``on_publish`` as before."""

    def __init__(self, paho: mqtt.Client, acked: Callable[[int], None]) -> None:
        self._paho = paho
        self._fallback: Callable[[Any], Any] = paho._handle_pubackcomp
        self._acked = acked

    def __call__(self, cmd: str) -> Any:
        paho = self._paho
        data = paho._in_packet["packet"]
        n = len(data)
        # success: no reason code, or one below 0x80 (0x10 "no matching subscribers" is
        # what mosquitto says when nobody listens), and no properties
        if cmd != "PUBACK" or paho._max_inflight_messages or not (
            n == 2 or (n in (3, 4) and data[2] < 0x80 and (n == 3 or data[3] == 0))
        ):
            return self._fallback(cmd)
        mid = (data[0] << 8) | data[1]
        with paho._out_message_mutex:
            msg = paho._out_messages.pop(mid, None)
            if msg is None:  # not ours to report (paho ignores it too)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if msg.qos > 0:
                paho._inflight_messages -= 1
        msg.info._set_as_published()
        self._acked(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class BufferedRecv:
    """Replaces one paho client's socket reads with reads from a 64 KB buffer: paho reads
    a packet in three or more ``recv()`` calls (type, length, body), each a system call
    that releases and retakes the GIL; a PUBACK is 4 bytes. :meth:`pending` tells the
    network loop that bytes wait here, where ``poll`` cannot see them."""

    def __init__(self, paho: mqtt.Client, size: int = 65536) -> None:
        self._recv: Callable[[int], bytes] = paho._sock_recv
        self._size = size
        self._data = b""
        self._pos = 0

    def __call__(self, bufsize: int) -> bytes:
        data, pos = self._data, self._pos
        if pos >= len(data):
            data = self._recv(self._size)  # BlockingIOError, b"" at EOF: for paho
            if not data:
                return data
            self._data, pos = data, 0
        out = data[pos:pos + bufsize]
        self._pos = pos + len(out)
        return out

    def pending(self) -> bool:
        return self._pos < len(self._data)


def ack_packets(acks: list[tuple[int, int]]) -> tuple[bytes, list[tuple[int, int]]]:
    """PUBACKs of the QoS 1 ``(mid, qos)`` acks as one buffer, and the rest (QoS 2),
    which paho's ``ack()`` must answer because it tracks their state."""
    ones = [_PACK_ACK(_PUBACK, 2, mid) for mid, qos in acks if qos == 1]
    return b"".join(ones), [a for a in acks if a[1] != 1]


def install(
    paho: mqtt.Client,
    v5: bool,
    deliver: Callable[[Message], None],
    acker: Callable[[int, int], Callable[[], None]] | None,
    acked: Callable[[int], None] | None = None,
) -> FastReceiver | None:
    """Put a :class:`FastReceiver` in front of ``paho``'s PUBLISH handling and, given
    ``acked``, :class:`FastAcks` in front of its PUBACK handling; None (paho left as it
    is) when this paho lacks the internals they rely on. Reads then go through the
    receiver's :class:`BufferedRecv`: the caller's loop must call ``loop_read()`` while
    ``receiver.buffer.pending()``, since ``poll`` does not see those bytes."""
    needed = ("_handle_publish", "_handle_pubackcomp", "_in_packet", "_packet_queue",
              "_out_message_mutex", "_out_messages", "_inflight_messages", "_sock_recv",
              "_max_inflight_messages")
    if not all(hasattr(paho, name) for name in needed):
        log.debug("paho %s: receiving fast path not available", mqtt.__name__)
        return None
    receiver = FastReceiver(paho, v5, deliver, acker)
    paho._handle_publish = receiver  # type: ignore[method-assign]
    paho._sock_recv = receiver.buffer = BufferedRecv(paho)  # type: ignore[method-assign]
    if acked is not None:
        paho._handle_pubackcomp = FastAcks(paho, acked)  # type: ignore[method-assign]
    return receiver
