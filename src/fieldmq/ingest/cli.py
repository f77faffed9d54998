"""``fieldmq ingest``, ``fieldmq score``, ``fieldmq query`` and ``fieldmq report``.

Exit codes: 0 success, 1 a target missed (``score --min-precision``), 2 bad usage,
69 the broker or the sink is unavailable (a DuckDB file locked by another process too),
78 bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from typing import Any

from ..errors import FieldmqError
from .batching import BatchPolicy
from .detect import DetectorConfig, EWMAConfig, MADConfig
from .errors import MissingDependency, SinkError
from .pipeline import DEFAULT_FILTERS, IngestConfig

__all__ = ["register"]

log = logging.getLogger("fieldmq.ingest")

DEFAULT_SINK = "duckdb:fieldmq.duckdb"
EX_UNAVAILABLE = 69
EX_CONFIG = 78


def _fmt(args: argparse.Namespace) -> str:
    return "json" if args.json else "csv" if args.csv else "table"


def _add_output(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print JSON")
    g.add_argument("--csv", action="store_true", help="print CSV")


def _add_sink(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sink", default=os.environ.get("FIELDMQ_SINK", DEFAULT_SINK),
                   help="duckdb:PATH (default fieldmq.duckdb), parquet:DIR, "
                        "postgresql://... (?schema=NAME) or memory: [env FIELDMQ_SINK]")


def register(sub: Any) -> None:
    p = sub.add_parser("ingest", help="consume telemetry into a sink, detect anomalies",
                       description="Consume MQTT messages into a sink in batches; each "
                       "message is acknowledged only after its batch is committed.")
    p.add_argument("--broker", action="append", dest="brokers",
                   help="broker URL, repeatable for failover (default mqtt://127.0.0.1:1883)")
    _add_sink(p)
    p.add_argument("--filter", action="append", dest="filters", metavar="FILTER",
                   help="topic filter, repeatable; '{group}' is replaced "
                        f"(default: {', '.join(DEFAULT_FILTERS)})")
    p.add_argument("--group", default="fleet", help="topic group (default fleet)")
    p.add_argument("--share", metavar="NAME",
                   help="join the shared-subscription group $share/NAME (several processes)")
    p.add_argument("--client-id", help="stable MQTT client id; give each process its own "
                   "(default fieldmq-ingest-<host>)")
    p.add_argument("--store", help="outbox file for published alerts (default: in memory)")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per commit (1000)")
    p.add_argument("--batch-delay", type=float, default=1.0,
                   help="max seconds a message waits for its commit (1.0)")
    p.add_argument("--receive-maximum", type=int,
                   help="unacknowledged messages the broker may send (default: twice the "
                   "batch size, so the next batch arrives while one commits)")
    p.add_argument("--detector", choices=("mad", "ewma", "both", "off"), default="mad",
                   help="value detector (default mad)")
    p.add_argument("--threshold", type=float, help="z-score threshold (default 7 mad, 6 ewma)")
    p.add_argument("--no-publish-alerts", action="store_true",
                   help="store alerts without publishing them")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without a message")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("score", help="precision/recall of stored alerts against labels")
    _add_sink(p)
    p.add_argument("--labels", required=True, help="ground truth JSON lines (the simulator's)")
    p.add_argument("--tolerance", type=float, default=30.0,
                   help="seconds after a label's end an alert still matches (30)")
    p.add_argument("--min-precision", type=float, default=0.0)
    p.add_argument("--min-recall", type=float, default=0.0)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_score)

    p = sub.add_parser("query", help="run SQL over the ingested tables")
    p.add_argument("sql")
    _add_sink(p)
    _add_output(p)
    p.set_defaults(func=_query)

    p = sub.add_parser("report", help="fleet summaries")
    p.add_argument("what", choices=("fleet",))
    _add_sink(p)
    p.add_argument("--gap-factor", type=float, default=3.0,
                   help="an interval over this many median intervals is a gap (3)")
    _add_output(p)
    p.set_defaults(func=_report)


def _fail(code: int, text: str) -> int:
    print(f"fieldmq: {text}", file=sys.stderr)
    return code


def _open(spec: str, *, read_only: bool, writer: str = "") -> Any:
    from .sinks.base import open_sink

    return open_sink(spec, writer=writer, read_only=read_only)


def _ingest(args: argparse.Namespace) -> int:
    from ..client.client import Client

    try:
        policy = BatchPolicy(max_rows=args.batch_size, max_delay=args.batch_delay)
        detect: DetectorConfig | None = None
        if args.detector != "off":
            mad, ewma = MADConfig(), EWMAConfig()
            if args.threshold is not None:
                mad = MADConfig(threshold=args.threshold)
                ewma = EWMAConfig(threshold=args.threshold)
            detect = DetectorConfig(method=args.detector, mad=mad, ewma=ewma)
        config = IngestConfig(
            filters=tuple(args.filters or DEFAULT_FILTERS), group=args.group,
            share=args.share, batch=policy, detect=detect,
            publish_alerts=not args.no_publish_alerts)
        config.subscriptions()
    except (ValueError, TypeError) as exc:
        return _fail(EX_CONFIG, str(exc))
    client_id = args.client_id or f"fieldmq-ingest-{socket.gethostname()}"
    try:
        sink = _open(args.sink, read_only=False, writer=client_id)
    except (SinkError, MissingDependency) as exc:
        return _fail(EX_UNAVAILABLE, str(exc))
    except ValueError as exc:
        return _fail(EX_CONFIG, str(exc))
    from .pipeline import Ingestor

    try:
        client = Client(client_id=client_id,
                        brokers=args.brokers or ["mqtt://127.0.0.1:1883"], store=args.store,
                        ack="manual", persistent_session=True,
                        receive_maximum=args.receive_maximum
                        or min(2 * args.batch_size, 65535))
    except (ValueError, FieldmqError) as exc:
        sink.close()
        return _fail(EX_CONFIG, str(exc))
    ingestor = Ingestor(sink=sink, client=client, config=config)

    def on_signal(signum: int, frame: object) -> None:
        ingestor.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info("ingesting %s into %r as %s", ", ".join(config.subscriptions()), sink, client_id)
    try:
        ingestor.run(idle_exit=args.idle_exit)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        client.close()
        sink.close()
        log.info("stopped: %s", ingestor.stats.as_dict())
    return 0


def _read(args: argparse.Namespace) -> Any:
    return _open(args.sink, read_only=True)


def _query(args: argparse.Namespace) -> int:
    from .reports import render

    try:
        with _read(args) as sink:
            result = sink.query(args.sql)
    except (SinkError, MissingDependency) as exc:
        return _fail(EX_UNAVAILABLE if not isinstance(exc, SinkError) or
                     "query failed" not in str(exc) else 2, str(exc))
    except ValueError as exc:
        return _fail(EX_CONFIG, str(exc))
    print(render(result, _fmt(args)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .reports import fleet_report, render_fleet

    try:
        with _read(args) as sink:
            report = fleet_report(sink, gap_factor=args.gap_factor)
    except (SinkError, MissingDependency) as exc:
        return _fail(EX_UNAVAILABLE, str(exc))
    except ValueError as exc:
        return _fail(EX_CONFIG, str(exc))
    print(render_fleet(report, _fmt(args)))
    return 0


def _score(args: argparse.Namespace) -> int:
    import json

    from .scoring import load_labels, score

    try:
        labels = load_labels(args.labels)
    except OSError as exc:
        return _fail(EX_CONFIG, f"cannot read labels {args.labels!r}: {exc}")
    except ValueError as exc:
        return _fail(EX_CONFIG, str(exc))
    try:
        with _read(args) as sink:
            alerts = sink.query("select device, metric, ts from alerts").rows
    except (SinkError, MissingDependency) as exc:
        return _fail(EX_UNAVAILABLE, str(exc))
    try:
        result = score([(d, m, float(t)) for d, m, t in alerts], labels,
                       tolerance=args.tolerance)
    except ValueError as exc:
        return _fail(EX_CONFIG, str(exc))
    data = result.as_dict()
    if args.json:
        print(json.dumps(data))
    else:
        width = max(len(k) for k in data)
        for k, v in data.items():
            print(f"{k.ljust(width)}  {v}")
    ok = result.precision >= args.min_precision and result.recall >= args.min_recall
    return 0 if ok else 1
