"""Stable message ids and the receiver-side duplicate filter.

Every message gets ``<store-uid>-<seq>``: the store's random 12-hex-digit id and
the message's sequence number in that store. It is stored with the message,
survives restarts, and is sent as the MQTT 5 user property ``fmq-id``. Over MQTT
3.1.1, which has no properties, set ``envelope=True`` on the client: the payload
is then prefixed with a small header that :func:`unwrap` removes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["ID_PROPERTY", "MAGIC", "Deduplicator", "unwrap", "wrap"]

ID_PROPERTY = "fmq-id"
MAGIC = b"\xf0FMQ1"


def wrap(message_id: str, payload: bytes) -> bytes:
    """Prefix ``payload`` with the envelope carrying ``message_id``."""
    mid = message_id.encode("ascii")
    if len(mid) > 255:
        raise ValueError("message id longer than 255 bytes")
    return MAGIC + bytes((len(mid),)) + mid + payload


def unwrap(payload: bytes) -> tuple[str | None, bytes]:
    """Split an enveloped payload into ``(message_id, payload)``; plain payloads give
    ``(None, payload)`` unchanged."""
    if not payload.startswith(MAGIC) or len(payload) < len(MAGIC) + 1:
        return None, payload
    n = payload[len(MAGIC)]
    start = len(MAGIC) + 1
    if len(payload) < start + n:
        return None, payload
    try:
        mid = payload[start : start + n].decode("ascii")
    except UnicodeDecodeError:
        return None, payload
    return mid, payload[start + n :]


class Deduplicator:
    """Remembers the last ``capacity`` message ids and tells whether one is new.

    ``seen(message_id)`` returns True for a duplicate. Thread-safe. Messages
    without an id (``None``) are never treated as duplicates.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.duplicates = 0

    def seen(self, message_id: str | None) -> bool:
        if message_id is None:
            return False
        with self._lock:
            if message_id in self._ids:
                self._ids.move_to_end(message_id)
                self.duplicates += 1
                return True
            self._ids[message_id] = None
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
            return False

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"Deduplicator(capacity={self.capacity}, remembered={len(self._ids)})"
