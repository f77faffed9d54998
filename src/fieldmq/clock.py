"""Clocks: the seam through which fieldmq reads time.

Ages and TTLs are measured on a monotonic clock that counts time while the
device runs (``CLOCK_BOOTTIME`` on Linux, so a suspend counts as elapsed), never
on wall-clock differences alone: a Raspberry Pi without an RTC boots with a wrong
wall clock and steps it later. The wall clock is used only to credit the time a
store spent closed (see :mod:`fieldmq.store`), and only when the step is plausible.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


class Clock(Protocol):
    """What fieldmq needs from a clock. :class:`fieldmq.testing.FakeClock` implements it."""

    def wall(self) -> float:
        """Seconds since the epoch, as the wall clock says (may jump)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards while the machine runs."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        if _BOOTTIME is not None:
            return time.clock_gettime(_BOOTTIME)
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"
