"""A clock for tests: wall and monotonic time move only when told to."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """Implements :class:`fieldmq.clock.Clock`. ``advance()`` moves both clocks;
    ``jump_wall()`` steps only the wall clock, as NTP does after a boot without RTC."""

    def __init__(self, *, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._mono = monotonic
        self._lock = threading.Lock()

    def wall(self) -> float:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on both clocks."""
        if seconds < 0:
            raise ValueError("time does not run backwards; use jump_wall() for a wall-clock step")
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative goes back); monotonic time is unchanged."""
        with self._lock:
            self._wall += seconds

    def __repr__(self) -> str:
        return f"FakeClock(wall={self._wall!r}, monotonic={self._mono!r})"
