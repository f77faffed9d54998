"""Ingest throughput: MQTT into each sink, against a plain paho subscriber that discards.

    .venv/bin/python benchmarks/ingest_bench.py [--messages 20000] [--runs 3] [--json]

A backlog of N telemetry messages (the simulator's JSON shape, 6 metrics) waits in the
broker for each consumer's persistent session; each consumer then drains it, and the
rate is N / time from connect to the last message committed (acknowledged). Each run
measures every consumer once (paho first), so ratios are taken within a run; the table
shows medians over the runs. CPU is this process's user + system time per message while
draining (all its threads); for PostgreSQL, the server backend's CPU is shown apart.
Also the batch insert rate into DuckDB (Ingestor.process on 5,000-message batches, no
MQTT; 7 rows per message). Detection is off (then payloads are expanded in the sink's
engine). Targets (issue 7): ingest >= 0.8x the paho subscriber; DuckDB >= 100k rows/s.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fieldmq import Client, Message
from fieldmq.ingest import BatchPolicy, IngestConfig, Ingestor, open_sink
from fieldmq.testing import MosquittoBroker

TOPIC = "fleet/dev-{:03d}/data/telemetry"


def payload(i: int) -> bytes:
    return json.dumps({"device": f"dev-{i % 50:03d}", "ts": 1.7e9 + i, "tick": i,
                       "cpu_percent": 20 + i % 7, "temperature_c": 40.5, "memory_percent": 55.0,
                       "signal_dbm": -70, "battery_percent": 80.0, "load": 0.5}).encode()


def prepare(url: str, client_id: str, n: int) -> None:
    """Create the consumer's persistent session, then queue N messages for it."""
    with Client(client_id=client_id, brokers=[url], persistent_session=True) as c:
        c.subscribe("fleet/+/data/telemetry", lambda m: None, timeout=10)
    with Client(client_id=f"{client_id}-loader", brokers=[url], window=2000) as pub:
        for i in range(n):
            pub.publish(TOPIC.format(i % 50), payload(i), qos=1)
        assert pub.drain(300)


def paho_rate(broker: MosquittoBroker, n: int) -> tuple[float, float]:
    """(messages/s, CPU seconds per message) of a paho subscriber that discards."""
    prepare(broker.url, "bench-paho", n)
    done = threading.Event()
    count = [0]

    def on_message(c: Any, u: Any, msg: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho",
                    protocol=mqtt.MQTTv5)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    t0, c0 = time.perf_counter(), time.process_time()
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    sock = c.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.loop_start()
    done.wait(300)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.disconnect()
    c.loop_stop()
    return n / elapsed, cpu / n


def client_rate(broker: MosquittoBroker, n: int) -> tuple[float, float, None]:
    """The fieldmq client alone (manual acks, each message acknowledged at once and
    discarded): the receive path every ingest pays before any sink work."""
    cid = "bench-client"
    prepare(broker.url, cid, n)
    done = threading.Event()
    count = [0]

    def on_message(msg: Message) -> None:
        msg.ack()
        count[0] += 1
        if count[0] >= n:
            done.set()

    t0, c0 = time.perf_counter(), time.process_time()
    with Client(client_id=cid, brokers=[broker.url], ack="manual", persistent_session=True,
                receive_maximum=2000) as client:
        client.subscribe("fleet/+/data/telemetry", on_message, qos=1)
        done.wait(300)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / elapsed, cpu / n, None


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_rate(broker: MosquittoBroker, n: int, spec: str, name: str
                ) -> tuple[float, float, float | None]:
    """(messages/s, CPU s/message here, PostgreSQL backend CPU s/message or None)."""
    cid = f"bench-ingest-{name}"
    prepare(broker.url, cid, n)
    with open_sink(spec, writer=name) as sink:
        backend = (int(sink.query("select pg_backend_pid()").rows[0][0])
                   if name == "postgres" else None)
        server0 = _proc_cpu(backend) if backend else 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        # receive_maximum twice the batch, as `fieldmq ingest` does by default
        with Client(client_id=cid, brokers=[broker.url], ack="manual",
                    persistent_session=True, receive_maximum=4000) as client:
            ing = Ingestor(sink=sink, client=client, config=IngestConfig(
                group="fleet", batch=BatchPolicy(max_rows=2000, max_delay=0.5), detect=None))
            ing.run(max_messages=n)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        server = (_proc_cpu(backend) - server0) / n if backend else None
    return n / elapsed, cpu / n, server


