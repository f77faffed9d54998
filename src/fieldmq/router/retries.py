"""``Retries``: retry a failed attempt after a backoff, then give up (dead letter).

The decision is pure (:meth:`Retries.retry_delay`); the worker waits the delay while
holding the message unacknowledged, so a worker killed during the wait loses nothing
(the broker redelivers it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..backoff import Backoff
from .errors import InvalidMessage, Skip
from .message import RoutedMessage
from .middleware import Middleware

__all__ = ["Retries"]

_DEFAULT_BACKOFF = Backoff(initial=0.1, maximum=30.0, factor=2.0, jitter=True)


class Retries(Middleware):
    """Retry up to ``max_retries`` times (so ``max_retries + 1`` attempts) with the
    ``backoff`` schedule (retry ``n`` waits ``backoff.delay(n - 1)``). Only exceptions
    that are instances of ``retry_on`` are retried, and only when ``retry_when(attempt,
    exc)`` (if given) agrees. :class:`InvalidMessage` and :class:`Skip` never are."""

    def __init__(
        self,
        *,
        max_retries: int = 3,
        backoff: Backoff = _DEFAULT_BACKOFF,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        retry_when: Callable[[int, BaseException], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"Retries.max_retries must be an int >= 0, got {max_retries!r}")
        if not isinstance(backoff, Backoff):
            raise TypeError(f"Retries.backoff must be a fieldmq.Backoff, got {backoff!r}")
        self.max_retries = max_retries
        self.backoff = backoff
        self.retry_on = retry_on
        self.retry_when = retry_when
        self._rng = rng or random.Random()

    def retry_delay(self, attempt: int, exception: BaseException) -> float | None:
        """Seconds to wait before the next attempt after attempt ``attempt`` (1-based)
        failed with ``exception``, or ``None`` to give up."""
        if isinstance(exception, (InvalidMessage, Skip)):
            return None
        if not isinstance(exception, self.retry_on):
            return None
        if attempt > self.max_retries:
            return None
        if self.retry_when is not None and not self.retry_when(attempt, exception):
            return None
        return self.backoff.delay(attempt - 1, self._rng)

    def after_process(
        self,
        message: RoutedMessage,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        delay = self.retry_delay(message.attempt, exception)
        if delay is not None:
            message.options["retry_in"] = delay

    def __repr__(self) -> str:
        return f"Retries(max_retries={self.max_retries}, backoff={self.backoff!r})"
