"""The single-instance lock: one running process per application (and worker).

The lock is an ``fcntl.flock`` on ``<state_dir>/<app>[-<worker>].lock``. Three
properties follow, each one a failure seen in the field (seed 01):

* **No collision between applications.** The file is named after the application
  and lives in its own state directory, so two applications never share it even
  when someone points them at the same directory.
* **No stale PID.** The kernel releases a ``flock`` when its holder dies, however
  it dies (SIGKILL, power cut, OOM killer). A PID written in the file is only
  information for the message shown to a second instance; it is never used to
  decide anything, so a reused PID cannot block a restart.
* **A clear refusal.** A second instance raises :class:`AlreadyRunning` naming the
  holder's PID, command line and start time.

The file is never deleted (deleting a lock file lets two processes lock two
different inodes); on release its content is cleared.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import FieldmqError
from .identity import validate_app, validate_worker
from .procinfo import cmdline_of, start_ticks_of

__all__ = ["AlreadyRunning", "InstanceLock", "LockHolder", "lock_path", "read_holder"]


@dataclass(frozen=True, slots=True)
class LockHolder:
    """What a lock file says about the process holding it."""

    pid: int
    app: str
    worker: str | None = None
    host: str = ""
    cmdline: tuple[str, ...] = ()
    started: float = 0.0
    start_ticks: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        """``PID 4242 (python -m meter, started 2026-01-02 10:00:00)``."""
        cmd = " ".join(self.cmdline) if self.cmdline else "unknown command"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"PID {self.pid} ({cmd}, started {when})"

    def to_json(self) -> str:
        data = {
            "pid": self.pid,
            "app": self.app,
            "worker": self.worker,
            "host": self.host,
            "cmdline": list(self.cmdline),
            "started": self.started,
            "start_ticks": self.start_ticks,
        }
        data.update(self.extra)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockHolder | None:
        """Parse a lock file's content; ``None`` when empty or not ours."""
        try:
            data = json.loads(text)
            known = {"pid", "app", "worker", "host", "cmdline", "started", "start_ticks"}
            return cls(
                pid=int(data["pid"]),
                app=str(data["app"]),
                worker=None if data.get("worker") is None else str(data["worker"]),
                host=str(data.get("host", "")),
                cmdline=tuple(str(a) for a in data.get("cmdline", ())),
                started=float(data.get("started", 0.0)),
                start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class AlreadyRunning(FieldmqError):
    """Another process holds this application's single-instance lock.

    ``holder`` describes it (``None`` if its lock file could not be read).
    """

    def __init__(self, message: str, *, path: Path, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


def lock_path(state_dir: str | os.PathLike[str], app: str, worker: str | int | None = None) -> Path:
    """``<state_dir>/<app>[-<worker>].lock``."""
    validate_app(app)
    w = validate_worker(worker)
    name = app if w is None else f"{app}-{w}"
    return Path(state_dir) / f"{name}.lock"


def read_holder(path: str | os.PathLike[str]) -> LockHolder | None:
    """The holder recorded in a lock file, or ``None`` (missing, empty, unreadable)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    return LockHolder.from_json(text) if text.strip() else None


class InstanceLock:
    """An exclusive, non-blocking ``flock`` for one application (and worker).

    ``acquire()`` raises :class:`AlreadyRunning` when another process holds it and
    :class:`~fieldmq.FieldmqError` when the state directory cannot be used. Use it as
    a context manager; ``release()`` is idempotent. ``extra`` is recorded in the
    lock file for ``fieldmq status`` (client id, HTTP port...).
    """

    def __init__(
        self,
        *,
        app: str,
        state_dir: str | os.PathLike[str],
        worker: str | int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.app = validate_app(app)
        self.worker = validate_worker(worker)
        self.state_dir = Path(state_dir)
        self.path = lock_path(self.state_dir, self.app, self.worker)
        self.extra = dict(extra or {})
        self._fd: int | None = None
        self.holder: LockHolder | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> InstanceLock:
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already held by this process")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise FieldmqError(
                f"cannot create the lock file {str(self.path)!r} for app {self.app!r}: "
                f"{exc.strerror}; choose a writable --state-dir"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise FieldmqError(
                    f"cannot lock {str(self.path)!r}: {exc.strerror}"
                ) from exc
            holder = self._wait_for_holder_record()
            who = holder.describe() if holder else "a process that has not recorded itself yet"
            name = self.app if self.worker is None else f"{self.app} worker {self.worker}"
            raise AlreadyRunning(
                f"{name} is already running: {who}; lock file {self.path}",
                path=self.path,
                holder=holder,
            ) from None
        pid = os.getpid()
        self.holder = LockHolder(
            pid=pid,
            app=self.app,
            worker=self.worker,
            host=socket.gethostname(),
            cmdline=cmdline_of(pid) or tuple(sys.argv),
            started=time.time(),
            start_ticks=start_ticks_of(pid),
            extra=self.extra,
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (self.holder.to_json() + "\n").encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise FieldmqError(f"cannot write the lock file {str(self.path)!r}: {exc}") from exc
        self._fd = fd
        return self

    def _wait_for_holder_record(self, timeout: float = 1.0) -> LockHolder | None:
        # The holder writes its record right after locking; a refusal can land in
        # between. Poll briefly until the record is there.
        deadline = time.monotonic() + timeout
        while True:
            holder = read_holder(self.path)
            if holder is not None or time.monotonic() >= deadline:
                return holder
            time.sleep(0.01)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"InstanceLock(path={str(self.path)!r}, {state})"
