"""A real mosquitto broker for tests: ephemeral 127.0.0.1 port, its own config,
persistence directory and log, and a lifecycle a test can drive (stop, kill,
start again on the same port)."""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["MosquittoBroker", "MosquittoNotFound", "free_port"]


class MosquittoNotFound(RuntimeError):
    """The ``mosquitto`` binary is not installed."""


_HANDED_OUT: set[int] = set()


def _source_port_range() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a server a test starts.

    Taken below the kernel's range for outgoing connections' source ports, so a client
    connecting meanwhile (a cluster node dialling its peers, say) cannot take it before the
    server binds it; never the same port twice in one process."""
    lo, _ = _source_port_range()
    first = 10_000 if lo > 12_000 else 1_024
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(first, lo) if lo - first > 1_000 else 0
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or raise :class:`MosquittoNotFound` with install help."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)),
        None,
    )
    if not found:
        raise MosquittoNotFound(
            "mosquitto is not installed; install it with 'sudo apt-get install -y mosquitto' "
            "(Debian/Ubuntu) or 'brew install mosquitto' (macOS)"
        )
    return found


class MosquittoBroker:
    """A mosquitto process on 127.0.0.1:``port`` with persistence in ``workdir``.

    ``start()`` launches it and waits until it accepts connections; ``stop()``
    sends SIGTERM (mosquitto saves its persistence file), ``kill()`` sends SIGKILL
    (nothing saved), and ``start()`` brings it back on the same port.
    ``extra_config`` lines are appended to the generated configuration, e.g. TLS
    listeners. Use it as a context manager or through the ``mosquitto`` fixture.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        persistence: bool = True,
        extra_config: str = "",
        listener: bool = True,
    ) -> None:
        self._binary = find_mosquitto()
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fieldmq-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.extra_config = extra_config
        self._listener = listener
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def _write_config(self) -> None:
        lines = []
        if self._listener:
            lines += [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        # mosquitto started as root drops to the 'mosquitto' user, which cannot write to
        # a private temp dir: stay the current user so persistence and logs work.
        lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        lines += [
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 1800",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            "persistent_client_expiration 1d",
        ]
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start the broker (again) and wait until it accepts TCP connections."""
        if self.running:
            return self
        self._write_config()
        self._proc = subprocess.Popen(
            [self._binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                self._proc = None
                raise RuntimeError(
                    f"mosquitto exited at start on port {self.port}: {err.strip()} {log[-500:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"mosquitto did not accept connections on port {self.port} in {timeout}s"
        )

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: a clean shutdown; mosquitto writes its persistence file."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: the broker dies at once, as in a crash."""
        self._signal(signal.SIGKILL, timeout)

    def save(self, timeout: float = 10.0) -> None:
        """Ask mosquitto to write its persistence file now (SIGUSR1) and wait until it has.

        Use it before ``kill()`` so that persistent sessions and their subscriptions
        survive the crash, as they would with a periodic autosave."""
        if not self.persistence:
            raise RuntimeError("save() needs persistence=True")
        db = self.workdir / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else 0
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError("mosquitto is not running")
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if db.exists() and db.stat().st_mtime_ns != before:
                return
            time.sleep(0.01)
        raise RuntimeError(f"mosquitto did not write {db} within {timeout} s")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its working directory if this object made it."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"MosquittoBroker(port={self.port}, {state})"
