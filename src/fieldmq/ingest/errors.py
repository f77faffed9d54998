"""Errors of ingest. Operational failures derive from :class:`fieldmq.FieldmqError`::

    FieldmqError
    └── SinkError                 a sink could not open, write or query
        └── SinkLocked            another process holds the (single-writer) database

    ImportError
    └── MissingDependency         an optional extra is not installed (names it)

Driver errors (``duckdb.Error``, ``psycopg.Error``, ``pyarrow`` and ``OSError``) are
translated to :class:`SinkError` at the sink boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import FieldmqError

__all__ = ["MissingDependency", "SinkError", "SinkLocked", "require"]


class SinkError(FieldmqError):
    """A sink failed to open, write or query; the message names the sink and the cause."""


class SinkLocked(SinkError):
    """The database is open for writing in another process (DuckDB allows one writer)."""


class MissingDependency(ImportError):
    """An optional dependency is missing; the message says which extra to install."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{what} needs the {module!r} package: pip install 'fieldmq[{extra}]'"
        ) from exc
