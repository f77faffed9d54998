"""Realistic sensor values (seed 06): a slow sine drift with a per-device phase, a
slow random wander and a little Gaussian noise, clamped to physical bounds.

Everything is deterministic from a seed: :func:`derive_seed` turns a run seed and
names into a 64-bit seed with SHA-256 (Python's ``hash()`` is salted per process, so
it cannot be used), and each :class:`MetricSignal` owns a ``random.Random``. No
global random state is touched.
"""

from __future__ import annotations

import hashlib
import math
import random

from .profiles import MetricSpec

__all__ = ["WANDER_CORRELATION", "MetricSignal", "derive_seed"]

WANDER_CORRELATION = 0.98
_INNOVATION = math.sqrt(1.0 - WANDER_CORRELATION**2)


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed derived from ``seed`` and ``parts``; stable across processes,
    platforms and Python versions."""
    text = "\x1f".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class MetricSignal:
    """The clean (anomaly-free) value of one metric of one device, reading by reading.

    ``value(t)`` must be called for consecutive readings; ``t`` is the simulated
    time in seconds since the device's first reading (the sine drift depends on it,
    so a device that was off for a while resumes at the right point of its cycle).
    """

    __slots__ = ("_rng", "_wander", "phase", "spec")

    def __init__(self, spec: MetricSpec, rng: random.Random) -> None:
        self.spec = spec
        self._rng = rng
        self.phase = rng.uniform(0.0, 2.0 * math.pi)
        self._wander = rng.gauss(0.0, spec.wander) if spec.wander else 0.0

    def raw(self, t: float) -> float:
        """The next unclamped, unrounded value."""
        s = self.spec
        rng = self._rng
        if s.wander:
            self._wander = (
                WANDER_CORRELATION * self._wander + _INNOVATION * rng.gauss(0.0, s.wander)
            )
        drift = s.amplitude * math.sin(2.0 * math.pi * t / s.period + self.phase)
        noise = rng.gauss(0.0, s.noise) if s.noise else 0.0
        return s.base + drift + self._wander + noise

    def value(self, t: float) -> float:
        """The next reading: clamped to ``[low, high]`` and rounded to ``decimals``."""
        return self.clamp(self.raw(t))

    def clamp(self, value: float) -> float:
        s = self.spec
        return round(min(s.high, max(s.low, value)), s.decimals)
