"""The journal's record format: length, CRC32 and a typed body. Pure functions.

::

    record  = u32 body_length | u32 crc32(body) | body
    body    = u8 type | fields...
    PUB  1  = u64 seq | u8 qos | u8 retain | u8 priority | f64 created | f64 expires
              | u16 topic_len | u32 props_len | u32 payload_len | topic | props | payload
    ACK  2  = u64 seq            (acknowledged by the broker: gone)
    DROP 3  = u64 seq            (evicted, expired or dead-lettered: gone)
    CLOCK 4 = f64 store_time | f64 wall
    HDR  5  = u64 next_seq | f64 store_time | f64 wall | 16s uid
    PUBS 6  = u8 priority | a backlog batch blob (see :mod:`.batch`): many PUBs of one
              priority in seq order, written by ``publish_many()`` as one record

Decoding a PUBS record yields one ``(PUB, Entry)`` per message, so readers see PUBs
only.

A torn tail (a record cut by a power loss) fails its length or CRC check and ends
the replay; nothing after it was promised durable.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .base import Entry
from .batch import decode_batch, encode_batch

__all__ = [
    "ACK",
    "CLOCK",
    "DROP",
    "HDR",
    "PUB",
    "PUBS",
    "Header",
    "decode",
    "encode_clock",
    "encode_gone",
    "encode_header",
    "encode_pub",
    "encode_pub_fields",
    "encode_pubs",
]

PUB, ACK, DROP, CLOCK, HDR, PUBS = 1, 2, 3, 4, 5, 6

_FRAME = struct.Struct("<II")
_PUB = struct.Struct("<BQBBBddHII")
_GONE = struct.Struct("<BQ")
_CLOCK = struct.Struct("<Bdd")
_HDR = struct.Struct("<BQdd16s")
_crc = zlib.crc32
_pack_frame = _FRAME.pack
_pack_pub = _PUB.pack
_pack_gone = _GONE.pack


@dataclass(frozen=True, slots=True)
class Header:
    next_seq: int
    store_time: float
    wall: float
    uid: str


def encode_pub(e: Entry, topic_bytes: bytes) -> bytes:
    return encode_pub_fields(e.seq, e.qos, e.retain, e.priority, e.created, e.expires,
                             topic_bytes, e.props, e.payload)


def encode_pub_fields(seq: int, qos: int, retain: bool, priority: int, created: float,
                      expires: float, topic_bytes: bytes, props: bytes | None,
                      payload: bytes) -> bytes:
    """:func:`encode_pub` from the fields (``put_many`` has them at hand)."""
    head = _pack_pub(PUB, seq, qos, 1 if retain else 0, priority, created, expires,
                     len(topic_bytes), len(props) if props else 0, len(payload))
    body = head + topic_bytes + props + payload if props else head + topic_bytes + payload
    return _pack_frame(len(body), _crc(body)) + body


def encode_pubs(entries: Sequence[Entry], priority: int) -> bytes:
    """One PUBS record for ``entries`` (all of ``priority``, consecutive seqs in order):
    the columns of a backlog batch, so a thousand messages cost one frame and one CRC."""
    body = bytes((PUBS, priority)) + encode_batch(entries)
    return _pack_frame(len(body), _crc(body)) + body


def encode_gone(kind: int, seq: int) -> bytes:
    body = _pack_gone(kind, seq)
    return _pack_frame(9, _crc(body)) + body


def encode_clock(store_time: float, wall: float) -> bytes:
    body = _CLOCK.pack(CLOCK, store_time, wall)
    return _pack_frame(len(body), _crc(body)) + body


def encode_header(h: Header) -> bytes:
    body = _HDR.pack(HDR, h.next_seq, h.store_time, h.wall, h.uid.encode("ascii")[:16])
    return _pack_frame(len(body), _crc(body)) + body


Record = tuple[int, object]


def decode(data: bytes | memoryview) -> Iterator[Record]:
    """Yield ``(type, value)`` for each intact record; stop at the first damaged one.

    PUB gives an :class:`Entry`, ACK/DROP the seq, CLOCK ``(store_time, wall)``,
    HDR a :class:`Header`. Unknown record types are skipped (forward compatible).
    """
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos + 8 <= end:
        length, crc = _FRAME.unpack_from(view, pos)
        start = pos + 8
        if length == 0 or start + length > end:
            return
        body = view[start : start + length]
        if _crc(body) != crc:
            return
        pos = start + length
        kind = body[0]
        if kind == PUB:
            if length < _PUB.size:
                return
            (_, seq, qos, retain, prio, created, expires, tl, pl, yl) = _PUB.unpack_from(body, 0)
            o = _PUB.size
            topic = bytes(body[o : o + tl]).decode("utf-8")
            o += tl
            props = bytes(body[o : o + pl]) if pl else None
            o += pl
            payload = bytes(body[o : o + yl])
            yield PUB, Entry(seq, topic, payload, qos, bool(retain), prio, created, expires, props)
        elif kind == PUBS and length > 2:
            try:
                entries = decode_batch(bytes(body[2:]), body[1])
            except ValueError:  # intact but unreadable: skipped like a bad-length record
                continue
            for e in entries:
                yield PUB, e
        elif kind in (ACK, DROP) and length == _GONE.size:
            yield kind, _GONE.unpack_from(body, 0)[1]
        elif kind == CLOCK and length == _CLOCK.size:
            _, st, wall = _CLOCK.unpack_from(body, 0)
            yield CLOCK, (st, wall)
        elif kind == HDR and length == _HDR.size:
            _, nxt, st, wall, uid = _HDR.unpack_from(body, 0)
            yield HDR, Header(nxt, st, wall, uid.rstrip(b"\x00").decode("ascii"))
