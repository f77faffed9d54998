"""Ingest throughput: MQTT into each sink, against a plain paho subscriber that discards.

    .venv/bin/python benchmarks/ingest_bench.py [--messages 20000] [--json]

A backlog of N telemetry messages (the simulator's JSON shape, 6 metrics) waits in the
broker for each consumer's persistent session; each consumer then drains it, and the
rate is N / time from connect to the last message committed (acknowledged). Also the
batch insert rate into DuckDB (Ingestor.process on 5,000-message batches, no MQTT).
Targets (issue 7): ingest >= 0.8x the paho subscriber; DuckDB >= 100k rows/s.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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


def paho_rate(broker: MosquittoBroker, n: int) -> float:
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
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    t0 = time.perf_counter()
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    sock = c.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    c.loop_start()
    done.wait(300)
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return n / elapsed


def ingest_rate(broker: MosquittoBroker, n: int, spec: str, name: str) -> float:
    cid = f"bench-ingest-{name}"
    prepare(broker.url, cid, n)
    with open_sink(spec, writer=name) as sink:
        t0 = time.perf_counter()
        with Client(client_id=cid, brokers=[broker.url], ack="manual",
                    persistent_session=True, receive_maximum=2000) as client:
            ing = Ingestor(sink=sink, client=client, config=IngestConfig(
                group="fleet", batch=BatchPolicy(max_rows=2000, max_delay=0.5), detect=None))
            ing.run(max_messages=n)
        elapsed = time.perf_counter() - t0
    return n / elapsed


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="fieldmq-ingest-bench-"))
    results: dict[str, Any] = {"messages": n, "load_1min": os.getloadavg()[0]}
    with MosquittoBroker(workdir=tmp / "broker") as broker:
        results["paho_discard"] = paho_rate(broker, n)
        sinks = {"memory": "memory:", "duckdb": f"duckdb:{tmp / 'fleet.duckdb'}",
                 "parquet": f"parquet:{tmp / 'parquet'}"}
        pg = os.environ.get("FIELDMQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
            sinks["postgres"] = pg + "?schema=bench_ingest"
        except OSError:
            pass
        for name, spec in sinks.items():
            results[f"ingest_{name}"] = ingest_rate(broker, n, spec, name)
    results["duckdb_rows_per_s"] = duckdb_insert_rate(tmp)
    base = results["paho_discard"]
    print(f"{'consumer':24s} {'msgs/s':>10s} {'vs paho':>8s}")
    print(f"{'paho (discards)':24s} {base:10,.0f} {1.0:8.2f}")
    for k, v in results.items():
        if k.startswith("ingest_"):
            print(f"{'fieldmq ingest ' + k[7:]:24s} {v:10,.0f} {v / base:8.2f}")
    print(f"DuckDB batch insert: {results['duckdb_rows_per_s']:,.0f} rows/s (target 100,000)")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
