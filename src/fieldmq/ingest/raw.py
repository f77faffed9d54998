"""Batches for sinks that expand payloads in their database engine. Pure: no I/O.

Decoding JSON and checking every metric in Python costs tens of microseconds a message.
A sink with ``write_raw`` (DuckDB, PostgreSQL, Parquet) takes the payloads as text
instead and expands them into messages, readings and rollups with SQL, in the engine.

The engine only expands what it can vouch for. :func:`raw_batch` sends to it the
*candidates*: payloads of at most ``max_payload`` bytes of UTF-8 text that start with
``{`` and hold no backslash and no NUL (so no escapes: keys and strings are literal). The
sink then keeps a candidate only if it is a JSON object of scalar values with distinct
keys, every number finite, no comma before a closing bracket (some engines accept
trailing commas, Python does not), and, on a data topic, numeric or null metrics, a
``ts`` that is absent, null or a non-negative number, and a ``device`` that is not a
different string than the topic's. Everything else (rare: bad payloads, bare numbers,
text, escapes) is decided by :func:`~fieldmq.ingest.records.decode_message`, the same
rules and rejection reasons as the Python path, via :meth:`RawBatch.decode`, and written
in the same transaction. Both paths store the same rows: the contract suite checks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .records import META_KEYS, Batch, Decoded, Rejected, decode_message, message_key

__all__ = ["META_SQL", "RawBatch", "merge", "raw_batch"]

# the metadata keys as an SQL list literal (DuckDB and PostgreSQL alike)
META_SQL = "(" + ", ".join(f"'{k}'" for k in sorted(META_KEYS)) + ")"


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One batch of received messages: ``keys``/``topics``/``texts`` are the candidates
    for expansion in the engine (same length), ``sources`` their ``(topic, payload,
    message_id)``; ``rest`` is what Python decoded (the other messages). ``rejected``
    collects every rejection decided in Python, for the log."""

    keys: list[str]
    topics: list[str]
    texts: list[str]
    received: float
    max_payload: int
    sources: list[tuple[str, bytes, str | None]] = field(repr=False)
    rest: Batch = field(default_factory=Batch)
    rejected: list[Rejected] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        """Messages in the batch (candidates and the rest, rejected ones included)."""
        return len(self.keys) + len(self.rest.messages) + len(self.rest.rejected)

    def decode(self, indexes: Iterable[int]) -> Batch:
        """The Python verdict on the candidates at ``indexes`` (those the engine did not
        vouch for): their rows, readings and rejections."""
        rows = [decode_message(*self.sources[i], self.received, max_payload=self.max_payload)
                for i in indexes]
        batch = _batch(rows)
        self.rejected.extend(batch.rejected)
        return batch


def _batch(rows: Sequence[Decoded | Rejected]) -> Batch:
    decoded = [d for d in rows if isinstance(d, Decoded)]
    return Batch(
        messages=tuple(d.message for d in decoded),
        readings=tuple(r for d in decoded for r in d.readings),
        rejected=tuple(r for r in rows if isinstance(r, Rejected)),
    )


def merge(first: Batch, second: Batch) -> Batch:
    """Both batches' rows, in one."""
    return Batch(first.messages + second.messages, first.readings + second.readings,
                 first.rejected + second.rejected, first.alerts + second.alerts)


def raw_batch(
    messages: Iterable[tuple[str, bytes, str | None]], received: float, max_payload: int
) -> RawBatch:
    """Split ``(topic, payload, message_id)`` triples into engine candidates and the
    rest (decoded here); see the module docstring."""
    keys: list[str] = []
    topics: list[str] = []
    texts: list[str] = []
    sources: list[tuple[str, bytes, str | None]] = []
    others: list[Decoded | Rejected] = []
    for topic, payload, mid in messages:
        if (payload[:1] == b"{" and len(payload) <= max_payload and b"\\" not in payload
                and b"\0" not in payload):
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                keys.append(mid or message_key(topic, payload, None))
                topics.append(topic)
                texts.append(text)
                sources.append((topic, payload, mid))
                continue
        others.append(decode_message(topic, payload, mid, received, max_payload=max_payload))
    rest = _batch(others)
    return RawBatch(keys, topics, texts, received, max_payload, sources, rest,
                    list(rest.rejected))
