"""systemd's notification protocol (``sd_notify``), spoken directly.

A service started with ``Type=notify`` gets ``NOTIFY_SOCKET``: the path of a Unix
datagram socket (``@name`` for the abstract namespace). Each datagram is a set of
``KEY=VALUE`` lines: ``READY=1`` once the service is ready, ``WATCHDOG=1`` to
feed the watchdog (``WatchdogSec=``, announced to the process as
``WATCHDOG_USEC``), ``STOPPING=1`` when shutting down, ``STATUS=...`` for
``systemctl status``. Outside systemd (no ``NOTIFY_SOCKET``) every call is a
no-op returning ``False``, so the same code runs under supervisor or a shell.

A failed send is logged once and never raised: a service does not stop because
its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_interval"]

log = logging.getLogger("fieldmq.runtime")


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """``WatchdogSec`` in seconds if systemd expects WATCHDOG=1 from this process.

    ``WATCHDOG_PID``, when set, must be this process: a child that inherited the
    variables must not feed its parent's watchdog.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


class Notifier:
    """Send ``sd_notify`` messages to ``address`` (default ``$NOTIFY_SOCKET``)."""

    def __init__(self, address: str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str:
        assert self.address is not None
        return "\0" + self.address[1:] if self.address.startswith("@") else self.address

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; ``True`` if it was sent."""
        if self.address is None:
            return False
        for line in lines:
            if "=" not in line or "\n" in line:
                raise ValueError(f"sd_notify lines are KEY=VALUE without newlines, got {line!r}")
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(data, self._target())
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot notify systemd at %s: %s", self.address, exc)
                    self._warned = True
                return False
        return True

    @staticmethod
    def _status(text: str | None) -> list[str]:
        return [] if text is None else ["STATUS=" + " ".join(text.split())]

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and ``MAINPID`` so forking launchers are handled)."""
        return self.send("READY=1", f"MAINPID={os.getpid()}", *self._status(status))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is making progress."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the service is shutting down."""
        return self.send("STOPPING=1", *self._status(status))

    def status(self, text: str) -> bool:
        """``STATUS=<text>`` shown by ``systemctl status``."""
        return self.send(*self._status(text))

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: ask for more time to start or stop."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __repr__(self) -> str:
        return f"Notifier(address={self.address!r})"
