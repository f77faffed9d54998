"""`fieldmq query`, `report fleet` and `score` on a real DuckDB file; edge rollups;
optional dependencies stay optional."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fieldmq.ingest
from fieldmq.cli import main
from fieldmq.ingest import EdgeRollup
from fieldmq.ingest.records import Alert, Batch
from fieldmq.ingest.sinks.duckdb import DuckDBSink

from .test_sinks_contract import T0, telemetry


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.duckdb"
    with DuckDBSink(path) as sink:
        sink.write(telemetry(30, device="dev-1"))
        sink.write(telemetry(12, device="dev-2", step=5.0))
        sink.write(Batch(alerts=(Alert("a1", "fleet", "dev-1", "cpu", T0 + 20, 9.0, "mad",
                                       8.0),)))
    return path


def test_query_prints_table_json_and_csv(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`fieldmq query` prints a table, or JSON / CSV with --json / --csv."""
    sql = "select device, count(*) as n from messages group by device order by device"
    assert main(["query", sql, "--sink", f"duckdb:{db}"]) == 0
    out = capsys.readouterr().out
    assert "device  n" in out and "dev-1   30" in out and "(2 rows)" in out
    assert main(["query", sql, "--sink", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"device": "dev-1", "n": 30},
                                                   {"device": "dev-2", "n": 12}]
    assert main(["query", sql, "--sink", str(db), "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["device,n", "dev-1,30", "dev-2,12"]


def test_bad_sql_and_bad_sink_are_clear_errors(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad SQL exits 2 and an unknown sink spec exits 78, each with a message."""
    assert main(["query", "select nope from nowhere", "--sink", str(db)]) == 2
    assert "query failed" in capsys.readouterr().err
    assert main(["query", "select 1", "--sink", "mysql://x"]) == 78
    assert "unknown sink" in capsys.readouterr().err


def test_report_fleet(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`fieldmq report fleet` gives per-device rates and metric ranges."""
    assert main(["report", "fleet", "--sink", str(db), "--json"]) == 0
    report = {d["device"]: d for d in json.loads(capsys.readouterr().out)}
    assert report["dev-1"]["messages"] == 30 and report["dev-1"]["alerts"] == 1
    assert report["dev-2"]["per_minute"] == pytest.approx(12.0)
    assert report["dev-1"]["metrics"]["cpu"] == {"n": 30, "min": 0.0, "avg": 14.5, "max": 29.0}
    assert main(["report", "fleet", "--sink", str(db)]) == 0
    text = capsys.readouterr().out
    assert "last seen (UTC)" in text and "temp" in text
    assert main(["report", "fleet", "--sink", str(db), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("device,last_seen,messages")


def test_score_command(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`fieldmq score` scores stored alerts; --min-recall turns a miss into exit 1."""
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(x) for x in [
        {"device": "dev-1", "metric": "cpu", "kind": "spike", "start_tick": 1, "end_tick": 2,
         "start": T0 + 10, "end": T0 + 20},
        {"device": "dev-2", "metric": "cpu", "kind": "stuck", "start_tick": 1, "end_tick": 2,
         "start": T0, "end": T0 + 5}]))
    assert main(["score", "--sink", str(db), "--labels", str(labels), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["precision"], result["recall"], result["delay_mean_s"]) == (1.0, 0.5, 10.0)
    assert main(["score", "--sink", str(db), "--labels", str(labels),
                 "--min-recall", "0.9"]) == 1
    assert "recall" in capsys.readouterr().out


def test_edge_rollup_publishes_closed_buckets_once() -> None:
    """Closed minute buckets become one flat summary each; republished only if changed."""
    sent: list[list[tuple[str, bytes]]] = []

    class Pub:
        def publish_many(self, items: list[tuple[str, bytes]], *, qos: int = 1) -> None:
            assert qos == 1
            sent.append(items)

    with EdgeRollup(widths=(60,), grace=5) as edge:
        for i in range(12):  # 1_000_020 is a minute boundary: two buckets of 6
            payload = json.dumps({"ts": 1_000_020 + 10 * i, "cpu": float(i)}).encode()
            edge.add("fleet/dev-1/data/telemetry", payload, f"m{i}")
        edge.add("fleet/dev-1/data/telemetry", b'{"ts": 1000020, "cpu": 0}', "m0")  # replay
        assert edge.publish(Pub(), now=1_000_084) == 0  # closes 60 s + 5 s grace later
        assert edge.publish(Pub(), now=1_000_085) == 1
        topic, payload = sent[0][0]
        summary = json.loads(payload)
        assert topic == "fleet/dev-1/data/rollup/60s"
        assert summary == {"device": "dev-1", "ts": 1_000_020.0, "width": 60,
                           "cpu_n": 6, "cpu_avg": 2.5, "cpu_min": 0.0, "cpu_max": 5.0}
        assert edge.publish(Pub(), now=1_000_090) == 0
        edge.add("fleet/dev-1/data/telemetry", b'{"ts": 1000021, "cpu": -1}', "late")
        assert edge.publish(Pub(), now=1_000_090) == 1
        assert json.loads(sent[1][0][1])["cpu_n"] == 7


def test_core_import_does_not_load_optional_libraries() -> None:
    """`import fieldmq` and `import fieldmq.ingest` load no duckdb, pyarrow or psycopg."""
    code = ("import sys, fieldmq, fieldmq.ingest, fieldmq.cli; fieldmq.cli.build_parser(); "
            "print(sorted(m for m in ('duckdb', 'pyarrow', 'psycopg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_missing_extra_names_what_to_install() -> None:
    """A missing optional library raises MissingDependency naming the extra."""
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "from fieldmq.ingest import open_sink, MissingDependency\n"
            "try:\n    open_sink('duckdb:/tmp/never.duckdb')\n"
            "except MissingDependency as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'fieldmq[analytics]'" in out


def test_public_names_are_sorted_and_importable() -> None:
    """`fieldmq.ingest.__all__` is sorted (constants, classes, functions) and resolves."""
    names = fieldmq.ingest.__all__
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in [*names, "DuckDBSink", "ParquetSink", "PostgresSink"]:
        assert getattr(fieldmq.ingest, name) is not None
