"""Checks and conversions of ``publish()`` arguments, shared by ``publish`` and
``publish_many``. Pure functions (plus a bounded cache of topics already checked)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from ..topics import validate_topic

__all__ = [
    "MAX_PAYLOAD",
    "check_priority",
    "check_qos",
    "check_topic",
    "check_ttl",
    "encode_props",
    "plain_pairs",
    "to_bytes",
    "topic_bytes",
]

MAX_PAYLOAD = 268_435_455 - 65_535 - 16  # what fits in one MQTT packet

_FORBIDDEN = re.compile("[\x01-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")


def check_topic(topic: object) -> None:
    """A topic name a broker accepts: on top of ``validate_topic``, no control characters
    or Unicode non-characters, which MQTT says SHOULD NOT appear and which brokers such
    as mosquitto answer by closing the connection (MQTT 5 section 1.5.4)."""
    validate_topic(topic)
    assert isinstance(topic, str)
    found = _FORBIDDEN.search(topic)
    ch = found.group() if found else None
    if ch is None and not topic.isascii():
        ch = next((c for c in topic if (ord(c) & 0xFFFE) == 0xFFFE), None)
    if ch is not None:
        raise ValueError(
            f"topic {topic!r} contains U+{ord(ch):04X} (a control character or Unicode "
            "non-character), which brokers refuse"
        )


_TOPIC_BYTES: dict[str, bytes] = {}  # topics that passed check_topic, UTF-8 encoded


def topic_bytes(topic: object) -> bytes:
    """``topic`` checked by :func:`check_topic` and encoded. Devices publish to a few
    topics over and over: a topic seen before is looked up, not checked again."""
    b = _TOPIC_BYTES.get(topic) if type(topic) is str else None
    if b is None:
        check_topic(topic)
        assert isinstance(topic, str)
        b = topic.encode()
        if len(_TOPIC_BYTES) >= 4096:
            _TOPIC_BYTES.clear()
        _TOPIC_BYTES[topic] = b
    return b


def plain_pairs(items: Sequence[object]) -> tuple[list[str], list[bytes], int] | None:
    """The common ``publish_many()`` input checked at C speed: ``(topic, payload)`` tuples
    of known topics (see :func:`topic_bytes`) and ``bytes`` payloads. Gives the topics,
    the payloads and their size in bytes, or None when any item needs the per-item path
    (which also names the item that is wrong)."""
    if not all([type(m) is tuple and len(m) == 2 for m in items]):
        return None
    topics: list[str] = [m[0] for m in items]  # type: ignore[index]
    payloads: list[bytes] = [m[1] for m in items]  # type: ignore[index]
    if not all([type(t) is str for t in topics]) or not all([type(p) is bytes for p in payloads]):
        return None
    get = _TOPIC_BYTES.get
    try:  # a topic is never empty, so a cache miss is the only falsy value
        encoded = [get(t) or topic_bytes(t) for t in topics]
    except (ValueError, TypeError):
        return None
    lengths = [len(p) for p in payloads]
    if max(lengths) > MAX_PAYLOAD:
        return None
    return topics, payloads, sum(lengths) + sum([len(b) for b in encoded])


def to_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if payload is None:
        return b""
    raise TypeError(
        f"payload must be bytes, bytearray, memoryview or str, got {type(payload).__name__}; "
        "encode other values yourself (e.g. json.dumps(value))"
    )


def check_qos(qos: object) -> int:
    if isinstance(qos, bool) or not isinstance(qos, int) or qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
    return qos


def check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise ValueError(
            f"priority must be an int from 1 (lowest) to 10 (highest), got {priority!r}"
        )
    return priority


def check_ttl(ttl: object) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
    return float(ttl)


def encode_props(props: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> bytes | None:
    if props is None:
        return None
    pairs = list(props.items()) if isinstance(props, Mapping) else list(props)
    for pair in pairs:
        if (
            not isinstance(pair, tuple) or len(pair) != 2
            or not all(isinstance(x, str) for x in pair)
        ):
            raise TypeError(f"user_properties must map str to str, got {pair!r}")
    return json.dumps(pairs).encode()
