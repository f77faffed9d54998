"""Ingest and analytics: idempotent sinks, streaming anomaly detection, fleet reports.

Importing this package needs no optional dependency; the DuckDB and Parquet sinks need
``fieldmq[analytics]`` (duckdb, pyarrow), the PostgreSQL sink ``fieldmq[postgres]``
(psycopg 3), imported when a sink is created. See ``docs/ingest.md``.
"""

from __future__ import annotations

from .batching import Batcher, BatchPolicy
from .detect import (
    EWMA,
    AnomalyDetector,
    DetectorConfig,
    EWMAConfig,
    MADConfig,
    RollingMAD,
    StuckConfig,
    StuckDetector,
)
from .edge import EdgeRollup
from .errors import MissingDependency, SinkError, SinkLocked
from .pipeline import DEFAULT_FILTERS, IngestConfig, Ingestor, IngestStats
from .records import Alert, Batch, MessageRow, Reading, Rejected, decode_message
from .reports import fleet_report
from .rollups import RollupCell, RollupKey, rollup
from .scoring import GroundTruth, Score, load_labels, score
from .sinks.base import QueryResult, Sink, WriteResult, open_sink
from .sinks.memory import MemorySink

__all__ = [
    "DEFAULT_FILTERS",
    "EWMA",
    "Alert",
    "AnomalyDetector",
    "Batch",
    "BatchPolicy",
    "Batcher",
    "DetectorConfig",
    "EWMAConfig",
    "EdgeRollup",
    "GroundTruth",
    "IngestConfig",
    "IngestStats",
    "Ingestor",
    "MADConfig",
    "MemorySink",
    "MessageRow",
    "MissingDependency",
    "QueryResult",
    "Reading",
    "Rejected",
    "RollingMAD",
    "RollupCell",
    "RollupKey",
    "Score",
    "Sink",
    "SinkError",
    "SinkLocked",
    "StuckConfig",
    "StuckDetector",
    "WriteResult",
    "decode_message",
    "fleet_report",
    "load_labels",
    "open_sink",
    "rollup",
    "score",
]


def __getattr__(name: str) -> object:
    """The sink classes, imported on first use (they need optional extras)."""
    lazy = {"DuckDBSink": ".sinks.duckdb", "ParquetSink": ".sinks.parquet",
            "PostgresSink": ".sinks.postgres"}
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