def duckdb_insert_rate(tmp: Path, n: int = 50_000) -> float:
    msgs = [Message(TOPIC.format(i % 50), payload(i), 1, False, f"m-{i}") for i in range(n)]
    with open_sink(f"duckdb:{tmp / 'insert.duckdb'}") as sink:
        ing = Ingestor(sink=sink, client=None, config=IngestConfig(detect=None))
        t0 = time.perf_counter()
        rows = 0
        for i in range(0, n, 5000):
            ing.process(msgs[i:i + 5000])
            rows += 5000 * 7  # one message row + 6 readings each
        return rows / (time.perf_counter() - t0)


def one_run(tmp: Path, n: int, pg: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"load_1min": os.getloadavg()[0]}
    with MosquittoBroker(workdir=tmp / "broker") as broker:
        out["paho"] = paho_rate(broker, n)
        out["client"] = client_rate(broker, n)
        sinks = {"memory": "memory:", "duckdb": f"duckdb:{tmp / 'fleet.duckdb'}",
                 "parquet": f"parquet:{tmp / 'parquet'}"}
        if pg:
            sinks["postgres"] = pg
        for name, spec in sinks.items():
            out[name] = ingest_rate(broker, n, spec, name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.messages
    pg: str | None = None
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        url = os.environ.get("FIELDMQ_TEST_POSTGRES",
                             "postgresql://postgres@127.0.0.1:5432/test")
        pg = url + "?schema=bench_ingest"
    except OSError:
        pass
    runs = []
    for r in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix=f"fieldmq-ingest-bench-{r}-"))
        if pg:
            with open_sink(pg) as sink:
                sink.drop()  # type: ignore[attr-defined]
        runs.append(one_run(tmp, n, pg))
    rows_per_s = [duckdb_insert_rate(Path(tempfile.mkdtemp(prefix="fieldmq-insert-")))
                  for _ in range(args.runs)]
    med = statistics.median
    print(f"{n:,} messages, {args.runs} runs (medians); 1-min load at the start of each run: "
          + ", ".join(f"{r['load_1min']:.1f}" for r in runs))
    print(f"{'consumer':24s} {'msgs/s':>9s} {'vs paho':>8s} {'CPU us/msg':>11s} "
          f"{'vs paho':>8s}")
    base_cpu = med(r["paho"][1] for r in runs)
    print(f"{'paho (discards)':24s} {med(r['paho'][0] for r in runs):9,.0f} {1.0:8.2f} "
          f"{base_cpu * 1e6:11.1f} {1.0:8.2f}")
    for name in [k for k in runs[0] if k not in ("paho", "load_1min")]:
        rate = med(r[name][0] for r in runs)
        ratio = med(r[name][0] / r["paho"][0] for r in runs)
        cpu = med(r[name][1] for r in runs)
        cpu_ratio = med(r[name][1] / r["paho"][1] for r in runs)
        extra = ""
        if runs[0][name][2] is not None:
            extra = f"  (+ server backend {med(r[name][2] for r in runs) * 1e6:.1f} us/msg)"
        label = "fieldmq client (no sink)" if name == "client" else "fieldmq ingest " + name
        print(f"{label:24s} {rate:9,.0f} {ratio:8.2f} {cpu * 1e6:11.1f} "
              f"{cpu_ratio:8.2f}{extra}")
    print(f"DuckDB batch insert: {med(rows_per_s):,.0f} rows/s (target 100,000)")
    if args.json:
        print(json.dumps({"messages": n, "runs": runs, "duckdb_rows_per_s": rows_per_s}))


if __name__ == "__main__":
    main()
