"""Health decisions: from measurements to healthy, degraded or unhealthy, with reasons.

Pure: :func:`evaluate` takes a :class:`HealthInputs` snapshot (client statistics,
disk, temperature, throttling) and :class:`HealthThresholds`, and returns a
:class:`HealthReport`. The worst check decides the status. Nothing here reads a
file or a socket, so every threshold is tested without a broker or a Pi.

==============  ====================================  ===================================
check           degraded when                         unhealthy when
==============  ====================================  ===================================
connection      offline >= offline_degraded_after     offline >= offline_unhealthy_after
queue           queued >= queue_degraded_ratio x max  queued >= queue_unhealthy_ratio x max
                (by message count and by bytes)
oldest          age >= oldest_degraded_after          age >= oldest_unhealthy_after
disk            free % < disk_degraded_free_percent   free % < disk_unhealthy_free_percent
temperature     >= temperature_degraded_c             >= temperature_unhealthy_c
throttling      under-voltage or throttled *now*      (never on its own)
loop            --                                    the network loop stopped progressing
store           --                                    the store reported an error
==============  ====================================  ===================================

Throttling that happened earlier since boot but not now is reported as a note in
``checks`` and does not degrade the status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "DEGRADED",
    "HEALTHY",
    "UNHEALTHY",
    "HealthInputs",
    "HealthReport",
    "HealthThresholds",
    "Reason",
    "decode_throttled",
    "evaluate",
]

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

# Bits of `vcgencmd get_throttled`: current state in 0-3, "has occurred" in 16-19.
_THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a measurement turns a check degraded or unhealthy (see the module doc)."""

    offline_degraded_after: float = 30.0
    offline_unhealthy_after: float = 600.0
    queue_degraded_ratio: float = 0.8
    queue_unhealthy_ratio: float = 0.95
    oldest_degraded_after: float = 300.0
    oldest_unhealthy_after: float = 3600.0
    disk_degraded_free_percent: float = 15.0
    disk_unhealthy_free_percent: float = 5.0
    temperature_degraded_c: float = 80.0
    temperature_unhealthy_c: float = 85.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"health.{f.name} must be a number >= 0, got {value!r}")
        pairs = [
            ("offline_degraded_after", "offline_unhealthy_after"),
            ("queue_degraded_ratio", "queue_unhealthy_ratio"),
            ("oldest_degraded_after", "oldest_unhealthy_after"),
            ("disk_unhealthy_free_percent", "disk_degraded_free_percent"),
            ("temperature_degraded_c", "temperature_unhealthy_c"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"health.{low} ({getattr(self, low)!r}) must not exceed "
                    f"health.{high} ({getattr(self, high)!r})"
                )
        for name in ("queue_degraded_ratio", "queue_unhealthy_ratio"):
            if getattr(self, name) > 1:
                raise ValueError(f"health.{name} is a fraction of the limit, from 0 to 1")


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """One snapshot of everything health depends on; ``None`` means "not measured"."""

    connected: bool = True
    offline_for: float | None = None
    queued: int | None = None
    max_messages: int | None = None
    store_bytes: int | None = None
    max_bytes: int | None = None
    oldest_age: float | None = None
    loop_stalled_for: float | None = None
    disk_free: int | None = None
    disk_total: int | None = None
    temperature_c: float | None = None
    throttled: int | None = None
    store_error: str | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a check is not healthy."""

    check: str
    status: str
    message: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome: ``status``, the ``reasons`` behind it, and the measured ``checks``."""

    status: str
    reasons: tuple[Reason, ...] = ()
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        """200 for healthy and degraded, 503 for unhealthy."""
        return 503 if self.status == UNHEALTHY else 200

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reasons": [asdict(r) for r in self.reasons],
            "checks": dict(self.checks),
        }


def decode_throttled(value: int) -> tuple[list[str], list[str]]:
    """Names of the conditions active now and of those that occurred since boot."""
    now = [name for bit, name in _THROTTLE_BITS.items() if value & (1 << bit)]
    past = [name for bit, name in _THROTTLE_BITS.items() if value & (1 << (bit + 16))]
    return now, past


