"""``Validate``: check the payload before the handler; an invalid message goes to the
dead-letter store at once (retrying cannot fix it) with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidMessage
from .message import RoutedMessage
from .middleware import Middleware

__all__ = ["Validate"]


class Validate(Middleware):
    """Call ``check(message)`` before each first attempt. It accepts the message by
    returning ``None`` or ``True``; it rejects it by returning ``False`` or a reason
    string, or by raising ``ValueError``/``TypeError``/``KeyError`` (a JSON decode error
    is a ``ValueError``). A rejected message raises :class:`InvalidMessage`."""

    def __init__(self, check: Callable[[RoutedMessage], Any]) -> None:
        if not callable(check):
            raise TypeError(f"Validate needs a callable, got {check!r}")
        self.check = check

    def before_process(self, message: RoutedMessage) -> None:
        if message.attempt > 1:
            return
        try:
            verdict = self.check(message)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidMessage(f"invalid payload: {type(exc).__name__}: {exc}") from exc
        if verdict is None or verdict is True:
            return
        reason = verdict if isinstance(verdict, str) else "rejected by the validation hook"
        raise InvalidMessage(f"invalid payload: {reason}")

    def __repr__(self) -> str:
        return f"Validate({getattr(self.check, '__qualname__', self.check)!r})"
