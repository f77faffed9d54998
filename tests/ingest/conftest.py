"""Fixtures for the ingest tests: every sink, PostgreSQL in a schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq.ingest.sinks.base import Sink

PG_URL = os.environ.get("FIELDMQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_or_skip() -> str:
    """The test database URL; skips when no server answers (fails under CI)."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is not reachable under CI: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    return PG_URL


def pg_schema_url() -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    return f"{postgres_or_skip()}?schema={schema}", schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f"drop schema if exists {schema} cascade")


SINKS = ("memory", "duckdb", "parquet", "postgres")


@pytest.fixture(params=SINKS)
def sink_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A sink spec for each implementation (PostgreSQL: a fresh schema, dropped after)."""
    kind = request.param
    if kind == "memory":
        yield "memory:"
    elif kind == "duckdb":
        yield f"duckdb:{tmp_path / 'ingest.duckdb'}"
    elif kind == "parquet":
        yield f"parquet:{tmp_path / 'lake'}"
    else:
        url, schema = pg_schema_url()
        try:
            yield url
        finally:
            drop_schema(schema)


@pytest.fixture
def open_spec() -> Iterator[Callable[..., Sink]]:
    """Opens sinks from specs and closes them after the test."""
    from fieldmq.ingest.sinks.base import open_sink

    opened: list[Sink] = []

    def make(spec: str, **kwargs: Any) -> Sink:
        sink = open_sink(spec, **kwargs)
        opened.append(sink)
        return sink

    yield make
    for s in opened:
        s.close()
