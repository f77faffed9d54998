"""Run one message through its route: middleware, handler, retries, dead letter.

Used by the worker processes and by :class:`fieldmq.router.testing.StubBroker`, so a
unit test of a route exercises exactly the code that runs in production. No broker
I/O here: the caller acknowledges the message when :meth:`Dispatcher.process` returns
an outcome other than ``ABANDONED``.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from .errors import InvalidMessage, Skip, TimeLimitExceeded
from .message import RoutedMessage
from .middleware import run_after, run_before, run_hook
from .routes import Route
from .timelimit import Alarm

__all__ = ["AsyncRunner", "Dispatcher", "Outcome", "Result"]

log = logging.getLogger("fieldmq.router")


class Outcome(enum.Enum):
    """What happened to a message. All but ``ABANDONED`` are acknowledged."""

    HANDLED = "handled"
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"
    ABANDONED = "abandoned"  # stopping mid-retry or the dead-letter store failed: redelivered
    RETRIED = "retried"  # only told to observers: an attempt failed and will be retried


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    attempts: int
    seconds: float
    error: BaseException | None = None


class AsyncRunner:
    """One event loop on a named daemon thread, for ``async def`` handlers."""

    def __init__(self, name: str = "fieldmq-asyncio") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[Any], time_limit: float | None) -> Any:
        async def guarded() -> Any:
            if time_limit is None:
                return await awaitable
            try:
                return await asyncio.wait_for(awaitable, time_limit)
            except TimeoutError:
                raise TimeLimitExceeded(f"exceeded the time limit of {time_limit:g} s") from None

        future = asyncio.run_coroutine_threadsafe(guarded(), self._loop)
        try:
            return future.result()
        except FutureTimeout:  # pragma: no cover - result() without timeout never times out
            raise
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop.close()


DeadLetterSink = Callable[[RoutedMessage, BaseException, str], None]
Observer = Callable[[Route, Result], None]


def describe_error(exc: BaseException) -> str:
    """``Type: message`` and the traceback, for the dead-letter store."""
    return "".join(traceback.format_exception(exc)).strip()


class Dispatcher:
    """Process messages for ``routes`` of a router.

    ``dead_letter(message, exc, error_text)`` stores a message that exhausted its
    attempts (raise to refuse: the message is then not acknowledged). ``wait(seconds)``
    waits before a retry and returns ``False`` when the worker is stopping (the message
    is then abandoned, unacknowledged, and redelivered later). ``observe(route,
    result)`` is told every outcome (metrics).
    """

    def __init__(
        self,
        *,
        dead_letter: DeadLetterSink,
        wait: Callable[[float], bool],
        observe: Observer | None = None,
        runner: AsyncRunner | None = None,
        alarm: Alarm | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._dead_letter = dead_letter
        self._wait = wait
        self._observe = observe
        self._runner = runner
        self._alarm = alarm
        self._clock = clock

    def _runner_(self) -> AsyncRunner:
        if self._runner is None:
            self._runner = AsyncRunner()
        return self._runner

    def _alarm_(self) -> Alarm:
        if self._alarm is None:
            self._alarm = Alarm()
        return self._alarm

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        if self._alarm is not None:
            self._alarm.close()

    def _call(self, route: Route, message: RoutedMessage) -> Any:
        params = message.params
        kwargs = {n: params[n] for n in route.passes} if route.passes else {}
        limit = message.options.get("time_limit") if message.options else None
        if route.is_async:
            coro: Coroutine[Any, Any, Any] = route.handler(message, **kwargs)
            return self._runner_().run(coro, limit)
        if limit is None:
            result = route.handler(message, **kwargs)
        else:
            token = self._alarm_().arm(limit)
            try:
                result = route.handler(message, **kwargs)
            finally:
                self._alarm_().disarm(token)
        if result is not None and inspect.isawaitable(result):
            return self._runner_().run(result, limit)
        return result

    def process(self, route: Route, message: RoutedMessage) -> Result:
        """Handle ``message`` on ``route`` until it is handled, skipped, dead-lettered
        or abandoned."""
        started = self._clock()
        mws = route.middleware
        message.route = route.pattern.source
        while True:
            result: Any = None
            exc: BaseException | None
            count = 0
            try:
                if mws:
                    count, exc = run_before(mws, message)
                else:
                    exc = None
                if exc is None:
                    try:
                        result = self._call(route, message)
                    except Exception as e:
                        exc = e
                if mws:
                    exc = run_after(mws, count, message, result, exc)
            except TimeLimitExceeded as late:  # fired between the handler and its disarm
                exc = late
            if exc is None:
                return self._done(route, Result(Outcome.HANDLED, message.attempt,
                                                self._clock() - started))
            if isinstance(exc, Skip):
                reason = str(exc) or "skipped"
                run_hook(mws, "after_skip",
                         lambda mw, why=reason: mw.after_skip(message, why))  # type: ignore[misc]
                return self._done(route, Result(Outcome.SKIPPED, message.attempt,
                                                self._clock() - started, exc))
            delay = message.options.pop("retry_in", None)
            if delay is not None and not isinstance(exc, InvalidMessage):
                log.warning("route %s: attempt %d on %s failed (%s: %s); retrying in %.3f s",
                            message.route, message.attempt, message.topic,
                            type(exc).__name__, exc, delay)
                self._count_retry(route)
                if not self._wait(float(delay)):
                    return self._done(route, Result(Outcome.ABANDONED, message.attempt,
                                                    self._clock() - started, exc))
                message.attempt += 1
                continue
            return self._give_up(route, message, exc, started)

    def _give_up(
        self, route: Route, message: RoutedMessage, exc: BaseException, started: float
    ) -> Result:
        text = describe_error(exc)
        log.error("route %s: %s dead-lettered after %d attempt(s): %s: %s", message.route,
                  message.topic, message.attempt, type(exc).__name__, exc,
                  exc_info=None if isinstance(exc, InvalidMessage) else exc)
        try:
            self._dead_letter(message, exc, text)
        except Exception:
            log.exception("route %s: could not dead-letter %s; it stays unacknowledged and "
                          "will be redelivered", message.route, message.topic)
            return self._done(route, Result(Outcome.ABANDONED, message.attempt,
                                            self._clock() - started, exc))
        run_hook(route.middleware, "after_dead_letter",
                 lambda mw: mw.after_dead_letter(message, exc))
        return self._done(route, Result(Outcome.DEAD_LETTERED, message.attempt,
                                        self._clock() - started, exc))

    def _count_retry(self, route: Route) -> None:
        if self._observe is not None:
            self._observe(route, Result(Outcome.RETRIED, 0, 0.0))

    def _done(self, route: Route, result: Result) -> Result:
        if self._observe is not None:
            self._observe(route, result)
        return result
