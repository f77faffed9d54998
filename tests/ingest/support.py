"""Running `fieldmq ingest` as a subprocess and following its log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

import pytest

PG_URL = os.environ.get("FIELDMQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class FakeMessage:
    """A received message as the ingest loop sees it, counting its acknowledgements."""

    def __init__(self, topic: str, payload: bytes, message_id: str | None) -> None:
        self.topic, self.payload, self.message_id = topic, payload, message_id
        self.acked = 0

    def ack(self) -> None:
        self.acked += 1


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


_TOTAL = re.compile(r"\(total (\d+) new\)")


class IngestProcess:
    """A `python -m fieldmq ingest ...` process whose stderr lines are collected."""

    def __init__(self, *args: str) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fieldmq", "--log-level", "INFO", "ingest", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, name="ingest-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.lines), timeout)

    def total(self) -> int:
        """Messages this process reported as newly committed."""
        with self._cond:
            found = [int(m.group(1)) for line in self.lines if (m := _TOTAL.search(line))]
        return found[-1] if found else 0

    def wait_total(self, n: int, timeout: float = 30.0) -> bool:
        return self.wait_for(lambda _lines: self.total() >= n, timeout)

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        self._reader.join(30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def log(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close()
