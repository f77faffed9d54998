"""Fixtures for the ingest tests: every sink, PostgreSQL in a schema of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq.ingest.sinks.base import Sink

from .support import drop_schema, pg_schema_url

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
