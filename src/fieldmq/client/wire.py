"""Wire helpers for the network thread: PUBLISH user properties packed once and the
stored form of user properties (a JSON list of pairs)."""

from __future__ import annotations

import json

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["PackedProperties", "decode_user_props", "new_props"]


def decode_user_props(raw: bytes) -> list[tuple[str, str]]:
    """User properties as stored with the message (JSON pairs)."""
    return [(str(k), str(v)) for k, v in json.loads(raw)]


def new_props(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class PackedProperties(Properties):
    """PUBLISH properties holding only user properties, packed once up front.

    paho's generic ``Properties.pack()`` probes every MQTT 5 property by name on each
    call; a user property pair costs a few struct packs when done directly."""

    def __init__(self, user: list[tuple[str, str]]) -> None:
        # Deliberately not calling Properties.__init__: only pack() is ever used.
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        buf = bytearray()
        for k, v in user:
            kb, vb = k.encode(), v.encode()
            buf += b"\x26" + len(kb).to_bytes(2, "big") + kb + len(vb).to_bytes(2, "big") + vb
        n = len(buf)
        head = bytearray()
        while True:
            byte = n % 128
            n //= 128
            head.append(byte | 0x80 if n else byte)
            if not n:
                break
        object.__setattr__(self, "_packed", bytes(head + buf))

    def pack(self) -> bytes:
        packed: bytes = object.__getattribute__(self, "_packed")
        return packed
