"""Reconnect backoff: exponential with full jitter, capped. Pure and deterministic
given the random source, so the schedule is tested without a broker."""

from __future__ import annotations

import math
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
        for name in ("initial", "maximum", "factor", "stable_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
                raise ValueError(f"Backoff.{name} must be a finite number, got {value!r}")
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
        # Compare in log space: factor**attempt can overflow a float long before the
        # schedule reaches the cap for a slowly growing factor.
        if self.factor == 1.0:
            return float(min(self.maximum, self.initial))
        if attempt * math.log(self.factor) >= math.log(self.maximum / self.initial):
            return float(self.maximum)
        return float(min(self.maximum, self.initial * self.factor**attempt))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``attempt``; full jitter when enabled."""
        top = self.ceiling(attempt)
        if not self.jitter:
            return top
        return (rng or random).uniform(0.0, top)
