"""A message received on a subscription."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """A received message. ``payload`` is the exact bytes sent (the fieldmq envelope,
    if any, removed); ``message_id`` is the sender's stable id when it sent one."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    message_id: str | None = None
    user_properties: tuple[tuple[str, str], ...] = field(default=())
    _acker: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    duplicate: bool = False

    def ack(self) -> None:
        """Acknowledge this message to the broker (clients with ``ack="manual"``).

        Until it is acknowledged, the broker keeps it and redelivers it after a
        reconnect. Calling ``ack()`` twice, or for QoS 0, does nothing."""
        acker = self._acker
        if acker is not None:
            object.__setattr__(self, "_acker", None)
            acker()

    def text(self, encoding: str = "utf-8") -> str:
        return self.payload.decode(encoding)

    def json(self) -> Any:
        """The payload parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.payload)
