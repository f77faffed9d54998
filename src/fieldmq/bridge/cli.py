"""``fieldmq bridge --from URL --to URL --config bridge.toml``.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT), 1 failed at run time, 75 another
bridge holds this state directory, 78 invalid configuration (the message names
the mapping or key and the problem).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FieldmqError
from .bridge import Bridge
from .config import BridgeConfig, load_config
from .observe import OfflineTimer, bridge_health, render_metrics

__all__ = ["register", "run"]

log = logging.getLogger("fieldmq.bridge")

EXIT_ALREADY_RUNNING = 75
EXIT_CONFIG = 78


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bridge",
        help="forward topics between a local and an upstream broker, durably",
        description="Forward mapped topics from a local broker to an upstream broker (and "
        "command topics back) through durable stores, with priorities, a bandwidth cap and "
        "rollups. See docs/bridge.md.",
    )
    p.add_argument("--from", dest="local_url", metavar="URL",
                   help="local broker, e.g. mqtt://127.0.0.1:1883 (overrides local.url)")
    p.add_argument("--to", dest="upstream_url", metavar="URL",
                   help="upstream broker, e.g. mqtts://cloud:8883 (overrides upstream.url)")
    p.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration")
    p.add_argument("--state-dir", metavar="DIR", help="stores and lock (overrides state_dir)")
    p.add_argument("--http-port", type=int, metavar="PORT",
                   help="serve /health and /metrics on 127.0.0.1:PORT (overrides http.port)")
    p.add_argument("--check", action="store_true",
                   help="check the configuration, print the mappings and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, local=args.local_url, upstream=args.upstream_url)
    except ConfigError as exc:
        print(f"fieldmq bridge: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.http_port is not None:
        cfg = replace(cfg, http_port=args.http_port)
    if args.check:
        _print_mappings(cfg)
        return 0
    state_dir = Path(args.state_dir) if args.state_dir else cfg.state_dir
    if state_dir is None:
        from ..runtime.state import default_state_dir

        state_dir = default_state_dir(f"bridge-{cfg.id}"[:64])
    return _serve(cfg, state_dir)


def _print_mappings(cfg: BridgeConfig) -> None:
    from ..client.config import parse_broker_url

    lo, up = (str(parse_broker_url(u)) for u in (cfg.local.url, cfg.upstream.url))
    print(f"bridge {cfg.id}: {lo} ({cfg.local.broker_name}) -> {up} "
          f"({cfg.upstream.broker_name})")
    for m in cfg.mappings:
        arrow = "->" if m.direction == "forward" else "<-"
        extra = f" rollup every {m.rollup.interval:g}s of {m.rollup.field}" if m.rollup else ""
        print(f"  {m.direction:7} {m.name}: {m.source} {arrow} {m.target} "
              f"qos={m.qos} priority={m.priority}{extra}")


def _service(cfg: BridgeConfig, state_dir: Path) -> Any:
    """The runtime Service: lock, online/offline status and heartbeats on the local
    broker, systemd READY/WATCHDOG/STOPPING, SIGTERM/SIGINT handling."""
    from ..runtime.config import ServiceConfig, WatchdogSettings
    from ..runtime.service import Service

    link = cfg.local
    assert link.url is not None
    tls = link.tls
    sc = ServiceConfig(
        app="bridge", group="fieldmq-bridge", node=cfg.id, client_id=f"{cfg.id}-status",
        brokers=(link.url,), username=link.username, password=link.password,
        protocol=link.protocol, keepalive=link.keepalive, state_dir=state_dir, store="memory",
        heartbeat_interval=cfg.heartbeat_interval,
        # the watchdog is fed only while the bridge's ticker makes progress (beat() below)
        watchdog=WatchdogSettings(beat_timeout=30.0),
        tls_ca_file=Path(tls.ca_file) if tls and tls.ca_file else None,
        tls_cert_file=Path(tls.cert_file) if tls and tls.cert_file else None,
        tls_key_file=Path(tls.key_file) if tls and tls.key_file else None,
    )
    return Service(sc)


def _serve(cfg: BridgeConfig, state_dir: Path) -> int:
    stop = threading.Event()
    service = None
    if cfg.service:
        from ..runtime.lock import AlreadyRunning

        try:
            service = _service(cfg, state_dir).start()
        except AlreadyRunning as exc:
            print(f"fieldmq bridge: {exc}", file=sys.stderr)
            return EXIT_ALREADY_RUNNING
        except ConfigError as exc:
            print(f"fieldmq bridge: invalid configuration: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except (FieldmqError, OSError) as exc:
            print(f"fieldmq bridge: cannot start: {exc}", file=sys.stderr)
            return 1
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    http = None
    try:
        bridge = Bridge(cfg, state_dir=state_dir).start()
    except (FieldmqError, OSError, ValueError) as exc:
        print(f"fieldmq bridge: cannot start: {exc}", file=sys.stderr)
        if service is not None:
            service.stop()
        return 1
    try:
        if cfg.http_port is not None:
            http = _http(cfg, bridge)
        while not (service.wait(1.0) if service is not None else stop.wait(1.0)):
            if service is not None and bridge.stats()["tick_age"] < 30:
                service.beat()
    finally:
        log.info("bridge %s: stopping", cfg.id)
        if http is not None:
            http.close()
        if service is not None:
            service.stop(timeout=1.0)
        bridge.close(timeout=2.0)
    return 0


def _http(cfg: BridgeConfig, bridge: Bridge) -> Any:
    from ..runtime.httpserver import HealthServer

    up_timer, local_timer = OfflineTimer(), OfflineTimer()

    def report() -> Any:
        stats = bridge.stats()
        return bridge_health(
            stats, max_messages=cfg.upstream.max_messages, max_bytes=cfg.upstream.max_bytes,
            upstream_offline_for=up_timer.update(bool(stats.get("upstream", {}).get("connected"))),
            local_offline_for=local_timer.update(bool(stats.get("local", {}).get("connected"))),
        ), stats

    def health() -> tuple[int, dict[str, Any]]:
        rep, stats = report()
        body = rep.as_dict()
        body.update(bridge=cfg.id, mappings=stats.get("mappings", {}))
        return rep.http_status, body

    def metrics() -> tuple[bytes, str]:
        rep, stats = report()
        return render_metrics(stats, rep), "text/plain; version=0.0.4; charset=utf-8"

    server = HealthServer(host=cfg.http_host, port=cfg.http_port or 0, health=health,
                          metrics=metrics, name=f"fieldmq-http-bridge-{cfg.id}")
    log.info("bridge %s: /health and /metrics at %s", cfg.id, server.url)
    return server
