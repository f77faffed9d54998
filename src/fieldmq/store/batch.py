"""How the SQLite backlog stores messages: one row per batch of messages of one
priority, each field in a column of fixed-size little-endian values. Pure functions.

Spilling a flood one row per message costs a few microseconds of Python and SQLite
per message; one row per batch costs a few hundred nanoseconds, which is what lets
``publish_many()`` keep its rate while a million messages go to the backlog. ::

    u8 version (1) | u32 n | u32 topic_count
    topic_count x (u16 length | UTF-8 topic)
    i64[n] seq | f64[n] created | f64[n] expires | u8[n] qos | u8[n] retain
    u32[n] topic index | u32[n] payload length | u32[n] props length + 1 (0: no props)
    payloads | props

A batch holds messages of one priority in seq order (the priority is a column of the
row). A damaged blob raises ``ValueError``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate, pairwise

from .base import Entry

__all__ = ["batch_seqs", "decode_batch", "encode_batch"]

_HEAD = struct.Struct("<BII")
_U16 = struct.Struct("<H")
_VERSION = 1


@lru_cache(maxsize=64)
def _columns(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}q{n}d{n}d{n}B{n}B{n}I{n}I{n}I")


@lru_cache(maxsize=64)
def _seq_column(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}q")


def encode_batch(entries: Sequence[Entry]) -> bytes:
    """The blob for ``entries`` (one priority, in seq order)."""
    n = len(entries)
    topics = [e.topic for e in entries]
    index = {t: i for i, t in enumerate(dict.fromkeys(topics))}
    tidx = [0] * n if len(index) == 1 else list(map(index.__getitem__, topics))
    payloads = [e.payload for e in entries]
    props = [e.props for e in entries]
    parts = [_HEAD.pack(_VERSION, n, len(index))]
    for topic in index:  # insertion order is index order
        tb = topic.encode()
        parts.append(_U16.pack(len(tb)))
        parts.append(tb)
    parts.append(_columns(n).pack(
        *[e.seq for e in entries], *[e.created for e in entries],
        *[e.expires for e in entries], *[e.qos for e in entries],
        *[1 if e.retain else 0 for e in entries], *tidx,
        *[len(p) for p in payloads], *[0 if p is None else len(p) + 1 for p in props],
    ))
    parts += payloads
    parts += [p for p in props if p]
    return b"".join(parts)


def _head(data: bytes) -> tuple[int, int, int]:
    try:
        version, n, k = _HEAD.unpack_from(data, 0)
    except struct.error as exc:
        raise ValueError(f"damaged backlog batch: {exc}") from None
    if version != _VERSION:
        raise ValueError(f"backlog batch version {version} is unknown")
    off = _HEAD.size
    for _ in range(k):
        (tl,) = _U16.unpack_from(data, off)
        off += 2 + tl
    return n, k, off


def batch_seqs(data: bytes) -> tuple[int, ...]:
    """Only the seqs of a batch (cheap: no messages are built)."""
    n, _, off = _head(data)
    try:
        return tuple(_seq_column(n).unpack_from(data, off))
    except struct.error as exc:
        raise ValueError(f"damaged backlog batch: {exc}") from None


def decode_batch(data: bytes, priority: int, in_db: int = 1) -> list[Entry]:
    """The messages of a batch, in seq order, marked as stored in backlog row ``in_db``."""
    try:
        version, n, k = _HEAD.unpack_from(data, 0)
        if version != _VERSION:
            raise ValueError(f"backlog batch version {version} is unknown")
        off = _HEAD.size
        topics: list[str] = []
        for _ in range(k):
            (tl,) = _U16.unpack_from(data, off)
            off += 2
            topics.append(data[off : off + tl].decode("utf-8"))
            off += tl
        cols = _columns(n)
        c = cols.unpack_from(data, off)
        off += cols.size
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged backlog batch: {exc}") from None
    seqs, created, expires = c[0:n], c[n : 2 * n], c[2 * n : 3 * n]
    qos, retain, tidx = c[3 * n : 4 * n], c[4 * n : 5 * n], c[5 * n : 6 * n]
    plens, prlens = c[6 * n : 7 * n], c[7 * n : 8 * n]
    ends = list(accumulate(plens, initial=off))
    payloads = [data[a:b] for a, b in pairwise(ends)]
    off = ends[-1]
    props: list[bytes | None]
    if any(prlens):
        props = []
        for length in prlens:
            if length:
                props.append(data[off : off + length - 1])
                off += length - 1
            else:
                props.append(None)
    else:
        props = [None] * n
    if off != len(data) or (k and max(tidx) >= k) or (n and not k):
        raise ValueError("damaged backlog batch: lengths do not add up")
    return [
        Entry(s, topics[t], p, q, r == 1, priority, cr, ex, pr, None, in_db)
        for s, t, p, q, r, cr, ex, pr in zip(
            seqs, tidx, payloads, qos, retain, created, expires, props, strict=True
        )
    ]
