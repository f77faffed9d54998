"""The message a route handler receives."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["RoutedMessage"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True, eq=False)
class RoutedMessage:
    """A received message on its way through middleware to a handler.

    ``topic``, ``payload`` (exact bytes), ``qos``, ``retain``, ``message_id`` (the
    sender's stable id when it sent one), ``duplicate`` (the MQTT DUP flag) and
    ``params`` (what the route pattern captured) describe the message. ``route`` is
    the pattern that matched; ``attempt`` counts from 1 and grows with each retry;
    ``options`` is a scratch dictionary for middleware (e.g. a retry delay).
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    message_id: str | None = None
    duplicate: bool = False
    params: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    route: str = ""
    attempt: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    user_properties: tuple[tuple[str, str], ...] = ()
    _ack: Callable[[], None] | None = field(default=None, repr=False)

    def json(self) -> Any:
        """The payload parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.payload)

    def text(self, encoding: str = "utf-8") -> str:
        return self.payload.decode(encoding)

    def __repr__(self) -> str:
        return (
            f"RoutedMessage(topic={self.topic!r}, route={self.route!r}, "
            f"params={dict(self.params)!r}, "
            f"qos={self.qos}, attempt={self.attempt}, payload={len(self.payload)} bytes)"
        )
