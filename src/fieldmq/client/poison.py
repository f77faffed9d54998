"""Finding a message the broker closes the connection on. Pure decisions, no I/O.

A connection lost before the broker acknowledged anything while several messages were
in flight makes the client cautious until that many messages were acknowledged: each
connection then starts by sending one message alone and opens the window by one per
acknowledgement (slow start), so a loss before any ack points at exactly one message.
A message that was the only one in flight on ``POISON_AFTER`` consecutive such losses is
taken for the cause (a broker that closes the connection on it, e.g. NATS on a topic
with '.') and is dead-lettered, so it cannot block the messages behind it.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

__all__ = ["POISON_AFTER", "POISON_REASON", "PoisonDetector"]

POISON_AFTER = 3
POISON_REASON = "broker:closed the connection on this message"


class _HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


E = TypeVar("E", bound=_HasSeq)


class PoisonDetector(Generic[E]):
    """State across connections: how cautious to be, and which message is suspected."""

    def __init__(self, after: int = POISON_AFTER) -> None:
        self.after = after
        self.cautious = 0  # acks still to see before the window opens fully again
        self.suspect_seq = 0
        self.suspect_losses = 0

    def window(self, configured: int, acks_on_connection: int) -> int:
        """How many messages may be in flight now."""
        if self.cautious > 0:
            return min(configured, 1 + acks_on_connection)
        return configured

    def acked(self) -> None:
        if self.cautious:
            self.cautious -= 1

    def connection_lost(self, acks_on_connection: int, in_flight: list[E]) -> E | None:
        """The connection was lost; returns the message to dead-letter, if one is found."""
        if acks_on_connection:
            self.suspect_seq = self.suspect_losses = 0
            return None
        if len(in_flight) != 1:
            # Several messages and no ack: any of them may be the cause.
            self.cautious = max(self.cautious, len(in_flight))
            return None
        e = in_flight[0]
        if e.seq == self.suspect_seq:
            self.suspect_losses += 1
        else:
            self.suspect_seq, self.suspect_losses = e.seq, 1
        if self.suspect_losses >= self.after:
            self.suspect_seq = self.suspect_losses = 0
            self.cautious = max(0, self.cautious - 1)
            return e
        return None
