"""What ``publish()`` returns: a handle that tells queued, sent, acked and
dropped (with the reason) apart, and waits for the outcome or for durability."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import PublishDropped, PublishExpired

if TYPE_CHECKING:
    from ..store.queue import DurableQueue

__all__ = ["ACKED", "DROPPED", "EXPIRED", "QUEUED", "SENT", "BatchHandle", "PublishHandle"]

QUEUED = "queued"
SENT = "sent"
ACKED = "acked"
DROPPED = "dropped"
EXPIRED = "expired"
_FINAL = frozenset((ACKED, DROPPED, EXPIRED))
_EVENT_LOCK = threading.Lock()


class PublishHandle:
    """The fate of one published message.

    ``status`` is ``"queued"`` (stored, not yet sent), ``"sent"`` (handed to the
    broker, not acknowledged), ``"acked"``, ``"dropped"`` or ``"expired"``; ``reason``
    says why a message was dropped (``"evicted"``, ``"offline"``, ``"broker:..."``).
    ``message_id`` is the stable id receivers use to drop duplicates.
    """

    __slots__ = ("__weakref__", "_event", "_queue", "message_id", "reason", "seq", "status")

    def __init__(self, queue: DurableQueue | None, message_id: str, seq: int = 0) -> None:
        self._queue = queue
        self.message_id = message_id
        self.seq = seq
        self.status = QUEUED
        self.reason: str | None = None
        self._event: threading.Event | None = None

    @property
    def done(self) -> bool:
        """True once the message was acknowledged, dropped or expired."""
        return self.status in _FINAL

    @property
    def durable(self) -> bool:
        """True once the message survives a power cut (fsync'd), or was acknowledged."""
        q = self._queue
        return self.status == ACKED or (q is not None and q.durable_seq >= self.seq)

    def settle(self, status: str, reason: str | None) -> None:
        """Record the outcome (called by fieldmq, not by users)."""
        self.reason = reason
        self.status = status
        ev = self._event
        if ev is not None:
            ev.set()

    def mark_sent(self) -> None:
        if self.status == QUEUED:
            self.status = SENT

    def wait(self, timeout: float | None = None) -> None:
        """Block until the broker acknowledged the message.

        Raises :class:`~fieldmq.PublishDropped` / :class:`~fieldmq.PublishExpired`
        with the reason when it will never be delivered, and ``TimeoutError`` when
        ``timeout`` seconds pass first (the message stays queued).
        """
        if self.status not in _FINAL:
            with _EVENT_LOCK:
                if self._event is None:
                    self._event = threading.Event()
                ev = self._event
            if self.status not in _FINAL and not ev.wait(timeout):
                raise TimeoutError(
                    f"message {self.message_id} not acknowledged within {timeout} s "
                    f"(status {self.status}); it stays queued"
                )
        if self.status == DROPPED:
            raise PublishDropped(
                f"message {self.message_id} was dropped: {self.reason}",
                reason=self.reason or "dropped", message_id=self.message_id,
            )
        if self.status == EXPIRED:
            raise PublishExpired(
                f"message {self.message_id} expired before the broker acknowledged it",
                reason="expired", message_id=self.message_id,
            )

    def wait_durable(self, timeout: float | None = None) -> bool:
        """Block until the message survives a power cut; False on timeout."""
        if self.durable or self._queue is None:
            return True
        return self._queue.wait_durable(self.seq, timeout) or self.status == ACKED

    def __repr__(self) -> str:
        extra = f", reason={self.reason!r}" if self.reason else ""
        return f"PublishHandle(id={self.message_id!r}, status={self.status!r}{extra})"


class BatchHandle(PublishHandle):
    """The fate of a batch from ``publish_many()``: done when every message is.

    ``counts`` gives the number of messages per status; ``wait()`` raises
    :class:`~fieldmq.PublishDropped` if any message was dropped or expired.
    """

    __slots__ = ("_outcomes", "_remaining", "first_seq", "size")

    def __init__(self, queue: DurableQueue | None, message_id: str, seq: int, size: int) -> None:
        super().__init__(queue, message_id, seq)
        self.first_seq = seq
        self.size = size
        self._remaining = size
        self._outcomes: Counter[str] = Counter()

    def settle(self, status: str, reason: str | None) -> None:
        with _EVENT_LOCK:
            self._outcomes[status if status == ACKED else f"{status}:{reason}"] += 1
            self._remaining -= 1
            done = self._remaining <= 0
        if done:
            failed = [k for k in self._outcomes if k != ACKED]
            if failed:
                super().settle(DROPPED, ", ".join(sorted(failed)))
            else:
                super().settle(ACKED, None)

    def settle_empty(self) -> None:
        """An empty batch is complete at once."""
        self._remaining = 0
        super().settle(ACKED, None)

    @property
    def counts(self) -> dict[str, int]:
        """Messages per outcome so far, e.g. ``{"acked": 98, "dropped:evicted": 2}``."""
        with _EVENT_LOCK:
            out = dict(self._outcomes)
            out["pending"] = self._remaining
        return out

    def __repr__(self) -> str:
        return f"BatchHandle(size={self.size}, status={self.status!r}, counts={self.counts})"
