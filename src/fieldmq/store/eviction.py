"""Which priority gives up a message when the store is full. Pure."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["victim_priority"]


def victim_priority(queued_by_priority: Mapping[int, int], new_priority: int) -> int | None:
    """The priority whose oldest queued message is evicted to make room for a new
    message of ``new_priority``, or ``None`` when the new message must be rejected.

    The lowest priority that has a queued message loses its oldest one, but never
    a priority higher than the new message's: a message is never evicted to make
    room for one that matters less. Equal priority evicts the oldest (the newest
    reading of the same importance wins).
    """
    for prio in sorted(queued_by_priority):
        if queued_by_priority[prio] > 0:
            return prio if prio <= new_priority else None
    return None
