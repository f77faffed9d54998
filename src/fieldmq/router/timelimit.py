"""``TimeLimit``: stop a handler that runs too long.

An ``async def`` handler is cancelled (``asyncio.wait_for``). A plain function is
interrupted the way dramatiq does it: :class:`TimeLimitExceeded` is raised in its
thread asynchronously, which takes effect at the next Python bytecode (a C call
that blocks, e.g. a socket read without a timeout, is interrupted when it returns).
The attempt then fails like any other and is retried or dead-lettered.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import threading
import time

from .errors import TimeLimitExceeded
from .message import RoutedMessage
from .middleware import Middleware

__all__ = ["Alarm", "TimeLimit"]

log = logging.getLogger("fieldmq.router")


class TimeLimit(Middleware):
    """Limit each attempt to ``seconds`` (the smallest of several limits wins)."""

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"TimeLimit.seconds must be a positive number, got {seconds!r}")
        self.seconds = float(seconds)

    def before_process(self, message: RoutedMessage) -> None:
        current = message.options.get("time_limit")
        if current is None or self.seconds < current:
            message.options["time_limit"] = self.seconds

    def __repr__(self) -> str:
        return f"TimeLimit({self.seconds:g})"


class Alarm:
    """Raise :class:`TimeLimitExceeded` in a thread when its deadline passes.

    ``arm(seconds)`` returns a token; ``disarm(token)`` must be called when the
    guarded code finished (in a ``finally``). One named daemon thread per Alarm."""

    def __init__(self, name: str = "fieldmq-timelimit") -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._live: set[int] = set()
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, seconds: float) -> int:
        token = next(self._ids)
        with self._cond:
            self._live.add(token)
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, threading.get_ident()))
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, ident = self._heap[0]
                now = time.monotonic()
                if token not in self._live:
                    heapq.heappop(self._heap)
                    continue
                if deadline > now:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                log.warning("time limit exceeded; interrupting thread %d", ident)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(TimeLimitExceeded)
                )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(2.0)
