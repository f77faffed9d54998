"""The sink protocol: where ingest writes. One module per implementation:

* :mod:`.duckdb` -- the default, one DuckDB database file, no server;
* :mod:`.parquet` -- Parquet files partitioned by date and device, readable by any engine;
* :mod:`.postgres` -- PostgreSQL through psycopg 3 and ``COPY``;
* :mod:`.memory` -- in memory, for tests (yours and ours).

Every sink stores the same five tables (see ``docs/ingest.md``): ``messages``,
``readings``, ``rejected``, ``alerts`` and ``rollups``. The contract, checked by one test
suite over every sink:

* :meth:`Sink.write` commits a :class:`~fieldmq.ingest.records.Batch` atomically (all of
  it or, after a crash, none of it) and inserts each message, rejected message and alert
  at most once by its key: writing a batch again changes nothing;
* rollups fold in only the readings of messages the call actually inserted;
* :meth:`Sink.known` tells which message keys are already stored;
* :meth:`Sink.query` runs SQL over the tables (DuckDB's dialect for the DuckDB, Parquet
  and memory sinks, PostgreSQL's for PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..records import Batch

__all__ = ["TABLES", "QueryResult", "Sink", "WriteResult", "open_sink"]

TABLES = ("messages", "readings", "rejected", "alerts", "rollups")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one :meth:`Sink.write` stored: new messages, messages already stored
    (redeliveries), new rejected rows and new alerts."""

    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    alerts: int = 0


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@runtime_checkable
class Sink(Protocol):
    """Where ingest writes. Open at construction; ``close()`` is idempotent."""

    name: str

    def known(self, keys: Sequence[str]) -> set[str]:
        """The message keys among ``keys`` that are already stored."""
        ...

    def write(self, batch: Batch) -> WriteResult:
        """Commit ``batch`` atomically and idempotently (see the module docstring)."""
        ...

    def query(self, sql: str) -> QueryResult:
        """Run ``sql`` over the sink's tables."""
        ...

    def close(self) -> None:
        """Release files and connections; further calls raise ``RuntimeError``."""
        ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, *exc: object) -> None: ...


def open_sink(spec: str, *, writer: str = "", read_only: bool = False) -> Sink:
    """A sink from a spec string:

    * ``duckdb:PATH`` or a path ending in ``.duckdb`` / ``.db``: :class:`DuckDBSink`;
    * ``parquet:DIR``: :class:`ParquetSink` (``writer`` names this process's files);
    * ``postgresql://...`` (``?schema=NAME`` selects the schema, default ``fieldmq``):
      :class:`PostgresSink`;
    * ``memory:``: :class:`MemorySink`.

    ``read_only`` opens a DuckDB file for reading (reports); other sinks ignore it.
    """
    if spec == "memory:" or spec == "memory":
        from .memory import MemorySink

        return MemorySink()
    if spec.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresSink

        return PostgresSink.from_url(spec)
    if spec.startswith("parquet:"):
        from .parquet import ParquetSink

        return ParquetSink(spec[len("parquet:"):], writer=writer)
    path = spec[len("duckdb:"):] if spec.startswith("duckdb:") else spec
    if spec.startswith("duckdb:") or path.endswith((".duckdb", ".db")):
        from .duckdb import DuckDBSink

        return DuckDBSink(path, read_only=read_only)
    raise ValueError(
        f"unknown sink {spec!r}: use duckdb:PATH, parquet:DIR, postgresql://... or memory:"
    )
