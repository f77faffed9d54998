"""A token bucket for bandwidth caps. Pure: time is passed in, so it is tested without I/O.

Tokens are bytes. A send is allowed while the balance is positive and its full size is
then spent, so the balance may go negative (debt) and later sends wait until it is
repaid: the long-run rate is exactly ``rate`` bytes/s and at most ``burst`` bytes (plus
one message) go out at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["RateLimit", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A bandwidth cap: ``bytes_per_second`` on average, bursts up to ``burst`` bytes
    (default: one second's worth)."""

    bytes_per_second: float
    burst: float | None = None

    def __post_init__(self) -> None:
        r = self.bytes_per_second
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
            raise ValueError(f"RateLimit.bytes_per_second must be a positive number, got {r!r}")
        b = self.burst
        if b is not None and (
            isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0
        ):
            raise ValueError(f"RateLimit.burst must be a positive number of bytes, got {b!r}")

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.bytes_per_second)


@dataclass(slots=True)
class TokenBucket:
    limit: RateLimit
    now: float
    tokens: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.limit.capacity

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.now)
        self.now = max(self.now, now)
        self.tokens = min(self.limit.capacity, self.tokens + elapsed * self.limit.bytes_per_second)

    def ready(self, now: float) -> bool:
        self.refill(now)
        return self.tokens > 0

    def spend(self, nbytes: int) -> None:
        self.tokens -= nbytes

    def wait_time(self, now: float) -> float:
        """Seconds until a send is allowed again (0 when allowed now)."""
        self.refill(now)
        if self.tokens > 0:
            return 0.0
        return (-self.tokens) / self.limit.bytes_per_second + 1e-6
