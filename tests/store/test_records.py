"""The journal record codec: round trips, torn tails, damaged and unknown records."""

from __future__ import annotations

import struct
import zlib

import pytest

from fieldmq.store import records
from fieldmq.store.base import NO_EXPIRY, Entry


def _entry(seq: int, topic: str = "a/b", payload: bytes = b"payload", **kw: object) -> Entry:
    args: dict[str, object] = {"qos": 1, "retain": False, "priority": 5, "created": 12.5,
                               "expires": NO_EXPIRY, "props": None}
    args.update(kw)
    return Entry(seq, topic, payload, args["qos"], args["retain"], args["priority"],  # type: ignore[arg-type]
                 args["created"], args["expires"], args["props"])  # type: ignore[arg-type]


def _pub(e: Entry) -> bytes:
    return records.encode_pub(e, e.topic.encode("utf-8"))


def _same(a: Entry, b: Entry) -> bool:
    return (a.seq, a.topic, a.payload, a.qos, a.retain, a.priority, a.created, a.expires,
            a.props) == (b.seq, b.topic, b.payload, b.qos, b.retain, b.priority, b.created,
                         b.expires, b.props)


@pytest.mark.parametrize(
    "entry",
    [
        _entry(1),
        _entry(2**63, topic="température/é/日本", payload=b"\x00\xff" * 100, qos=2,
               retain=True, priority=10, created=-1.25, expires=1e9, props=b"\x26\x00\x01"),
        _entry(3, payload=b"", qos=0, priority=1),
        _entry(4, payload=b"x" * 100_000),
        _entry(5, topic="t" * 65535),
    ],
    ids=["plain", "all-fields", "empty-payload", "large-payload", "longest-topic"],
)
def test_pub_round_trip(entry: Entry) -> None:
    """A PUB record decodes to an Entry equal in every field."""
    out = list(records.decode(_pub(entry)))
    assert len(out) == 1
    kind, value = out[0]
    assert kind == records.PUB
    assert isinstance(value, Entry)
    assert _same(value, entry)


def test_pubs_record_decodes_to_one_pub_per_message() -> None:
    """A PUBS record (publish_many) holds many messages of one priority; it decodes to
    one PUB per message, in order, equal in every field, between other records."""
    batch = [
        _entry(10),
        _entry(11, topic="température/é", payload=b"\x00\xff" * 50, qos=2, retain=True,
               expires=99.5, props=b"\x26\x00\x01"),
        _entry(12, payload=b"", qos=0),
        _entry(13, topic="a/b", payload=b"y" * 70_000),
    ]
    data = (records.encode_gone(records.ACK, 1) + records.encode_pubs(batch, 5)
            + records.encode_gone(records.DROP, 11))
    out = list(records.decode(data))
    assert [k for k, _ in out] == [records.ACK] + [records.PUB] * 4 + [records.DROP]
    for (_, got), want in zip(out[1:5], batch, strict=True):
        assert isinstance(got, Entry)
        assert _same(got, want)


