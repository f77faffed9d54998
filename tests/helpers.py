"""Helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fieldmq import Message


class Collector:
    """Collects received messages; ``wait_for`` polls with a deadline."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()

    def __call__(self, msg: Message) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Message]], bool], timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def wait_count(self, n: int, timeout: float = 20.0) -> bool:
        return self.wait_for(lambda m: len(m) >= n, timeout)

    def ids(self) -> set[str | None]:
        with self._cond:
            return {m.message_id for m in self.messages}


def wait_until(
    predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
