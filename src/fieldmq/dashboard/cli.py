"""``fieldmq dashboard``: the live web dashboard against an existing broker."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

__all__ = ["register"]

log = logging.getLogger("fieldmq.dashboard")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve the live fleet dashboard",
        description="Serve the live fleet dashboard for the fleet on a broker.",
    )
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL to watch")
    p.add_argument("--group", default="+", help="topic group of the fleet (default: all)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    p.add_argument("--title", default="fieldmq fleet", help="page title")
    p.add_argument("--db", default=None,
                   help="ingest database to show first (duckdb:PATH, a .duckdb file or "
                        "postgresql://...); read-only")
    p.add_argument("--no-broker", action="store_true",
                   help="show only the database, do not subscribe to a broker")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        from .hub import Hub
        from .server import DashboardServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(
            f"fieldmq dashboard needs the dashboard extra: pip install 'fieldmq[dashboard]' ({exc})"
        ) from exc
    from ..client.config import parse_broker_url
    from ..errors import ConfigError

    if not 1 <= args.port <= 65535:
        print(f"fieldmq dashboard: --port must be 1-65535, got {args.port}")
        return 2
    try:
        parse_broker_url(args.broker)
    except (TypeError, ValueError) as exc:
        print(f"fieldmq dashboard: --broker: {exc}")
        return 2
    hub = Hub().start()
    if args.db:
        from ..ingest import SinkError, open_sink
        from .history import load_history

        try:
            sink = open_sink(args.db, read_only=True)
        except (SinkError, ValueError, OSError) as exc:
            hub.close()
            print(f"fieldmq dashboard: --db {args.db}: {exc}")
            return 2
        try:
            with hub.lock:
                n = load_history(hub.model, sink)
        finally:
            sink.close()
        print(f"loaded {n} readings from {args.db}", flush=True)
    if not args.no_broker:
        hub.connect(args.broker, group=args.group)
    server = DashboardServer(hub, host=args.host, port=args.port, title=args.title)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except ConfigError as exc:
        hub.close()
        print(f"fieldmq dashboard: {exc}")
        return 2
    print(f"dashboard on {server.url} watching {args.broker} (Ctrl-C to stop)", flush=True)
    stop.wait()
    server.stop()
    hub.close()
    return 0
