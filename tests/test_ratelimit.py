"""The token bucket behind bandwidth caps (pure)."""

from __future__ import annotations

import math

import pytest

from fieldmq import RateLimit
from fieldmq.ratelimit import TokenBucket


def test_burst_then_rate() -> None:
    """A full bucket allows a burst; then sends wait exactly for the debt to be repaid."""
    b = TokenBucket(RateLimit(1000, burst=500), now=0.0)
    assert b.ready(0.0)
    b.spend(800)  # one send may overdraw
    assert not b.ready(0.0)
    assert b.wait_time(0.0) == pytest.approx(0.3, abs=1e-5)
    assert not b.ready(0.29)
    assert b.ready(0.31)


def test_long_run_rate_is_the_cap() -> None:
    """Sending whenever allowed for 100 s moves rate x 100 bytes (+ burst + one message)."""
    b = TokenBucket(RateLimit(2000, burst=1000), now=0.0)
    sent = 0
    t = 0.0
    while t < 100.0:
        if b.ready(t):
            b.spend(300)
            sent += 300
        t += 0.001
    assert 2000 * 100 <= sent <= 2000 * 100 + 1000 + 300


def test_refill_never_exceeds_burst_and_ignores_time_going_back() -> None:
    """Idle time refills only up to the burst; an earlier timestamp changes nothing."""
    b = TokenBucket(RateLimit(100), now=10.0)
    b.refill(1000.0)
    assert b.tokens == 100
    b.spend(50)
    b.refill(5.0)
    assert b.tokens == 50


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "100"])
def test_bad_rates_rejected(bad: object) -> None:
    """Non-positive, non-finite or non-numeric caps raise ValueError naming the field."""
    with pytest.raises(ValueError, match="bytes_per_second"):
        RateLimit(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst"):
        RateLimit(100, burst=bad)  # type: ignore[arg-type]
