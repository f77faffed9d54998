"""Autoscaling decisions between a minimum and a maximum number of workers. Pure.

The supervisor samples its workers every ``interval`` seconds and feeds
:meth:`Autoscaler.observe` with:

* ``utilization``: the fraction of the interval the alive workers spent inside
  handlers (busy seconds / (interval x workers)). A worker with prefetched messages
  is never idle, so sustained high utilization means a backlog at the broker;
* ``latency``: the mean seconds per message over the interval (``None`` if none).

Heuristic: scale **up** by one when utilization >= ``scale_up_at`` (or the latency is
above ``latency_target``) for ``up_after`` consecutive samples; scale **down** by one
when utilization <= ``scale_down_at`` (and latency, if targeted, is below half the
target) for ``down_after`` consecutive samples. After any change, wait ``cooldown``
seconds before the next. Never below ``min_workers`` or above ``max_workers``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Autoscaler", "ScalingPolicy"]


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    min_workers: int
    max_workers: int
    scale_up_at: float = 0.75
    scale_down_at: float = 0.25
    latency_target: float | None = None
    up_after: int = 2
    down_after: int = 6
    cooldown: float = 30.0
    interval: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(
                f"need 1 <= min_workers <= max_workers, got {self.min_workers}..{self.max_workers}"
            )
        if not 0 <= self.scale_down_at < self.scale_up_at <= 1:
            raise ValueError("need 0 <= scale_down_at < scale_up_at <= 1")
        if self.up_after < 1 or self.down_after < 1:
            raise ValueError("up_after and down_after must be >= 1 samples")
        if self.cooldown < 0 or not self.interval > 0:
            raise ValueError("cooldown must be >= 0 and interval > 0 seconds")
        if self.latency_target is not None and not self.latency_target > 0:
            raise ValueError("latency_target must be > 0 seconds or None")


class Autoscaler:
    """Holds the streaks; ``observe`` returns the desired worker count."""

    def __init__(self, policy: ScalingPolicy, current: int) -> None:
        self.policy = policy
        self.current = min(max(current, policy.min_workers), policy.max_workers)
        self._hot = 0
        self._cold = 0
        self._last_change: float | None = None

    def observe(self, now: float, utilization: float, latency: float | None) -> int:
        p = self.policy
        slow = p.latency_target is not None and latency is not None and latency > p.latency_target
        fast = p.latency_target is None or latency is None or latency <= p.latency_target / 2
        if utilization >= p.scale_up_at or slow:
            self._hot += 1
            self._cold = 0
        elif utilization <= p.scale_down_at and fast:
            self._cold += 1
            self._hot = 0
        else:
            self._hot = self._cold = 0
        if self._last_change is not None and now - self._last_change < p.cooldown:
            return self.current
        if self._hot >= p.up_after and self.current < p.max_workers:
            self.current += 1
        elif self._cold >= p.down_after and self.current > p.min_workers:
            self.current -= 1
        else:
            return self.current
        self._hot = self._cold = 0
        self._last_change = now
        return self.current
