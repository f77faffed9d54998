"""The demo's broker: mosquitto when it is installed, otherwise amqtt in a process.

Both offer the same small lifecycle (``start``/``stop``/``kill``, ``url``, ``port``), so the
demo's scripted outage can stop and restart either."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from ..testing.broker import MosquittoBroker, MosquittoNotFound

__all__ = ["AmqttBroker", "DemoBroker", "choose_broker"]


class DemoBroker(Protocol):
    port: int

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start(self, timeout: float = 10.0) -> object: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def kill(self, timeout: float = 10.0) -> None: ...

    def close(self) -> None: ...


class AmqttBroker:
    """amqtt in a child process on 127.0.0.1:``port``. See :mod:`.amqtt_broker` for its
    limits and how the demo works around them."""

    kind = "amqtt"
    protocol = 4

    def __init__(self, *, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "amqtt.log"

    @property
    def url(self) -> str:
        return f"mqtt://demo@127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> AmqttBroker:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self._log.open("ab")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "fieldmq.demo.amqtt_broker", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-400:]
                self._proc = None
                raise RuntimeError(f"amqtt exited at start on port {self.port}: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"amqtt did not accept connections on port {self.port} in {timeout}s")

    def _signal(self, sig: int, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        self._signal(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        self._signal(signal.SIGKILL, timeout)

    def close(self) -> None:
        self.kill()


def choose_broker(*, port: int, workdir: Path, prefer: str = "auto") -> DemoBroker:
    """mosquitto when available (or asked for), else amqtt. ``prefer``: auto|mosquitto|amqtt."""
    if prefer not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"broker must be auto, mosquitto or amqtt, got {prefer!r}")
    if prefer in ("auto", "mosquitto"):
        try:
            return MosquittoBroker(port=port, workdir=workdir / "mosquitto")
        except MosquittoNotFound:
            if prefer == "mosquitto":
                raise
    return AmqttBroker(port=port, workdir=workdir / "amqtt")
