"""``fieldmq run`` and ``fieldmq dlq list | replay | purge``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["register"]

EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run a router in supervised worker processes",
        description="Start a supervisor and worker processes serving the routes of APP.",
    )
    run.add_argument("app", help="the router to run, as module:attribute (e.g. myapp:router)")
    run.add_argument("--broker", action="append", dest="brokers", metavar="URL",
                     help="broker URL (repeat for failover); default $FIELDMQ_BROKER or "
                          "mqtt://127.0.0.1:1883")
    run.add_argument("--workers", type=int, help="worker processes (default: the largest "
                     "route worker count, or --min-workers)")
    run.add_argument("--min-workers", type=int, help="enable autoscaling: at least this many")
    run.add_argument("--max-workers", type=int, help="enable autoscaling: at most this many")
    run.add_argument("--latency-target", type=float, help="autoscaling: scale up when the "
                     "mean seconds per message exceeds this")
    run.add_argument("--dead-letters", default="fieldmq-dead-letters.db", metavar="FILE",
                     help="the SQLite dead-letter store (default %(default)s)")
    run.add_argument("--dead-letter-topic", metavar="PREFIX",
                     help="also publish dead letters to PREFIX/<original topic>")
    run.add_argument("--prefetch", type=int, default=100, help="unacknowledged messages a "
                     "connection may hold (MQTT 5 receive maximum, default %(default)s)")
    run.add_argument("--shutdown-timeout", type=float, default=10.0,
                     help="seconds in-flight handlers get after SIGTERM (default %(default)s)")
    run.add_argument("--client-prefix", help="client id prefix (default <router name>-<host>)")
    run.add_argument("--http-port", type=int, help="serve /health and /metrics on this port")
    run.add_argument("--http-host", default="127.0.0.1")
    run.add_argument("--max-restarts", type=int, default=5, help="deaths of one worker within "
                     "--restart-window seconds that count as a crash loop (default %(default)s)")
    run.add_argument("--restart-window", type=float, default=60.0)
    run.add_argument("--start-method", choices=["spawn", "forkserver"], default="spawn")
    run.add_argument("--username", default=os.environ.get("FIELDMQ_USERNAME"))
    run.add_argument("--path", action="append", default=[], metavar="DIR",
                     help="add DIR to sys.path before importing APP (default: the cwd)")
    run.set_defaults(func=_run)

    dlq = subparsers.add_parser("dlq", help="inspect, replay or purge dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    for name, helptext in (("list", "print dead letters as JSON lines"),
                           ("replay", "publish dead letters again, then delete them"),
                           ("purge", "delete dead letters")):
        p = dsub.add_parser(name, help=helptext)
        p.add_argument("--dead-letters", default="fieldmq-dead-letters.db", metavar="FILE")
        p.add_argument("--route", help="only the dead letters of this route pattern")
        if name != "purge":
            p.add_argument("--limit", type=int, default=None)
        if name == "replay":
            p.add_argument("--broker", action="append", dest="brokers", metavar="URL")
            p.add_argument("--username", default=os.environ.get("FIELDMQ_USERNAME"))
        p.set_defaults(func=_dlq)


def _brokers(args: argparse.Namespace) -> tuple[str, ...]:
    if args.brokers:
        return tuple(args.brokers)
    env = os.environ.get("FIELDMQ_BROKER")
    return tuple(env.split(",")) if env else ("mqtt://127.0.0.1:1883",)


def _err(text: str) -> int:
    print(f"fieldmq: {text}", file=sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    import logging

    from .loader import load_router
    from .restarts import RestartPolicy
    from .scaling import ScalingPolicy
    from .supervisor import RunSettings, Supervisor

    for path in reversed([os.getcwd(), *args.path]):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        router = load_router(args.app)
    except (ImportError, ValueError) as exc:
        return _err(f"cannot load {args.app}: {exc}")
    scaling = None
    if args.min_workers is not None or args.max_workers is not None:
        lo = args.min_workers or 1
        hi = args.max_workers or max(lo, args.workers or lo)
        try:
            scaling = ScalingPolicy(min_workers=lo, max_workers=hi,
                                    latency_target=args.latency_target)
        except ValueError as exc:
            return _err(str(exc))
    root = logging.getLogger("fieldmq")
    try:
        settings = RunSettings(
            brokers=_brokers(args), workers=args.workers, client_prefix=args.client_prefix,
            dead_letters=os.path.abspath(args.dead_letters),
            dead_letter_topic=args.dead_letter_topic, receive_maximum=args.prefetch,
            shutdown_timeout=args.shutdown_timeout, username=args.username,
            password=os.environ.get("FIELDMQ_PASSWORD"), start_method=args.start_method,
            scaling=scaling, restart=RestartPolicy(max_restarts=args.max_restarts,
                                                   window=args.restart_window),
            http_host=args.http_host, http_port=args.http_port,
            log_level=logging.getLevelName(root.level),
            log_json=any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers),
        )
        sup = Supervisor(app=args.app, router=router, settings=settings)
    except ValueError as exc:
        return _err(str(exc))
    return sup.run()


def _dlq(args: argparse.Namespace) -> int:
    from .deadletter import DeadLetterStore

    if not os.path.exists(args.dead_letters):
        return _err(f"no dead-letter store at {args.dead_letters}")
    with DeadLetterStore(args.dead_letters) as store:
        if args.dlq_command == "list":
            for dl in store.list(limit=args.limit, route=args.route):
                print(json.dumps(dl.as_dict(), sort_keys=True))
            return 0
        if args.dlq_command == "purge":
            print(f"purged {store.purge(route=args.route)} dead letter(s)")
            return 0
        from ..client.client import Client

        letters = store.list(limit=args.limit, route=args.route)
        with Client(client_id=f"fieldmq-dlq-replay-{os.getpid()}", brokers=_brokers(args),
                    username=args.username, password=os.environ.get("FIELDMQ_PASSWORD")) as c:
            handles = [c.publish(dl.topic, dl.payload, qos=max(1, dl.qos), retain=dl.retain)
                       for dl in letters]
            for h in handles:
                h.wait(timeout=30)
        store.delete(dl.id for dl in letters)
        print(f"replayed {len(letters)} dead letter(s)")
        return 0
