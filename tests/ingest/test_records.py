"""Decoding messages into rows: accepted shapes and every rejection reason."""

from __future__ import annotations

import json

import pytest

from fieldmq.ingest.records import Decoded, Rejected, decode_message, message_key

T = "fleet/dev-1/data/telemetry"


def ok(topic: str, payload: bytes, mid: str | None = "m-1") -> Decoded:
    d = decode_message(topic, payload, mid, 1000.0)
    assert isinstance(d, Decoded), d
    return d


def test_telemetry_object_becomes_one_reading_per_metric() -> None:
    """Metadata keys are skipped, null metrics skipped, ts taken from the payload."""
    d = ok(T, json.dumps({"device": "dev-1", "profile": "sensor", "tick": 3, "ts": 500.5,
                          "cpu": 12.5, "temp": 40, "rh": None}).encode())
    assert d.message.ts == 500.5 and d.message.device == "dev-1" and d.message.kind == "data"
    assert {(r.metric, r.value, r.ts) for r in d.readings} == {("cpu", 12.5, 500.5),
                                                              ("temp", 40.0, 500.5)}


def test_bare_number_is_a_reading_named_after_the_topic() -> None:
    """A number on data/<name> is one reading of <name> at the receive time."""
    d = ok("plant/pi-7/data/temperature", b"21.5")
    assert [(r.metric, r.value, r.ts) for r in d.readings] == [("temperature", 21.5, 1000.0)]


def test_millisecond_timestamps_are_converted() -> None:
    """A ts above 1e11 is taken as milliseconds."""
    assert ok(T, b'{"ts": 1700000000123, "cpu": 1}').message.ts == pytest.approx(1700000000.123)


def test_status_and_event_messages_have_no_readings() -> None:
    """Non-data topics are stored as messages; text payloads are kept as JSON strings."""
    d = ok("fleet/dev-1/status/health", b'{"ts": 5, "queued": 3}')
    assert d.readings == () and d.message.kind == "status" and d.message.ts == 5.0
    t = ok("fleet/dev-1/status/online", b"online")
    assert t.message.payload == '"online"'


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json {", "must be a JSON object or a number"),
        (b'"text"', "must be a JSON object or a number"),
        (b"[1, 2]", "must be a JSON object or a number"),
        (b'{"cpu": "high"}', "metric 'cpu' is str"),
        (b'{"cpu": true}', "metric 'cpu' is bool"),
        (b'{"cpu": {"a": 1}}', "metric 'cpu' is dict"),
        (b'{"ts": "yesterday", "cpu": 1}', "'ts' must be"),
        (b'{"ts": -5, "cpu": 1}', "'ts' must be"),
        (b'{"device": "other", "cpu": 1}', "differs from the topic"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"NaN", "must be a JSON object or a number"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    """Bad data payloads become Rejected rows saying why, never exceptions."""
    r = decode_message(T, payload, "m-9", 1000.0)
    assert isinstance(r, Rejected)
    assert reason in r.reason and r.message_id == "m-9" and r.topic == T


def test_huge_payload_is_rejected_and_truncated() -> None:
    """Payloads over max_payload are rejected; only 1024 characters are kept."""
    r = decode_message(T, b"1" * 5000, "m-1", 0.0, max_payload=4096)
    assert isinstance(r, Rejected)
    assert "5000 bytes is over the 4096-byte limit" in r.reason and len(r.payload) == 1024


def test_message_key_falls_back_to_a_content_hash() -> None:
    """Without a sender id, the key is a hash of topic and payload (stable, distinct)."""
    assert message_key("a/b", b"x", "id-1") == "id-1"
    h = message_key("a/b", b"x", None)
    assert h.startswith("h-") and h == message_key("a/b", b"x", None)
    assert h != message_key("a/b", b"y", None) != message_key("a/c", b"x", None)