def test_pubs_record_cut_anywhere_yields_none_of_its_messages() -> None:
    """A torn PUBS record is all or nothing: no message of a half-written batch appears,
    and what came before it still decodes."""
    prefix = records.encode_gone(records.ACK, 1)
    pubs = records.encode_pubs([_entry(s) for s in range(20, 30)], 7)
    for cut in (1, 8, 9, len(pubs) // 2, len(pubs) - 1):
        assert list(records.decode(prefix + pubs[:cut])) == [(records.ACK, 1)]


def test_pubs_record_with_unreadable_batch_is_skipped() -> None:
    """An intact PUBS frame whose batch cannot be read is skipped; later records decode."""
    data = (_frame(bytes([records.PUBS, 5]) + b"\x01garbage")
            + records.encode_gone(records.ACK, 3))
    assert list(records.decode(data)) == [(records.ACK, 3)]


def test_empty_props_decode_as_none() -> None:
    """Empty properties are stored as 'no properties'."""
    (_, value), = records.decode(_pub(_entry(1, props=b"")))
    assert isinstance(value, Entry)
    assert value.props is None


@pytest.mark.parametrize("kind", [records.ACK, records.DROP])
@pytest.mark.parametrize("seq", [0, 1, 2**64 - 1])
def test_gone_round_trip(kind: int, seq: int) -> None:
    """ACK and DROP records decode to their sequence number."""
    assert list(records.decode(records.encode_gone(kind, seq))) == [(kind, seq)]


def test_clock_round_trip() -> None:
    """A CLOCK record decodes to (store_time, wall)."""
    data = records.encode_clock(123.25, 1_700_000_000.5)
    assert list(records.decode(data)) == [(records.CLOCK, (123.25, 1_700_000_000.5))]


def test_header_round_trip() -> None:
    """A HDR record decodes to the same Header; a long uid is cut to 16 characters."""
    h = records.Header(next_seq=42, store_time=9.5, wall=1.5e9, uid="abcdef012345")
    assert list(records.decode(records.encode_header(h))) == [(records.HDR, h)]
    long = records.Header(1, 0.0, 0.0, "x" * 40)
    (_, value), = records.decode(records.encode_header(long))
    assert isinstance(value, records.Header)
    assert value.uid == "x" * 16


def _stream() -> tuple[bytes, list[tuple[int, object]]]:
    h = records.Header(10, 1.0, 2.0, "uid0")
    parts = [
        (records.encode_header(h), (records.HDR, h)),
        (_pub(_entry(10)), None),
        (records.encode_gone(records.ACK, 10), (records.ACK, 10)),
        (records.encode_clock(3.0, 4.0), (records.CLOCK, (3.0, 4.0))),
        (_pub(_entry(11, payload=b"second")), None),
        (records.encode_gone(records.DROP, 11), (records.DROP, 11)),
    ]
    return b"".join(p for p, _ in parts), [v for _, v in parts]


def test_stream_decodes_in_order() -> None:
    """A journal of mixed records decodes in write order."""
    data, _ = _stream()
    kinds = [k for k, _ in records.decode(data)]
    assert kinds == [records.HDR, records.PUB, records.ACK, records.CLOCK, records.PUB,
                     records.DROP]


def test_decode_accepts_memoryview_and_empty() -> None:
    """decode takes bytes or a memoryview; empty input yields nothing."""
    data, _ = _stream()
    assert len(list(records.decode(memoryview(data)))) == 6
    assert list(records.decode(b"")) == []


@pytest.mark.parametrize("last", ["pub", "ack", "clock", "header"])
def test_torn_tail_at_every_offset(last: str) -> None:
    """A last record cut at any byte ends the replay cleanly and keeps every earlier record."""
    prefix = _pub(_entry(1)) + records.encode_gone(records.ACK, 1) + _pub(_entry(2))
    tail = {
        "pub": _pub(_entry(3, payload=b"tail" * 10)),
        "ack": records.encode_gone(records.ACK, 2),
        "clock": records.encode_clock(1.0, 2.0),
        "header": records.encode_header(records.Header(5, 1.0, 2.0, "u")),
    }[last]
    before = list(records.decode(prefix))
    assert len(before) == 3
    for cut in range(len(tail)):
        got = list(records.decode(prefix + tail[:cut]))
        assert [k for k, _ in got] == [k for k, _ in before], cut
        assert got[2][1].payload == b"payload"  # type: ignore[union-attr]
    assert len(list(records.decode(prefix + tail))) == 4


@pytest.mark.parametrize("offset", [8, 9, 20, -1])
def test_crc_mismatch_stops_replay(offset: int) -> None:
    """A flipped byte in a record's body fails its CRC: it and everything after are ignored."""
    first = _pub(_entry(1))
    damaged = bytearray(_pub(_entry(2)))
    damaged[offset] ^= 0xFF
    after = records.encode_gone(records.ACK, 1)
    got = list(records.decode(first + bytes(damaged) + after))
    assert [k for k, _ in got] == [records.PUB]
    assert got[0][1].seq == 1  # type: ignore[union-attr]


def test_damaged_crc_field_stops_replay() -> None:
    """A wrong CRC value in the frame stops the replay."""
    rec = bytearray(records.encode_gone(records.ACK, 7))
    rec[4] ^= 0x01
    assert list(records.decode(bytes(rec))) == []


def test_zero_length_and_oversized_length_stop_replay() -> None:
    """A zero length or a length past the end of the data stops the replay."""
    good = records.encode_gone(records.ACK, 1)
    assert list(records.decode(good + b"\x00" * 16 + good)) == [(records.ACK, 1)]
    huge = struct.pack("<II", 2**31, 0)
    assert list(records.decode(good + huge + good)) == [(records.ACK, 1)]


def _frame(body: bytes) -> bytes:
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


@pytest.mark.parametrize("kind", [0, 7, 99, 255])
def test_unknown_record_types_are_skipped(kind: int) -> None:
    """An intact record of an unknown type is skipped and later records still decode."""
    data = (records.encode_gone(records.ACK, 1) + _frame(bytes([kind]) + b"future data")
            + records.encode_gone(records.DROP, 2))
    assert list(records.decode(data)) == [(records.ACK, 1), (records.DROP, 2)]


def test_known_type_with_wrong_length_is_skipped() -> None:
    """An ACK/CLOCK/HDR body of the wrong size is skipped, not misread."""
    data = (_frame(bytes([records.ACK]) + b"\x01" * 4) + _frame(bytes([records.CLOCK]) + b"x")
            + _frame(bytes([records.HDR]) + b"y" * 3) + records.encode_gone(records.ACK, 3))
    assert list(records.decode(data)) == [(records.ACK, 3)]


def test_short_pub_body_stops_replay() -> None:
    """A PUB body shorter than its fixed header is not misread."""
    data = records.encode_gone(records.ACK, 1) + _frame(bytes([records.PUB]) + b"short")
    assert list(records.decode(data)) == [(records.ACK, 1)]


def test_gone_record_is_17_bytes() -> None:
    """ACK/DROP records are 17 bytes (8-byte frame + 9-byte body): acks stay cheap on disk."""
    assert len(records.encode_gone(records.ACK, 1)) == 17
