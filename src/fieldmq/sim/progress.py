"""Feedback while a simulation runs: a live block on a terminal, plain periodic
lines otherwise (logs, CI), and the end-of-run summary. Formatting is pure."""

from __future__ import annotations

import time
from typing import TextIO

from .simulation import FleetStatus, SimulationResult

__all__ = ["Progress", "format_status", "format_summary"]


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60:d}:{s % 60:02d}"


def format_status(st: FleetStatus) -> list[str]:
    """The status as a few short lines."""
    top = f" (max {st.max_queue[0]}: {st.max_queue[1]})" if st.max_queue else ""
    return [
        f"[{st.phase}] {_clock(st.elapsed)} / {_clock(st.duration)}   devices "
        f"{st.up}/{st.devices} up, {st.connected} connected, {st.boots} boots",
        f"published {st.published}  received {st.received}  queued {st.queued}{top}  "
        f"inflight {st.inflight}  reconnects {st.reconnects}",
        "faults: " + (", ".join(st.faults) if st.faults else "none"),
    ]


def format_summary(result: SimulationResult) -> str:
    """The end-of-run summary: the timeline that ran and the audit table."""
    lines = []
    if result.history:
        lines.append("timeline:")
        lines += [f"  {at:7.1f}s  {label}" for at, label in result.history]
    lines.append(f"anomalies injected: {result.labels} (labels in "
                 f"{result.state_dir / 'labels.jsonl'})")
    if result.undrained:
        lines.append(f"WARNING: {result.undrained} device(s) still had messages queued at "
                     "the end (raise --drain-timeout)")
    lines.append(result.audit.table(devices=len(result.audit.devices) <= 40))
    verdict = "OK: nothing lost" if result.audit.ok else (
        f"LOST {result.audit.total.lost} message(s)")
    lines.append(verdict)
    return "\n".join(lines)


class Progress:
    """Callable given to :meth:`Simulation.run`. On a TTY it redraws a block in place
    (at most ``tty_interval`` s apart); otherwise it prints a line every
    ``plain_interval`` seconds."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, tty_interval: float = 0.5,
                 plain_interval: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = tty_interval if self.tty else plain_interval
        self._last = 0.0
        self._drawn = 0
        self._phase = ""

    def __call__(self, st: FleetStatus) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and st.phase == self._phase:
            return
        self._last, self._phase = now, st.phase
        lines = format_status(st)
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        else:
            self.stream.write(" | ".join(lines) + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Forget the live block (the summary is printed below it)."""
        self._drawn = 0
