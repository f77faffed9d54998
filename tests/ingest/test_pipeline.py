"""The Ingestor in-process against a real mosquitto: bad payloads go to `rejected`
without stopping ingestion, alerts are stored and published to <group>/<device>/alerts."""

from __future__ import annotations

import json
import random
import threading
import uuid
from typing import Any

import pytest

from fieldmq import Client, Message
from fieldmq.ingest import IngestConfig, Ingestor, MemorySink
from fieldmq.ingest.batching import BatchPolicy
from fieldmq.ingest.errors import SinkError
from fieldmq.testing import MosquittoBroker
from helpers import Collector, wait_until

from .support import FakeMessage


def test_process_acks_only_after_commit() -> None:
    """A failing sink write leaves every message unacknowledged."""
    class Broken(MemorySink):
        def write(self, batch: Any) -> Any:
            raise SinkError("disk full")

    msgs = [FakeMessage("fleet/d/data/telemetry", b'{"cpu": 1}', mid)
            for mid in ("m0", "m1", "m1", None)]
    with pytest.raises(SinkError, match="disk full"):
        Ingestor(sink=Broken()).process(msgs)
    assert [m.acked for m in msgs] == [0, 0, 0, 0]
    result = Ingestor(sink=MemorySink()).process(msgs)
    assert (result.inserted, result.duplicates) == (3, 1)
    assert [m.acked for m in msgs] == [1, 1, 1, 1]


def test_ingestor_stores_rejects_and_publishes_alerts(mosquitto: MosquittoBroker) -> None:
    """Telemetry, a bad payload and an anomaly flow through to rows, rejects and alerts."""
    group = f"g{uuid.uuid4().hex[:6]}"
    sink = MemorySink()
    alerts = Collector()
    consumer = Client(client_id=f"ing-{group}", brokers=[mosquitto.url], ack="manual",
                      persistent_session=True, receive_maximum=100)
    ingestor = Ingestor(sink=sink, client=consumer, config=IngestConfig(
        group=group, batch=BatchPolicy(max_rows=50, max_delay=0.1)))
    runner = threading.Thread(target=ingestor.run, name="ingest-run")
    with consumer, Client(client_id=f"pub-{group}", brokers=[mosquitto.url]) as pub:
        watcher = Client(client_id=f"watch-{group}", brokers=[mosquitto.url])
        with watcher:
            watcher.subscribe(f"{group}/+/alerts", alerts)
            ingestor.start()
            runner.start()
            probe = 0
            while not wait_until(lambda: len(sink.messages) > 0, timeout=0.1):
                pub.publish(f"{group}/probe/status/health", json.dumps({"n": probe}), qos=1)
                probe += 1
            rng = random.Random(1)
            topic = f"{group}/dev-1/data/telemetry"
            for i in range(60):
                value = 500.0 if i == 50 else 20 + rng.gauss(0, 1)
                pub.publish(topic, json.dumps({"ts": 1e9 + i, "cpu": value}), qos=1)
                if i == 30:
                    pub.publish(topic, b"\x00garbage", qos=1)
            assert alerts.wait_count(1), sink
            assert wait_until(lambda: sum(m.device == "dev-1" for m in
                                          sink.messages.values()) == 60)
            ingestor.stop()
            runner.join(10)
    assert not runner.is_alive()
    [alert] = sink.alerts.values()
    assert (alert.device, alert.metric, alert.value, alert.detector) == ("dev-1", "cpu", 500.0,
                                                                         "mad")
    msg: Message = alerts.messages[0]
    assert msg.topic == f"{group}/dev-1/alerts" and msg.json()["alert_id"] == alert.alert_id
    [rejected] = sink.rejected.values()
    assert "not UTF-8" in rejected.reason or "JSON" in rejected.reason
    assert ingestor.stats.rejected == 1 and ingestor.stats.alerts == 1
