"""When to feed systemd's watchdog: pure decisions, no clock or socket.

``WATCHDOG=1`` is a promise that the service is doing its job, so it is sent
only while the evidence says so:

* the client's network loop completed an iteration recently (``loop_age``, which
  stays fresh while the client is offline but alive and retrying: a broker outage
  is not a reason to restart the process, a wedged loop is);
* if the application opted in with ``beat_timeout``, its own main loop called
  :meth:`Service.beat` recently (seed 09: a background thread that feeds the
  watchdog must watch the main thread, not only itself).

The feeding thread pings every ``WatchdogSec / 3``: two missed pings still leave a
margin for a slow board before systemd kills the service.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_LOOP_AGE", "WatchdogPolicy", "feed_period"]

MIN_LOOP_AGE = 2.5


def feed_period(watchdog_sec: float) -> float:
    """How often to send WATCHDOG=1 for a given ``WatchdogSec``."""
    if watchdog_sec <= 0:
        raise ValueError(f"watchdog_sec must be > 0, got {watchdog_sec!r}")
    return watchdog_sec / 3


@dataclass(frozen=True, slots=True)
class WatchdogPolicy:
    """``max_loop_age``: the longest network-loop stall still counted as progress.
    ``beat_timeout``: the longest gap between application beats (``None``: not required)."""

    max_loop_age: float
    beat_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.max_loop_age > 0:
            raise ValueError(f"max_loop_age must be > 0, got {self.max_loop_age!r}")
        if self.beat_timeout is not None and not self.beat_timeout > 0:
            raise ValueError(f"beat_timeout must be > 0 or None, got {self.beat_timeout!r}")

    @classmethod
    def for_watchdog(
        cls,
        watchdog_sec: float | None,
        *,
        max_loop_age: float | None = None,
        beat_timeout: float | None = None,
    ) -> WatchdogPolicy:
        """The policy for ``WatchdogSec`` (``None`` when systemd has no watchdog):
        ``max_loop_age`` defaults to half of it, or 30 s without one, and never less
        than :data:`MIN_LOOP_AGE` (an idle network loop completes an iteration about
        once a second, so a shorter limit would report a healthy idle loop as stalled)."""
        if max_loop_age is None:
            max_loop_age = max(watchdog_sec / 2, MIN_LOOP_AGE) if watchdog_sec else 30.0
        return cls(max_loop_age=max_loop_age, beat_timeout=beat_timeout)

    def problem(self, *, loop_age: float | None, beat_age: float | None) -> str | None:
        """Why the watchdog must not be fed now, or ``None`` when it may be.

        ``loop_age`` ``None`` means the client is not running (starting or closed):
        no evidence of progress. ``beat_age`` ``None`` means the application never beat.
        """
        if loop_age is None:
            return "the client is not running"
        if loop_age > self.max_loop_age:
            return f"the network loop has not progressed for {loop_age:.1f}s"
        if self.beat_timeout is not None:
            if beat_age is None:
                return "the application has not called beat() yet"
            if beat_age > self.beat_timeout:
                return f"the application has not called beat() for {beat_age:.1f}s"
        return None

    def should_feed(self, *, loop_age: float | None, beat_age: float | None) -> bool:
        return self.problem(loop_age=loop_age, beat_age=beat_age) is None
