"""Which worker slot serves which route. Pure.

* A non-shared route runs in slot 0 (the designated process): one subscriber, every
  message once.
* A shared route with ``workers=None`` runs in every slot (it grows and shrinks with
  autoscaling).
* A shared route with ``workers=k`` runs in exactly ``k`` slots, chosen among the first
  ``fixed_slots`` (the minimum worker count, so scaling down never strands it): the
  ``k`` least loaded, lowest index first on a tie.
"""

from __future__ import annotations

from collections.abc import Sequence

from .routes import Route

__all__ = ["needed_workers", "plan"]


def needed_workers(routes: Sequence[Route]) -> int:
    """The smallest worker count that honours every route's ``workers``."""
    return max([1, *(r.workers or 1 for r in routes)])


def plan(
    routes: Sequence[Route], workers: int, *, fixed_slots: int | None = None
) -> dict[int, tuple[int, ...]]:
    """Map each slot ``0..workers-1`` to the indices of the routes it serves."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    base = workers if fixed_slots is None else fixed_slots
    if not 1 <= base <= workers:
        raise ValueError(f"fixed_slots must be in 1..{workers}, got {fixed_slots!r}")
    slots: dict[int, list[int]] = {s: [] for s in range(workers)}
    load = [0] * base
    for r in routes:
        if not r.shared:
            slots[0].append(r.index)
            load[0] += 1
    for r in routes:
        if not r.shared:
            continue
        if r.workers is None:
            for s in range(workers):
                slots[s].append(r.index)
            continue
        if r.workers > base:
            raise ValueError(
                f"route {r.pattern.source!r} asks for workers={r.workers} but only {base} "
                f"worker process(es) are guaranteed; run with --workers {r.workers}"
                + (" (and --min-workers)" if fixed_slots is not None else "")
            )
        chosen = sorted(range(base), key=lambda s: (load[s], s))[: r.workers]
        for s in sorted(chosen):
            slots[s].append(r.index)
            load[s] += 1
    return {s: tuple(idx) for s, idx in slots.items()}
