"""`fieldmq ingest` as a real process against a real mosquitto: kill -9 mid-batch loses
nothing and duplicates nothing; DuckDB's single writer gives a clear error; several
processes share one subscription group."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldmq import Client
from fieldmq.ingest.errors import SinkLocked
from fieldmq.ingest.sinks.base import open_sink
from fieldmq.ingest.sinks.duckdb import DuckDBSink
from fieldmq.testing import MosquittoBroker

from .support import IngestProcess, drop_schema, pg_schema_url


@pytest.fixture
def procs() -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for p in started:
        p.kill()


def items(group: str, n: int, start: int = 0) -> list[tuple[str, bytes]]:
    out = []
    for i in range(start, start + n):
        dev = f"dev-{i % 5}"
        payload = {"device": dev, "ts": 1_700_000_000 + i, "cpu": float(i % 50),
                   "mem": 40.0 + i % 7}
        out.append((f"{group}/{dev}/data/telemetry", json.dumps(payload).encode()))
    return out


def prime(broker: MosquittoBroker, group: str, proc: IngestProcess) -> None:
    """Publish probes until the ingest process has committed one (it is subscribed)."""
    with Client(client_id=f"probe-{uuid.uuid4().hex[:6]}", brokers=[broker.url]) as c:
        for i in range(600):
            c.publish(f"{group}/probe/data/telemetry", json.dumps({"p": i}).encode(), qos=1)
            if proc.wait_total(1, timeout=0.1):
                return
    raise AssertionError(f"ingest never committed a probe:\n{proc.log()}")


def publish(broker: MosquittoBroker, batch: list[tuple[str, bytes]]) -> set[str]:
    """Publish with a durable client; the set of message ids, all acked by the broker."""
    with Client(client_id=f"pub-{uuid.uuid4().hex[:6]}", brokers=[broker.url]) as c:
        handles = [c.publish(topic, payload, qos=1) for topic, payload in batch]
        for h in handles:
            h.wait(timeout=60)
    return {h.message_id for h in handles}


@pytest.mark.parametrize("detector", ["mad", "off"])
def test_sigkill_mid_batch_loses_and_duplicates_nothing(
    detector: str, mosquitto: MosquittoBroker, tmp_path: Path, procs: list[IngestProcess]
) -> None:
    """SIGKILL while a batch is open, restart: every message stored exactly once (with
    detection the payloads are decoded in Python, without it they are expanded in SQL)."""
    db = tmp_path / "fleet.duckdb"
    group = f"g{uuid.uuid4().hex[:6]}"
    args = ("--broker", mosquitto.url, "--sink", f"duckdb:{db}", "--group", group,
            "--client-id", f"ing-{group}", "--batch-size", "200", "--batch-delay", "5",
            "--detector", detector)
    first = IngestProcess(*args)
    procs.append(first)
    prime(mosquitto, group, first)
    with pytest.raises(SinkLocked, match="one writer process"):
        DuckDBSink(db)
    sent = publish(mosquitto, items(group, 3000))
    assert first.wait_total(401), first.log()
    first.kill()
    assert first.total() < 3001  # killed before it had everything
    second = IngestProcess(*args, "--idle-exit", "2")
    procs.append(second)
    assert second.finish() == 0, second.log()
    with DuckDBSink(db, read_only=True) as sink:
        rows = sink.query("select message_id from messages where device <> 'probe'").rows
        stored = [r[0] for r in rows]
        readings = sink.query("select count(*) from readings where device <> 'probe'").rows
        n = sink.query("select sum(n) from rollups where width = 3600 and metric = 'cpu' "
                       "and device <> 'probe'").rows
    why = (f"{len(stored)} stored ({len(set(stored))} distinct), {len(sent - set(stored))} "
           f"missing; first committed {first.total()}; second log:\n{second.log()[-3000:]}")
    assert len(stored) == len(set(stored)) == 3000, why
    assert set(stored) == sent, why
    assert readings[0][0] == 6000 and n[0][0] == 3000, why


def test_replayed_messages_are_stored_once(
    mosquitto: MosquittoBroker, tmp_path: Path, procs: list[IngestProcess]
) -> None:
    """The same message ids published again (a sender replaying) add no rows."""
    db = tmp_path / "fleet.duckdb"
    group = f"g{uuid.uuid4().hex[:6]}"
    proc = IngestProcess("--broker", mosquitto.url, "--sink", f"duckdb:{db}", "--group", group,
                         "--client-id", f"ing-{group}", "--batch-size", "50",
                         "--batch-delay", "0.2", "--idle-exit", "3")
    procs.append(proc)
    prime(mosquitto, group, proc)
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    raw.connect(mosquitto.host, mosquitto.port)
    raw.loop_start()
    try:
        for _round in range(2):
            for i, (topic, payload) in enumerate(items(group, 100)):
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = ("fmq-id", f"replay-{i}")
                raw.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)
    finally:
        raw.loop_stop()
        raw.disconnect()
        # paho's loop_start() made a socket pair that only reinitialise() or the object's
        # collection closes; close it now, not in a garbage collection after the test.
        raw.reinitialise()
    assert proc.finish() == 0, proc.log()
    with DuckDBSink(db, read_only=True) as sink:
        got = sink.query("select count(*), count(distinct message_id) from messages "
                         "where message_id like 'replay-%'").rows[0]
    assert tuple(got) == (100, 100)
    assert "100 duplicates" in proc.log() or "duplicates" in proc.log()


@pytest.mark.parametrize("kind", ["postgres", "parquet"])
def test_two_processes_in_a_share_group(
    kind: str, mosquitto: MosquittoBroker, tmp_path: Path, procs: list[IngestProcess]
) -> None:
    """Two ingest processes in one $share group split the stream; each row stored once
    (one decodes in Python for detection, the other lets the engine expand payloads)."""
    schema = ""
    if kind == "postgres":
        spec, schema = pg_schema_url()
    else:
        spec = f"parquet:{tmp_path / 'lake'}"
    group = f"g{uuid.uuid4().hex[:6]}"
    try:
        workers = [IngestProcess("--broker", mosquitto.url, "--sink", spec, "--group", group,
                                 "--share", "ingest", "--client-id", f"ing-{group}-{n}",
                                 "--batch-size", "100", "--batch-delay", "0.3",
                                 "--idle-exit", "3", "--detector", ("mad", "off")[n])
                   for n in range(2)]
        procs.extend(workers)
        for w in workers:
            prime(mosquitto, group, w)
        sent = publish(mosquitto, items(group, 2000))
        for w in workers:
            assert w.finish() == 0, w.log()
        with open_sink(spec) as sink:
            rows = sink.query("select message_id from messages where device <> 'probe'").rows
        assert {r[0] for r in rows} == sent and len(rows) == 2000
        assert all(w.total() > 100 for w in workers), [w.total() for w in workers]
    finally:
        if schema:
            drop_schema(schema)
