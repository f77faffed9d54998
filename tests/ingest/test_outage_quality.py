"""The quality target of anomaly detection, end to end on the shipped `outage` scenario:
30 simulated devices against a real mosquitto that stops and restarts, a real
`fieldmq ingest` process detecting as the readings arrive, then `fieldmq score` against
the simulator's labels. Precision and recall must both reach 0.9.

The scenario plays 20 simulated minutes at 20x (about a minute of wall-clock time); the
seed is fixed, so the values, the anomalies and their labels are the same every run."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from fieldmq.cli import main
from fieldmq.client.client import Client
from fieldmq.ingest.pipeline import IngestConfig
from fieldmq.sim.scenario import load_scenario
from fieldmq.sim.simulation import Simulation, SimulationConfig

from .support import IngestProcess

SEED = 1
DEVICES = 30


def _prepare_session(url: str, client_id: str) -> None:
    """Create the ingest client's persistent session and its subscriptions before any
    device starts, so the broker keeps every message for it from the first one on."""
    client = Client(client_id=client_id, brokers=[url], persistent_session=True,
                    ack="manual")
    try:
        for topic_filter in IngestConfig().subscriptions():
            client.subscribe(topic_filter, lambda msg: None, qos=1)
        client.wait_subscribed(timeout=30)
    finally:
        client.close(1.0)


@pytest.mark.timeout(300)
def test_outage_scenario_reaches_precision_and_recall_of_0_9(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the shipped outage scenario (fixed seed), alerts stored by `fieldmq ingest`
    score precision >= 0.9 and recall >= 0.9 against the labels; nothing is lost."""
    db = tmp_path / "fleet.duckdb"
    client_id = "quality-ingest"
    box: dict[str, Any] = {}

    def on_broker_ready(url: str) -> None:
        _prepare_session(url, client_id)
        box["ingest"] = IngestProcess("--broker", url, "--sink", f"duckdb:{db}",
                                      "--client-id", client_id)

    sim = Simulation(SimulationConfig(
        state_dir=tmp_path / "sim", devices=DEVICES, seed=SEED,
        scenario=load_scenario("outage"), keep_broker=True,
        on_broker_ready=on_broker_ready, drain_timeout=60.0))
    try:
        result = sim.run()
        ingest: IngestProcess = box["ingest"]
        received = result.audit.total.received
        assert result.audit.ok and result.audit.total.lost == 0, result.audit.table()
        assert ingest.wait_total(received, timeout=120), ingest.log()[-3000:]
        ingest.proc.send_signal(signal.SIGINT)
        assert ingest.finish() == 0, ingest.log()[-3000:]
    finally:
        if "ingest" in box:
            box["ingest"].kill()
        if sim.broker is not None:
            sim.broker.stop()
    capsys.readouterr()
    code = main(["score", "--sink", f"duckdb:{db}", "--labels",
                 str(tmp_path / "sim" / "labels.jsonl"), "--json",
                 "--min-precision", "0.9", "--min-recall", "0.9"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["labels"] >= 40, scored  # enough labels for the figures to mean much
    assert scored["precision"] >= 0.9, scored
    assert scored["recall"] >= 0.9, scored
    assert code == 0
