"""What ingest stores, and how one MQTT message becomes rows. Pure: no I/O.

A message becomes one :class:`MessageRow` (every accepted message: telemetry, status and
events alike) plus one :class:`Reading` per numeric metric of a ``data`` message; or, when
it cannot be used, one :class:`Rejected` row with the reason. Rejection never raises.

Rules for ``<group>/<device>/data/<name>`` payloads (decoded with the fieldmq codec):

* a JSON object: every key except the metadata keys (:data:`META_KEYS`) is a metric whose
  value must be a number (``null`` means "not measured" and is skipped); ``ts`` if present
  must be a finite number of Unix seconds (milliseconds above ``1e11`` are converted);
* a bare number: one reading whose metric is the topic's ``<name>``;
* anything else (not JSON, a string, a list, a bool or string metric, a NaN) is rejected.

Other topics (status, events, topics outside the convention) are stored as messages
without readings; their payload must be UTF-8 text. Every payload over ``max_payload``
bytes is rejected. A stored ``payload`` is the received JSON text as it came (text that
is not JSON is stored as a JSON string).

A message's key is its sender's stable id (``Message.message_id``); a message without one
(a plain MQTT publisher) gets ``"h-" + sha256(topic, payload)`` so an exact redelivery
is still recognised.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_PAYLOAD",
    "META_KEYS",
    "Alert",
    "Batch",
    "Decoded",
    "MessageRow",
    "Reading",
    "Rejected",
    "decode_message",
    "message_key",
    "split_topic",
    "unique_readings",
]

MAX_PAYLOAD = 64 * 1024
META_KEYS = frozenset({"device", "profile", "tick", "ts", "seq", "anomaly", "id"})
_REJECTED_PAYLOAD_CHARS = 1024


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One stored message. ``ts`` is the device's timestamp (the payload's ``ts``), or
    the time ingest received it; ``payload`` is JSON text."""

    message_id: str
    topic: str
    group: str
    device: str
    kind: str
    name: str
    ts: float
    received: float
    payload: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One numeric value of one metric of one device at ``ts``."""

    message_id: str
    device: str
    metric: str
    ts: float
    value: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be stored as data, with the reason (kept for inspection;
    ``payload`` is its first 1024 characters, bytes shown as Python escapes, NUL as
    ``\\x00``)."""

    message_id: str
    topic: str
    received: float
    reason: str
    payload: str


@dataclass(frozen=True, slots=True)
class Alert:
    """An anomaly found by a detector on ``device``'s ``metric`` at the reading ``ts``."""

    alert_id: str
    group: str
    device: str
    metric: str
    ts: float
    value: float | None
    detector: str
    score: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "group": self.group, "device": self.device,
            "metric": self.metric, "ts": self.ts, "value": self.value,
            "detector": self.detector, "score": self.score, "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Decoded:
    """A usable message: its row and its readings (empty for non-data messages)."""

    message: MessageRow
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """What one commit writes: messages, their readings, rejected messages and alerts.
    Sinks insert each row at most once (by its key) and fold the readings they actually
    inserted into the rollups."""

    messages: tuple[MessageRow, ...] = ()
    readings: tuple[Reading, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    alerts: tuple[Alert, ...] = ()

    def __len__(self) -> int:
        return len(self.messages) + len(self.rejected) + len(self.alerts)


def unique_readings(readings: Iterable[Reading], inserted: Container[str]) -> list[Reading]:
    """The readings of the ``inserted`` messages, each ``(message_id, metric)`` once."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in readings:
        key = (r.message_id, r.metric)
        if r.message_id in inserted and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def message_key(topic: str, payload: bytes, message_id: str | None) -> str:
    """The row key of a message: the sender's id, or a hash of topic and payload."""
    if message_id:
        return message_id
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass") + b"\0" + payload)
    return "h-" + digest.hexdigest()[:32]


def split_topic(topic: str) -> tuple[str, str, str, str]:
    """``(group, device, kind, name)`` of a topic, best effort for topics outside the
    ``<group>/<device>/<kind>/<name>`` convention (missing parts are ``""``)."""
    parts = topic.split("/", 3)
    parts += [""] * (4 - len(parts))
    return parts[0], parts[1], parts[2], parts[3]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return f if math.isfinite(f) else None


def _show(payload: bytes) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(payload)
    # NUL is shown escaped: PostgreSQL text cannot hold it (a batch would never commit)
    return text.replace("\0", "\\x00")[:_REJECTED_PAYLOAD_CHARS]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _timestamp(value: object, received: float) -> float | str:
    if value is None:
        return received
    ts = _number(value)
    if ts is None or ts < 0:
        return f"'ts' must be a finite, non-negative number of seconds, got {value!r:.60}"
    return ts / 1000.0 if ts > 1e11 else ts


def decode_message(
    topic: str,
    payload: bytes,
    message_id: str | None,
    received: float,
    *,
    max_payload: int = MAX_PAYLOAD,
) -> Decoded | Rejected:
    """The rows for one received message, or why it is rejected."""
    key = message_key(topic, payload, message_id)

    def reject(reason: str) -> Rejected:
        return Rejected(key, topic, received, reason, _show(payload))

    if len(payload) > max_payload:
        return reject(f"payload of {len(payload)} bytes is over the {max_payload}-byte limit")
    group, device, kind, name = split_topic(topic)
    try:
        decoded = payload.decode("utf-8")
    except UnicodeDecodeError:
        return reject("payload is not UTF-8 text (binary payloads are not ingested)")
    value: Any
    text: str | None = decoded  # stored as received when it is JSON
    try:  # the fieldmq codec's rule: JSON (no NaN or infinity), else the text itself
        value = json.loads(decoded, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for Python
        value, text = decoded, None
    readings: list[Reading] = []
    ts: float | str = received
    if kind == "data" and device:
        if isinstance(value, dict):
            if isinstance(value.get("device"), str) and value["device"] != device:
                return reject(f"payload device {value['device']!r:.60} differs from the topic's")
            ts = _timestamp(value.get("ts"), received)
            if isinstance(ts, str):
                return reject(ts)
            for metric, raw in value.items():
                if metric in META_KEYS or raw is None:
                    continue
                number = _number(raw)
                if number is None:
                    return reject(
                        f"metric {metric!r:.60} is {type(raw).__name__} {raw!r:.40}, "
                        "expected a finite number or null"
                    )
                readings.append(Reading(key, device, metric, ts, number))
        else:
            number = _number(value)
            if number is None:
                return reject(
                    f"a data payload must be a JSON object or a number, got {type(value).__name__}"
                )
            readings.append(Reading(key, device, name, received, number))
    elif isinstance(value, dict):
        ts = _timestamp(value.get("ts"), received)
    if isinstance(ts, str):
        ts = received
    if text is None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    row = MessageRow(key, topic, group, device, kind, name, ts, received, text)
    return Decoded(row, tuple(readings))
