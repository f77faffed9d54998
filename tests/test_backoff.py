"""The reconnect backoff schedule: exponential, full jitter, capped. Pure; no broker."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from fieldmq.backoff import Backoff


def test_defaults() -> None:
    """The defaults are 0.5 s initial, 30 s cap, factor 2, jitter on, stable after 30 s."""
    b = Backoff()
    assert (b.initial, b.maximum, b.factor, b.jitter, b.stable_after) == (
        0.5, 30.0, 2.0, True, 30.0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0),
     (20, 30.0), (64, 30.0), (65, 30.0)],
)
def test_no_jitter_exact_schedule(attempt: int, expected: float) -> None:
    """Without jitter the delay is exactly min(maximum, initial * factor**attempt)."""
    b = Backoff(jitter=False)
    assert b.delay(attempt) == expected
    assert b.ceiling(attempt) == expected


def test_ceiling_is_monotonic_and_capped() -> None:
    """The ceiling never decreases with the attempt number and never exceeds the cap."""
    b = Backoff(initial=0.1, maximum=7.0, factor=1.7)
    tops = [b.ceiling(a) for a in range(200)]
    assert tops == sorted(tops)
    assert max(tops) == 7.0
    assert tops[0] == pytest.approx(0.1)


def test_factor_one_is_constant() -> None:
    """A factor of 1 gives a constant ceiling."""
    b = Backoff(initial=2.0, maximum=5.0, factor=1.0, jitter=False)
    assert {b.delay(a) for a in range(100)} == {2.0}


def test_slow_factor_has_no_jump_to_the_cap_after_attempt_64() -> None:
    """A slowly growing schedule keeps growing smoothly past attempt 64 (no jump to the cap)."""
    b = Backoff(initial=0.5, maximum=30.0, factor=1.01, jitter=False)
    assert b.ceiling(64) == pytest.approx(0.5 * 1.01**64)
    assert b.ceiling(65) == pytest.approx(0.5 * 1.01**65)


def test_initial_equal_to_maximum() -> None:
    """initial == maximum is allowed and gives a constant ceiling."""
    b = Backoff(initial=3.0, maximum=3.0, jitter=False)
    assert [b.delay(a) for a in range(5)] == [3.0] * 5


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 10, 64, 65, 1000])
def test_jitter_within_zero_and_ceiling(attempt: int) -> None:
    """With full jitter every delay lies in [0, ceiling(attempt)]."""
    b = Backoff()
    rng = random.Random(attempt)
    top = b.ceiling(attempt)
    delays = [b.delay(attempt, rng) for _ in range(500)]
    assert all(0.0 <= d <= top for d in delays)


def test_jitter_spreads_over_the_range() -> None:
    """Full jitter uses the whole range, not just the top (no synchronised reconnect storms)."""
    b = Backoff(initial=1.0, maximum=10.0)
    rng = random.Random(1)
    delays = [b.delay(10, rng) for _ in range(2000)]
    assert min(delays) < 1.0
    assert max(delays) > 9.0
    assert 4.0 < sum(delays) / len(delays) < 6.0


def test_seeded_random_is_deterministic() -> None:
    """The same seed gives the same schedule."""
    b = Backoff()
    one = [b.delay(a, random.Random(42)) for a in range(20)]
    two = [b.delay(a, random.Random(42)) for a in range(20)]
    assert one == two
    r1, r2 = random.Random(7), random.Random(7)
    assert [b.delay(a, r1) for a in range(30)] == [b.delay(a, r2) for a in range(30)]


def test_default_rng_used_when_none_given() -> None:
    """Without an rng the module-level random source is used, still within bounds."""
    b = Backoff()
    assert all(0.0 <= b.delay(3) <= 4.0 for _ in range(100))


@pytest.mark.parametrize("attempt", [65, 100, 10_000, 2**63, 10**100])
def test_huge_attempt_numbers_return_the_cap(attempt: int) -> None:
    """Huge attempt numbers neither overflow nor exceed the cap."""
    b = Backoff(jitter=False)
    assert b.delay(attempt) == 30.0
    assert 0.0 <= Backoff().delay(attempt, random.Random(0)) <= 30.0


@pytest.mark.parametrize("factor", [10.0, 1e3, 1e6, 1e10])
@pytest.mark.parametrize("attempt", [30, 60, 64])
def test_large_factor_does_not_overflow(factor: float, attempt: int) -> None:
    """Any valid factor with any attempt gives the cap instead of an OverflowError."""
    b = Backoff(initial=0.5, maximum=60.0, factor=factor, jitter=False)
    assert b.ceiling(attempt) == 60.0


@pytest.mark.parametrize("attempt", [-1, -100])
def test_negative_attempt_rejected(attempt: int) -> None:
    """A negative attempt number raises ValueError."""
    with pytest.raises(ValueError, match="attempt must be >= 0"):
        Backoff().delay(attempt)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"initial": 0}, "initial must be > 0"),
        ({"initial": -1.0}, "initial must be > 0"),
        ({"initial": 5.0, "maximum": 1.0}, "must be >= initial"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"factor": 0}, "factor must be >= 1"),
        ({"stable_after": -1}, "stable_after must be >= 0"),
    ],
)
def test_validation_errors(kwargs: dict[str, float], needle: str) -> None:
    """Invalid settings raise ValueError naming the field."""
    with pytest.raises(ValueError, match=needle):
        Backoff(**kwargs)


@pytest.mark.parametrize("field", ["initial", "maximum", "factor", "stable_after"])
def test_nan_settings_rejected(field: str) -> None:
    """A NaN setting raises ValueError instead of producing NaN delays."""
    with pytest.raises(ValueError, match=field):
        Backoff(**{field: math.nan})


def test_frozen() -> None:
    """Backoff is an immutable value."""
    b = Backoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.initial = 1.0  # type: ignore[misc]
    assert b == Backoff()
    assert "initial=0.5" in repr(b)
