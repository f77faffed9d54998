"""Reconnect backoff: exponential with full jitter, capped. Pure and deterministic
given the random source, so the schedule is tested without a broker."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``uniform(0, min(maximum, initial * factor**attempt))``.

    ``stable_after`` is how long a connection must stay up before the attempt
    counter resets: a link that flaps every second keeps backing off.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: bool = True
    stable_after: float = 30.0

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError(f"Backoff.initial must be > 0, got {self.initial!r}")
        if self.maximum < self.initial:
            raise ValueError(
                f"Backoff.maximum ({self.maximum!r}) must be >= initial ({self.initial!r})"
            )
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be >= 1, got {self.factor!r}")
        if self.stable_after < 0:
            raise ValueError(f"Backoff.stable_after must be >= 0, got {self.stable_after!r}")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Avoid float overflow for huge attempt counts.
        if attempt > 64:
            return self.maximum
        return float(min(self.maximum, self.initial * self.factor**attempt))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``attempt``; full jitter when enabled."""
        top = self.ceiling(attempt)
        if not self.jitter:
            return top
        return (rng or random).uniform(0.0, top)
