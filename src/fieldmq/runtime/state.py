"""Where a service keeps its state, and the status record ``fieldmq status`` reads.

State directory of an application, first match wins:

1. an explicit ``state_dir`` (``--state-dir``, ``FIELDMQ_STATE_DIR``, TOML);
2. ``$STATE_DIRECTORY`` (set by systemd from the unit's ``StateDirectory=``);
3. ``/var/lib/fieldmq/<app>`` when running as root (a system service);
4. ``$XDG_STATE_HOME/fieldmq/<app>``, by default ``~/.local/state/fieldmq/<app>``.

A running service keeps ``<app>[-<worker>].status.json`` next to its lock file,
replaced atomically (write to a temporary file, then ``rename``) so a reader
never sees half a record. :func:`discover` lists the services found under the
state roots, and tells the running ones from those that stopped or crashed by
the PID *and* its start time, never by the PID alone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lock import LockHolder, read_holder
from .procinfo import is_same_process

__all__ = [
    "SYSTEM_STATE_ROOT",
    "ServiceRecord",
    "default_state_dir",
    "discover",
    "read_status",
    "state_roots",
    "status_path",
    "write_status",
]

SYSTEM_STATE_ROOT = Path("/var/lib/fieldmq")


def _user_state_root(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "fieldmq"


def default_state_dir(
    app: str, *, env: Mapping[str, str] | None = None, euid: int | None = None
) -> Path:
    """The state directory for ``app`` when none is configured (see module doc)."""
    env = os.environ if env is None else env
    systemd_dirs = env.get("STATE_DIRECTORY")
    if systemd_dirs:
        return Path(systemd_dirs.split(":")[0])
    if (os.geteuid() if euid is None else euid) == 0:
        return SYSTEM_STATE_ROOT / app
    return _user_state_root(env) / app


def state_roots(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where ``fieldmq status`` looks by default: the system root and the user's."""
    env = os.environ if env is None else env
    roots = [SYSTEM_STATE_ROOT, _user_state_root(env)]
    return list(dict.fromkeys(roots))


def status_path(lock_file: Path) -> Path:
    """``foo.lock`` -> ``foo.status.json``."""
    return lock_file.with_name(lock_file.stem + ".status.json")


def write_status(path: Path, record: Mapping[str, Any]) -> None:
    """Atomically replace the status record at ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(record), sort_keys=True, default=str) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any]:
    """The status record at ``path``; ``{}`` when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One service found on this host, as ``fieldmq status`` shows it."""

    app: str
    worker: str | None
    lock_file: Path
    running: bool
    pid: int | None
    uptime: float | None
    cmdline: tuple[str, ...]
    status: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        st = self.status
        return {
            "app": self.app,
            "worker": self.worker,
            "running": self.running,
            "pid": self.pid,
            "uptime": None if self.uptime is None else round(self.uptime, 1),
            "connected": st.get("connected") if self.running else None,
            "queued": st.get("queued"),
            "health": st.get("health") if self.running else None,
            "last_error": st.get("last_error"),
            "client_id": st.get("client_id"),
            "lock_file": str(self.lock_file),
            "cmdline": list(self.cmdline),
        }


def _record(lock_file: Path, holder: LockHolder | None, now: float) -> ServiceRecord | None:
    status = read_status(status_path(lock_file))
    if holder is None and not status:
        return None
    running = holder is not None and is_same_process(holder.pid, holder.start_ticks)
    app = holder.app if holder else str(status.get("app") or lock_file.stem)
    worker = holder.worker if holder else status.get("worker")
    return ServiceRecord(
        app=app,
        worker=None if worker is None else str(worker),
        lock_file=lock_file,
        running=running,
        pid=holder.pid if holder and running else None,
        uptime=max(0.0, now - holder.started) if holder and running else None,
        cmdline=holder.cmdline if holder else (),
        status=status,
    )


def discover(roots: Iterable[Path], *, now: float | None = None) -> list[ServiceRecord]:
    """Every service with a lock or status file under ``roots`` (``root/*/*.lock``
    and ``root/*.lock``), sorted by app and worker."""
    now = time.time() if now is None else now
    seen: set[Path] = set()
    found: list[ServiceRecord] = []
    for root in roots:
        if not root.is_dir():
            continue
        try:
            candidates = sorted(root.glob("*.lock")) + sorted(root.glob("*/*.lock"))
        except OSError:
            continue
        for lock_file in candidates:
            real = lock_file.resolve()
            if real in seen:
                continue
            seen.add(real)
            rec = _record(lock_file, read_holder(lock_file), now)
            if rec is not None:
                found.append(rec)
    found.sort(key=lambda r: (r.app, r.worker or ""))
    return found
