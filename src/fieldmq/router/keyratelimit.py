"""``KeyRateLimit``: at most ``rate`` messages per ``per`` seconds for each key
(a route parameter such as ``device_id``, or any function of the message).

The bucket arithmetic is pure (:meth:`KeyRateLimit.reserve` takes the time). Over
the limit, ``mode="wait"`` (default) holds the message until its turn, so nothing
is lost and a flooding device slows only its own messages' worker; ``mode="skip"``
acknowledges it without handling (counted as skipped, reason ``rate_limited``).
At most ``max_keys`` buckets are kept (least recently used are forgotten).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from .errors import Skip
from .message import RoutedMessage
from .middleware import Middleware

__all__ = ["KeyRateLimit"]


class KeyRateLimit(Middleware):
    """Per-key token bucket: ``rate`` per ``per`` seconds, bursts up to ``burst``."""

    def __init__(
        self,
        *,
        rate: float,
        per: float = 1.0,
        key: str | Callable[[RoutedMessage], str] = "topic",
        burst: float | None = None,
        mode: Literal["wait", "skip"] = "wait",
        max_keys: int = 100_000,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for label, value in (("rate", rate), ("per", per)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"KeyRateLimit.{label} must be a positive number, got {value!r}")
        if burst is not None and not burst >= 1:
            raise ValueError(f"KeyRateLimit.burst must be >= 1, got {burst!r}")
        if mode not in ("wait", "skip"):
            raise ValueError(f"KeyRateLimit.mode must be 'wait' or 'skip', got {mode!r}")
        if not isinstance(key, str) and not callable(key):
            raise TypeError("KeyRateLimit.key must be a route parameter name or a callable")
        self.rate = float(rate) / float(per)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self.key = key
        self.mode = mode
        self.max_keys = max_keys
        self._sleep = sleep
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def key_of(self, message: RoutedMessage) -> str:
        if callable(self.key):
            return str(self.key(message))
        if self.key == "topic":
            return message.topic
        try:
            return message.params[self.key]
        except KeyError:
            raise ValueError(
                f"KeyRateLimit(key={self.key!r}): route {message.route!r} has no such parameter"
            ) from None

    def reserve(self, key: str, now: float) -> float:
        """Take one token for ``key`` at ``now``; return how long to wait for it (0 if
        available now). Reservations queue: the next caller waits behind this one."""
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + max(0.0, now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            if self.mode == "skip" and wait > 0:
                self._buckets[key] = (tokens, now)
            else:
                self._buckets[key] = (tokens - 1.0, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait

    def before_process(self, message: RoutedMessage) -> None:
        if message.attempt > 1:
            return  # a retry already paid for its token
        wait = self.reserve(self.key_of(message), self._clock())
        if wait <= 0:
            return
        if self.mode == "skip":
            raise Skip("rate_limited")
        self._sleep(wait)

    def __repr__(self) -> str:
        return f"KeyRateLimit(rate={self.rate:g}/s, key={self.key!r}, mode={self.mode!r})"
