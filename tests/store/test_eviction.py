"""The eviction choice: which priority gives up its oldest message when the store is full."""

from __future__ import annotations

import pytest

from fieldmq.store.eviction import victim_priority


@pytest.mark.parametrize(
    ("queued", "new", "expected"),
    [
        ({}, 5, None),  # nothing queued: reject
        ({p: 0 for p in range(1, 11)}, 10, None),  # all empty: reject
        ({1: 3}, 5, 1),  # lower priority loses
        ({1: 3, 2: 1}, 5, 1),  # the lowest one loses
        ({1: 0, 2: 1}, 5, 2),  # empty priorities are skipped
        ({5: 2}, 5, 5),  # equal priority: the oldest of the same priority goes
        ({6: 2}, 5, None),  # never evict a higher priority for a lower one
        ({6: 2, 10: 4}, 5, None),
        ({10: 1}, 10, 10),
        ({10: 1}, 1, None),
        ({1: 1}, 1, 1),
        ({3: 1, 1: 0, 7: 5}, 9, 3),  # key order does not matter
        ({7: 5, 3: 1}, 9, 3),
        ({4: 1, 9: 1}, 4, 4),
        ({4: 0, 9: 1}, 4, None),
        ({p: 1 for p in range(1, 11)}, 10, 1),
        ({p: 1 for p in range(2, 11)}, 1, None),
    ],
)
def test_victim_priority_table(queued: dict[int, int], new: int, expected: int | None) -> None:
    """The lowest non-empty priority loses, but only if it is <= the new message's."""
    assert victim_priority(queued, new) == expected


@pytest.mark.parametrize("new", range(1, 11))
def test_victim_never_above_new_priority(new: int) -> None:
    """For every layout of queued priorities the victim is never above the new priority."""
    for mask in range(1, 1 << 10):
        queued = {p: (1 if mask & (1 << (p - 1)) else 0) for p in range(1, 11)}
        victim = victim_priority(queued, new)
        lowest = min(p for p, n in queued.items() if n)
        if lowest <= new:
            assert victim == lowest
        else:
            assert victim is None


def test_victim_priority_does_not_mutate_input() -> None:
    """The choice is pure: the mapping passed in is left untouched."""
    queued = {3: 2, 1: 1}
    victim_priority(queued, 5)
    assert queued == {3: 2, 1: 1}
