"""Fixtures of the router process tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq.testing import MosquittoBroker
from router.procs import RouterProcess


@pytest.fixture
def run_router(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[Any]:
    made: list[RouterProcess] = []

    def start(prefix: str, *args: str, **env: str) -> RouterProcess:
        rp = RouterProcess(mosquitto, tmp_path, prefix, *args, **env)
        made.append(rp)
        return rp

    yield start
    for rp in made:
        if rp.proc.poll() is None:
            rp.proc.kill()
            rp.proc.wait(10)
        if rp.proc.stdout is not None:
            rp.proc.stdout.close()
