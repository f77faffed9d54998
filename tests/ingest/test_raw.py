"""Payloads expanded in the sink's engine (`write_raw`) give exactly the rows, readings,
rejections (with the same reasons) and rollups of the Python path, on every sink."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from fieldmq.ingest import IngestConfig, Ingestor, MemorySink
from fieldmq.ingest.errors import SinkError
from fieldmq.ingest.raw import RawBatch, raw_batch
from fieldmq.ingest.records import Batch, Decoded, Rejected, decode_message
from fieldmq.ingest.sinks.base import Sink
from fieldmq.ingest.sinks.duckdb import DuckDBSink

from .support import FakeMessage

T = "fleet/dev-1/data/telemetry"
NOW = 1_700_000_500.0

# (topic, payload, message id): every shape the engine must accept as Python does, or
# hand back to Python (which accepts or rejects it with its reason)
CORPUS: list[tuple[str, bytes, str | None]] = [
    (T, b'{"device": "dev-1", "ts": 1700000000.5, "cpu": 12.5, "temp": 40, "rh": null}', "ok"),
    (T, b'{"ts": 1700000000123, "cpu": 1}', "ms-ts"),
    (T, b'{"ts": null, "cpu": 2}', "null-ts"),
    (T, b'{"cpu": 3, "tick": 7, "seq": 1, "profile": "x", "anomaly": true, "id": 5}', "meta"),
    (T, b'{"big": 18446744073709551617, "neg": -0, "tiny": 1e-400, "e": 1E5, "m": -2.5e-3}',
     "numbers"),
    (T, b'{"huge": 1e308, "small": -9223372036854775809, "x": 0.1}', "range"),
    (T, b'{"device": 7, "cpu": 4}', "device-not-a-string"),
    (T, b'{"device": "other", "cpu": 1}', "device-mismatch"),
    (T, b'{"ts": -5, "cpu": 1}', "negative-ts"),
    (T, b'{"ts": true, "cpu": 1}', "bool-ts"),
    (T, b'{"ts": "yesterday", "cpu": 1}', "text-ts"),
    (T, b'{"cpu": true}', "bool-metric"),
    (T, b'{"cpu": "high"}', "text-metric"),
    (T, b'{"cpu": {"a": 1}}', "nested-metric"),
    (T, b'{"cpu": [1, 2]}', "list-metric"),
    (T, b'{"cpu": 1,}', "trailing-comma"),
    (T, b'{"cpu": [1,]}', "nested-trailing-comma"),
    (T, b'{"cpu": NaN}', "nan"),
    (T, b'{"cpu": -Infinity}', "infinity"),
    (T, b'{"cpu": 1e400}', "overflow"),
    (T, b'{"cpu": 1, "cpu": 2}', "duplicate-key"),
    (T, b'{"cpu": 1, "cpu": "x"}', "duplicate-key-bad"),
    (T, b"{}", "empty"),
    (T, b'{"c\\u00e9": 1, "s": 2}', "escaped-key"),
    (T, "{\"température\": 21.5, \"a.b c\": 1}".encode(), "unicode-key"),
    (T, b' {"cpu": 1}', "leading-space"),
    (T, b'{"cpu": 1}\n', "trailing-newline"),
    (T, b'{"cpu": 1', "truncated"),
    (T, b"21.5", "bare-number"),
    (T, b'"text"', "json-text"),
    (T, b"not json {", "not-json"),
    (T, b"\xff\xfe{", "binary"),
    (T, b'{"cpu": "\x00"}', "nul"),
    (T, b'{"cpu": 1, "pad": "' + b"x" * 70_000 + b'"}', "huge"),
    ("fleet/dev-1/data/temperature", b"-3", "bare-negative"),
    ("fleet/dev-1/status/health", b'{"ts": 5, "queued": 3, "ok": true, "n": "x"}', "status"),
    ("fleet/dev-1/status/health", b'{"ts": "bad", "queued": 3}', "status-bad-ts"),
    ("fleet/dev-1/status/health", b'{"q": {"nested": [1, 2]}}', "status-nested"),
    ("fleet/dev-1/status/health", b'{"q": NaN}', "status-nan"),
    ("fleet/dev-1/status/online", b"online", "status-text"),
    ("fleet/dev-1/status/event/boot/x", b'{"ts": 1700000000999}', "event"),
    ("fleet//data/x", b'{"cpu": "not checked"}', "no-device"),
    ("fleet/dev-2", b'{"cpu": 1}', "short-topic"),
    ("a/b/data", b'{"cpu": 1}', "three-levels"),
    (T, b'{"cpu": 5}', None),  # no sender id: keyed by a hash
    (T, b'{"cpu": 6}', "ok"),  # a second copy of "ok" (same key, first one wins)
]


def decoded(items: Sequence[tuple[str, bytes, str | None]], received: float) -> Batch:
    rows = [decode_message(t, p, m, received) for t, p, m in items]
    ok = [d for d in rows if isinstance(d, Decoded)]
    return Batch(tuple(d.message for d in ok), tuple(r for d in ok for r in d.readings),
                 tuple(r for r in rows if isinstance(r, Rejected)))


def tables(sink: Sink) -> dict[str, list[tuple[Any, ...]]]:
    """Every table, sorted, floats rounded (sums may add up in another order)."""
    def norm(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v

    out = {}
    for name in ("messages", "readings", "rejected", "rollups"):
        rows = sink.query(f"select * from {name}").rows
        out[name] = sorted((tuple(norm(v) for v in r) for r in rows), key=repr)
    return out


def test_engine_expansion_matches_the_python_path(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """The whole corpus through write_raw: the same tables as decoding in Python."""
    sink = open_spec(sink_spec)
    raw = raw_batch(CORPUS, NOW, 64 * 1024)
    assert 0 < len(raw.keys) < len(CORPUS)  # some go to the engine, some never do
    result = sink.write_raw(raw)  # type: ignore[attr-defined]
    expected = MemorySink()
    want = expected.write(decoded(CORPUS, NOW))
    assert result == want
    got = tables(sink)
    assert got == tables(expected)
    reasons = {r[0]: r[3] for r in got["rejected"]}
    assert "differs from the topic" in reasons["device-mismatch"]
    assert "metric 'cpu' is bool" in reasons["bool-metric"]
    assert "must be a JSON object or a number" in reasons["trailing-comma"]
    assert "over the 65536-byte limit" in reasons["huge"]
    assert "'ts' must be" in reasons["negative-ts"]


def test_raw_batches_are_idempotent_across_batches(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """A raw batch again, and one overlapping it, add only what is new."""
    sink = open_spec(sink_spec)
    items = [(T, json.dumps({"ts": 1_700_000_000 + i, "cpu": float(i)}).encode(), f"m{i}")
             for i in range(30)]
    first = sink.write_raw(raw_batch(items[:20], NOW, 65536))  # type: ignore[attr-defined]
    again = sink.write_raw(raw_batch(items[:20], NOW, 65536))  # type: ignore[attr-defined]
    more = sink.write_raw(raw_batch(items[10:], NOW, 65536))  # type: ignore[attr-defined]
    assert (first.inserted, again.inserted, again.duplicates) == (20, 0, 20)
    assert (more.inserted, more.duplicates) == (10, 10)
    rows = sink.query("select count(*), sum(value) from readings").rows[0]
    assert (int(rows[0]), float(rows[1])) == (30, float(sum(range(30))))
    n = sink.query("select sum(n), sum(total) from rollups where width = 3600").rows[0]
    assert (int(n[0]), float(n[1])) == (30, float(sum(range(30))))


def test_bad_payloads_in_a_raw_batch_are_rejected_with_their_reason(
    sink_spec: str, open_spec: Callable[..., Sink]
) -> None:
    """Rejections decided for a raw batch are stored once, with the Python reason."""
    sink = open_spec(sink_spec)
    items = [(T, b'{"cpu": 1, "cpu": "x"}', "dup"), (T, b'{"cpu": NaN}', "nan"),
             (T, b'{"cpu": 1}', "fine")]
    raw = raw_batch(items, NOW, 65536)
    assert len(raw.keys) == 3  # all three are engine candidates
    result = sink.write_raw(raw)  # type: ignore[attr-defined]
    assert (result.inserted, result.rejected) == (1, 2)
    assert sorted(r.message_id for r in raw.rejected) == ["dup", "nan"]
    again = sink.write_raw(raw_batch(items, NOW, 65536))  # type: ignore[attr-defined]
    assert (again.inserted, again.duplicates, again.rejected) == (0, 1, 0)
    reasons = dict(sink.query("select message_id, reason from rejected").rows)
    assert "metric 'cpu' is str" in reasons["dup"]
    assert "must be a JSON object or a number" in reasons["nan"]


def test_ingestor_without_detection_acks_raw_batches_only_after_commit(
    tmp_path: Path,
) -> None:
    """The raw path fails like the Python path: nothing acknowledged, nothing stored."""
    class Broken(DuckDBSink):
        def write_raw(self, raw: RawBatch) -> Any:
            raise SinkError("disk full")

    msgs = [FakeMessage(T, json.dumps({"cpu": i}).encode(), f"m{i}") for i in range(5)]
    msgs.append(FakeMessage(T, b'{"cpu": "x"}', "bad"))
    config = IngestConfig(detect=None)
    with Broken(tmp_path / "a.duckdb") as broken, pytest.raises(SinkError, match="disk full"):
        Ingestor(sink=broken, config=config).process(msgs)
    assert [m.acked for m in msgs] == [0] * 6
    with DuckDBSink(tmp_path / "b.duckdb") as sink:
        ingestor = Ingestor(sink=sink, config=config)
        result = ingestor.process(msgs)
        assert (result.inserted, result.rejected) == (5, 1)
        assert [m.acked for m in msgs] == [1] * 6
        assert ingestor.stats.rejected == 1
        assert sink.query("select count(*) from readings").rows[0][0] == 5


_OLD_READINGS = ("create table {t} (message_id varchar, device varchar, metric varchar, "
                 "ts double precision, value double precision, primary key (message_id, metric))")


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
@pytest.mark.parametrize("detect", [None, "default"], ids=["engine", "python"])
def test_a_store_with_the_old_readings_key_still_takes_batches(
    tmp_path: Path, detect: str | None, kind: str
) -> None:
    """A DuckDB file or PostgreSQL schema created when ``readings`` had a primary key is
    written to as before, and a replayed batch adds nothing (readings go in only with a
    new message)."""
    from fieldmq.ingest.sinks.base import open_sink

    from .support import drop_schema, pg_schema_url

    schema = None
    if kind == "duckdb":
        import duckdb

        spec = f"duckdb:{tmp_path / 'old.duckdb'}"
        con = duckdb.connect(str(tmp_path / "old.duckdb"))
        con.execute(_OLD_READINGS.format(t="readings"))
        con.close()
    else:
        import psycopg

        from .support import PG_URL

        spec, schema = pg_schema_url()
        with psycopg.connect(PG_URL, autocommit=True) as pg:
            pg.execute(f"create schema {schema}")
            pg.execute(_OLD_READINGS.format(t=f"{schema}.readings"))
    msgs = [FakeMessage(f"fleet/dev-{i % 3}/data/telemetry",
                        json.dumps({"ts": 1.7e9 + i, "temp": 20.5 + i, "rh": 40}).encode(),
                        f"m-{i}") for i in range(20)]
    config = IngestConfig(detect=None) if detect is None else IngestConfig()
    try:
        with open_sink(spec) as sink:
            ing = Ingestor(sink=sink, client=None, config=config)
            first = ing.process(msgs)
            again = ing.process(msgs)
            rows = sink.query("select count(*), count(distinct message_id || metric) "
                              "from readings").rows[0]
    finally:
        if schema is not None:
            drop_schema(schema)
    assert (first.inserted, again.inserted, again.duplicates) == (20, 0, 20)
    assert tuple(rows) == (40, 40)
