"""Shared helpers for the runtime tests: starting real child processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` elapses."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def require_tool(name: str, package: str) -> str:
    """The path of ``name``; skip the test with the package to install when it is
    missing, except under CI (``CI=true``), where a missing tool fails the test."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    message = f"{name} is not installed (Debian package {package!r})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)


class Procs:
    """Child processes started by a test; all are killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, program: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("WATCHDOG_USEC", None)
        full_env.pop("JOURNAL_STREAM", None)
        full_env.update(env or {})
        proc = subprocess.Popen(
            [sys.executable, str(PROGRAMS / program), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Start helper programs from tests/runtime/programs; kill leftovers afterwards."""
    p = Procs()
    try:
        yield p
    finally:
        p.close()
