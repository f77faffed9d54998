"""When to restart a dead worker, and when to give up (a crash loop). Pure: the
caller passes the time, so every schedule is tested without processes.

A worker that exits while the router is not stopping is restarted after
``backoff.delay(n)`` where ``n`` counts the consecutive quick deaths (a worker that ran
longer than ``backoff.stable_after`` seconds resets ``n`` to 0). When more than
``max_restarts`` deaths fall within ``window`` seconds, the slot is in a crash loop:
it is not restarted, the supervisor reports it and stops the router (exit status 3),
so the service manager (systemd ``Restart=``) and people see it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from ..backoff import Backoff

__all__ = ["Decision", "RestartPolicy", "RestartTracker"]


_RESTART_BACKOFF = Backoff(initial=0.5, maximum=30.0, factor=2.0, stable_after=30.0)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """``max_restarts`` deaths within ``window`` seconds make a crash loop."""

    backoff: Backoff = _RESTART_BACKOFF
    max_restarts: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_restarts, bool) or self.max_restarts < 0:
            raise ValueError(f"RestartPolicy.max_restarts must be >= 0, got {self.max_restarts!r}")
        if not self.window > 0:
            raise ValueError(f"RestartPolicy.window must be > 0 seconds, got {self.window!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    restart: bool
    delay: float
    reason: str


@dataclass(slots=True)
class RestartTracker:
    """The restart history of one worker slot."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    rng: random.Random = field(default_factory=random.Random)
    deaths: deque[float] = field(default_factory=deque)
    streak: int = 0
    restarts: int = 0

    def on_exit(self, now: float, ran_for: float, exitcode: int | None) -> Decision:
        """The worker died at ``now`` after running ``ran_for`` seconds."""
        p = self.policy
        self.deaths.append(now)
        while self.deaths and self.deaths[0] <= now - p.window:
            self.deaths.popleft()
        if ran_for >= p.backoff.stable_after:
            self.streak = 0
        if len(self.deaths) > p.max_restarts:
            return Decision(
                False, 0.0,
                f"crash loop: died {len(self.deaths)} times within {p.window:g} s "
                f"(last exit status {exitcode})",
            )
        delay = p.backoff.delay(self.streak, self.rng)
        self.streak += 1
        self.restarts += 1
        return Decision(True, delay, f"exit status {exitcode}; restarting in {delay:.2f} s")
