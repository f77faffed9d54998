"""Run the dashboard with uvicorn on a background thread (for the demo) or in the
foreground (``fieldmq dashboard``)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time

import uvicorn

from ..errors import ConfigError
from .app import create_app
from .hub import Hub

__all__ = ["DashboardServer", "check_port"]

log = logging.getLogger("fieldmq.dashboard")


def check_port(host: str, port: int) -> None:
    """Raise :class:`~fieldmq.ConfigError` naming the port when it cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"dashboard port {port} on {host} is already in use; choose another with "
                    "--port", key="port", source="--port",
                ) from exc
            raise ConfigError(f"cannot listen on {host}:{port}: {exc}", key="port") from exc


class DashboardServer:
    """The dashboard on ``http://host:port/``; ``start()`` returns once it answers."""

    def __init__(self, hub: Hub, *, host: str = "127.0.0.1", port: int = 8050,
                 title: str = "fieldmq fleet") -> None:
        self.hub = hub
        self.host = host
        self.port = port
        config = uvicorn.Config(create_app(hub, title=title), host=host, port=port,
                                log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout: float = 15.0) -> DashboardServer:
        check_port(self.host, self.port)
        self._thread = threading.Thread(target=self._server.run, name="fieldmq-dashboard",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.started:
                return self
            if not self._thread.is_alive():
                raise ConfigError(f"the dashboard could not start on {self.host}:{self.port}")
            time.sleep(0.02)
        raise ConfigError(f"the dashboard did not start within {timeout} s")

    def run(self) -> None:
        """Serve in the foreground until interrupted."""
        check_port(self.host, self.port)
        self._server.run()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
