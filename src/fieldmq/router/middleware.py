"""Middleware: classes with no-op hooks, run in order (``before_*``) and in reverse
(``after_*``), as in dramatiq.

Hooks of one message, for middleware ``[a, b, c]`` (router, then group, then route):

``a.before_process, b.before_process, c.before_process, handler,
c.after_process, b.after_process, a.after_process``

* If a ``before_process`` raises, the later ``before_process`` hooks and the handler
  do not run; the ``after_process`` hooks of the middleware that already ran (and of
  the failing one) run in reverse with that exception: the attempt failed.
* If an ``after_process`` raises, it is logged with its traceback, the remaining
  ``after_process`` hooks still run, and the attempt counts as failed with that
  exception (retried or dead-lettered): a failing hook is never swallowed.
* ``after_skip`` runs (in reverse) when the message was skipped (:class:`Skip`),
  ``after_dead_letter`` when it was dead-lettered.
* ``before_worker_boot``/``after_worker_shutdown`` run once per worker process.

The hooks run on the worker thread that handles the message; keep them quick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .message import RoutedMessage

__all__ = ["Middleware", "run_after", "run_before"]

log = logging.getLogger("fieldmq.router")


class Middleware:
    """Base class: override the hooks you need. Every hook is a no-op here."""

    def before_worker_boot(self, worker: Any) -> None:
        """Once per worker process, before it takes messages."""

    def after_worker_shutdown(self, worker: Any) -> None:
        """Once per worker process, after it stopped."""

    def before_process(self, message: RoutedMessage) -> None:
        """Before each attempt. Raise :class:`Skip` to skip, anything else to fail."""

    def after_process(
        self,
        message: RoutedMessage,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """After each attempt, with the handler's result or the exception."""

    def after_skip(self, message: RoutedMessage, reason: str) -> None:
        """After a message was acknowledged without being handled."""

    def after_dead_letter(self, message: RoutedMessage, exception: BaseException) -> None:
        """After a message was moved to the dead-letter store."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def run_before(
    middleware: Sequence[Middleware], message: RoutedMessage
) -> tuple[int, BaseException | None]:
    """Run ``before_process`` in order. Returns how many ran (the failing one
    included) and the exception that stopped the chain, if any."""
    for i, mw in enumerate(middleware):
        try:
            mw.before_process(message)
        except Exception as exc:
            from .errors import HandlingError

            if not isinstance(exc, HandlingError):
                log.exception("middleware %r before_process failed on %s", mw, message.topic)
            return i + 1, exc
    return len(middleware), None


def run_after(
    middleware: Sequence[Middleware],
    count: int,
    message: RoutedMessage,
    result: Any,
    exception: BaseException | None,
) -> BaseException | None:
    """Run ``after_process`` of the first ``count`` middleware in reverse. Returns the
    exception of the attempt: ``exception``, or the first hook failure."""
    outcome = exception
    for mw in reversed(middleware[:count]):
        try:
            mw.after_process(message, result=result, exception=outcome)
        except Exception as exc:
            log.exception("middleware %r after_process failed on %s", mw, message.topic)
            if outcome is None:
                outcome = exc
    return outcome


def run_hook(
    middleware: Sequence[Middleware], name: str, call: Callable[[Middleware], None]
) -> None:
    """Run a notification hook (``after_skip``...) in reverse; failures are logged."""
    for mw in reversed(middleware):
        try:
            call(mw)
        except Exception:
            log.exception("middleware %r %s failed", mw, name)
