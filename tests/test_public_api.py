"""The public surface of the fieldmq package."""

from __future__ import annotations

import subprocess
import sys

import fieldmq
from fieldmq import errors


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted (constants first) and every name in it exists."""
    names = list(fieldmq.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(fieldmq, name), name


def test_import_pulls_in_no_optional_dependency() -> None:
    """`import fieldmq` loads only paho and the standard library (Raspberry Pi friendly)."""
    code = (
        "import sys, fieldmq, fieldmq.testing, fieldmq.ingest, fieldmq.cli\n"
        "heavy = [m for m in ('duckdb', 'pyarrow', 'psycopg', 'starlette', 'uvicorn', "
        "'amqtt', 'prometheus_client', 'playwright') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_operational_errors_share_one_base() -> None:
    """Every exception in fieldmq.errors derives from FieldmqError."""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.FieldmqError), name


def test_cli_lists_every_command() -> None:
    """`fieldmq --help` lists the subcommands of every capability."""
    out = subprocess.run([sys.executable, "-m", "fieldmq", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("simulate", "audit", "ingest", "query", "report", "score", "run",
                    "bridge", "dashboard", "systemd-unit", "supervisor-conf", "status"):
        assert command in out, command
