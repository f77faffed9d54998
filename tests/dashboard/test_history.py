"""The dashboard loads recorded history from an ingest database."""

from __future__ import annotations

import json
from pathlib import Path

from fieldmq import Message
from fieldmq.dashboard import FleetModel
from fieldmq.dashboard.history import load_history
from fieldmq.ingest import Ingestor, open_sink


def _msg(i: int, device: str, topic_kind: str, body: dict[str, object]) -> Message:
    return Message(f"fleet/{device}/{topic_kind}", json.dumps(body).encode(), 1, False,
                   f"{device}-{i}")


def test_history_from_duckdb(tmp_path: Path) -> None:
    """Readings, the last health status and message counts come back from a DuckDB file."""
    db = tmp_path / "fleet.duckdb"
    sink = open_sink(f"duckdb:{db}")
    try:
        ing = Ingestor(sink=sink, client=None)
        batch = [_msg(i, d, "data/telemetry", {"device": d, "ts": 1000.0 + i, "cpu": 10.0 + i})
                 for d in ("a", "b") for i in range(5)]
        batch.append(_msg(99, "a", "status/health", {"queued": 7, "reconnects": 2,
                                                     "connected": True, "ts": 1010.0}))
        ing.process(batch)
    finally:
        sink.close()
    model = FleetModel(points=3)
    reader = open_sink(f"duckdb:{db}", read_only=True)
    try:
        loaded = load_history(model, reader)
    finally:
        reader.close()
    assert loaded == 6  # 3 newest readings x 2 devices
    a = model.device("a")
    assert a is not None
    assert a["series"]["cpu"] == [[1002.0, 1003.0, 1004.0], [12.0, 13.0, 14.0]]
    assert (a["row"]["queue_depth"], a["row"]["reconnects"], a["row"]["messages"]) == (7, 2, 6)
