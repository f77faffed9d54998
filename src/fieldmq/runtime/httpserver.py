"""The ``/health`` and ``/metrics`` HTTP server (stdlib ``http.server``).

Bound to ``127.0.0.1`` by default: health and metrics describe the device and
should be exposed on purpose (``http.host = "0.0.0.0"``), not by accident. The
server runs on its own named daemon thread and answers:

* ``GET /health`` -- the :class:`~fieldmq.runtime.health.HealthReport` as JSON,
  200 for healthy and degraded, 503 for unhealthy (load balancers and
  ``curl --fail`` understand that);
* ``GET /metrics`` -- Prometheus text exposition (404 without ``prometheus-client``);
* anything else -- 404; methods other than GET/HEAD -- 405.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import FieldmqError

__all__ = ["HealthServer"]

log = logging.getLogger("fieldmq.runtime")

HealthFn = Callable[[], tuple[int, dict[str, Any]]]
MetricsFn = Callable[[], tuple[bytes, str]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, data: dict[str, Any]) -> None:
        self._send(code, json.dumps(data, sort_keys=True).encode() + b"\n", "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/health":
                code, data = self.server.health()
                self._json(code, data)
            elif path == "/metrics" and self.server.metrics is not None:
                body, ctype = self.server.metrics()
                self._send(200, body, ctype)
            else:
                self._json(404, {"error": f"no such endpoint {path!r}; try /health or /metrics"})
        except Exception:
            log.exception("HTTP %s failed", path)
            self._json(500, {"error": "internal error; see the service log"})

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], health: HealthFn, metrics: MetricsFn | None) -> None:
        self.health = health
        self.metrics = metrics
        super().__init__(addr, _Handler)


class HealthServer:
    """Serve ``health()`` at ``/health`` and ``metrics()`` at ``/metrics``.

    ``port=0`` picks a free port; read it back from :attr:`port`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        health: HealthFn,
        metrics: MetricsFn | None = None,
        name: str = "fieldmq-http",
    ) -> None:
        try:
            self._server = _Server((host, port), health, metrics)
        except OSError as exc:
            raise FieldmqError(
                f"cannot serve /health on {host}:{port}: {exc.strerror}; "
                "choose another http.port"
            ) from exc
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=name,
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5.0)
        self._server.server_close()

    def __repr__(self) -> str:
        return f"HealthServer(url={self.url!r})"
