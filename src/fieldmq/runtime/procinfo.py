"""Facts about processes read from ``/proc``: command line and start time.

A PID alone identifies nothing once the process is gone: the kernel hands the
number to the next process. A PID together with the process's start time (field
22 of ``/proc/<pid>/stat``, in clock ticks since boot) does, which is what
:func:`is_same_process` compares. ``proc_root`` is a seam for tests.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cmdline_of", "is_same_process", "parse_stat_start", "start_ticks_of"]

_PROC = Path("/proc")


def parse_stat_start(stat_text: str) -> int | None:
    """The start time (clock ticks since boot) from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself contain spaces and
    parentheses, so the fields are counted from the last ``)``.
    """
    end = stat_text.rfind(")")
    if end < 0:
        return None
    fields = stat_text[end + 1 :].split()
    # fields[0] is field 3 (state); starttime is field 22.
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def start_ticks_of(pid: int, *, proc_root: Path = _PROC) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or ``None`` if it is not running."""
    try:
        text = (proc_root / str(pid) / "stat").read_text(errors="replace")
    except OSError:
        return None
    return parse_stat_start(text)


def cmdline_of(pid: int, *, proc_root: Path = _PROC) -> tuple[str, ...]:
    """The command line of ``pid`` as a tuple of arguments (empty if unknown)."""
    try:
        raw = (proc_root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)


def is_same_process(pid: int, start_ticks: int | None, *, proc_root: Path = _PROC) -> bool:
    """True when ``pid`` is running and, if ``start_ticks`` is known, started then.

    Without ``/proc`` (not Linux) falls back to ``kill(pid, 0)``.
    """
    if pid <= 0:
        return False
    if not proc_root.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = start_ticks_of(pid, proc_root=proc_root)
    if now is None:
        return False
    return start_ticks is None or now == start_ticks