def _grade(value: float, degraded: float, unhealthy: float) -> str:
    if value >= unhealthy:
        return UNHEALTHY
    if value >= degraded:
        return DEGRADED
    return HEALTHY


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def evaluate(inp: HealthInputs, t: HealthThresholds) -> HealthReport:
    """Grade every measured check and return the worst status with its reasons."""
    reasons: list[Reason] = []
    checks: dict[str, Any] = {}

    def add(check: str, status: str, message: str) -> None:
        if status != HEALTHY:
            reasons.append(Reason(check, status, message))

    # connection
    checks["connected"] = inp.connected
    if not inp.connected and inp.offline_for is not None:
        checks["offline_for"] = round(inp.offline_for, 1)
        add(
            "connection",
            _grade(inp.offline_for, t.offline_degraded_after, t.offline_unhealthy_after),
            f"disconnected from the broker for {_fmt_s(inp.offline_for)}",
        )

    # queue depth, by count and by bytes
    if inp.queued is not None:
        checks["queued"] = inp.queued
        if inp.max_messages:
            ratio = inp.queued / inp.max_messages
            add(
                "queue",
                _grade(ratio, t.queue_degraded_ratio, t.queue_unhealthy_ratio),
                f"queue holds {inp.queued} of at most {inp.max_messages} messages "
                f"({ratio:.0%})",
            )
    if inp.store_bytes is not None:
        checks["store_bytes"] = inp.store_bytes
        if inp.max_bytes:
            ratio = inp.store_bytes / inp.max_bytes
            add(
                "queue",
                _grade(ratio, t.queue_degraded_ratio, t.queue_unhealthy_ratio),
                f"store holds {inp.store_bytes} of at most {inp.max_bytes} bytes ({ratio:.0%})",
            )

    # oldest queued message
    if inp.oldest_age is not None:
        checks["oldest_age"] = round(inp.oldest_age, 1)
        add(
            "oldest",
            _grade(inp.oldest_age, t.oldest_degraded_after, t.oldest_unhealthy_after),
            f"oldest queued message is {_fmt_s(inp.oldest_age)} old",
        )

    # network loop progress
    if inp.loop_stalled_for is not None:
        checks["loop_stalled_for"] = round(inp.loop_stalled_for, 1)
        add("loop", UNHEALTHY,
            f"the network loop made no progress for {_fmt_s(inp.loop_stalled_for)}")

    # disk
    if inp.disk_free is not None and inp.disk_total:
        pct = 100.0 * inp.disk_free / inp.disk_total
        checks["disk_free_percent"] = round(pct, 1)
        checks["disk_free_bytes"] = inp.disk_free
        status = HEALTHY
        if pct < t.disk_unhealthy_free_percent:
            status = UNHEALTHY
        elif pct < t.disk_degraded_free_percent:
            status = DEGRADED
        add("disk", status, f"only {pct:.1f}% disk space free ({inp.disk_free} bytes)")

    # temperature
    if inp.temperature_c is not None:
        checks["temperature_c"] = round(inp.temperature_c, 1)
        add(
            "temperature",
            _grade(inp.temperature_c, t.temperature_degraded_c, t.temperature_unhealthy_c),
            f"CPU temperature is {inp.temperature_c:.1f} C",
        )

    # throttling (Raspberry Pi)
    if inp.throttled is not None:
        now, past = decode_throttled(inp.throttled)
        checks["throttled"] = hex(inp.throttled)
        if past:
            checks["throttled_since_boot"] = past
        if now:
            add("throttling", DEGRADED, "the board reports " + ", ".join(now) + " now")

    # store
    if inp.store_error:
        checks["store_error"] = inp.store_error
        add("store", UNHEALTHY, f"the store failed: {inp.store_error}")

    status = max((r.status for r in reasons), key=_RANK.__getitem__, default=HEALTHY)
    return HealthReport(status=status, reasons=tuple(reasons), checks=checks)
