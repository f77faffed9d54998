"""Helpers for the process tests: run ``fieldmq run`` on the test app and count what
its workers handled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from fieldmq.testing import MosquittoBroker, free_port
from helpers import wait_until

APPS = Path(__file__).parent / "apps"


class RouterProcess:
    """``python -m fieldmq run countapp:router`` in a subprocess, with its HTTP port."""

    def __init__(self, broker: MosquittoBroker, out: Path, prefix: str, *args: str,
                 **env: str) -> None:
        self.out, self.port = out, free_port()
        environ = {**os.environ, "COUNT_DIR": str(out), "COUNT_PREFIX": prefix,
                   "PYTHONPATH": str(APPS), **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fieldmq", "run", "countapp:router", "--broker", broker.url,
             "--http-port", str(self.port), "--dead-letters", str(out / "dlq.db"),
             "--client-prefix", f"t{self.port}", *args],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=out,
        )

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return dict(json.load(r))
        except OSError as exc:
            if hasattr(exc, "read"):
                return dict(json.load(exc))
            return {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def wait_ready(self, workers: int, timeout: float = 60) -> None:
        assert wait_until(lambda: self.health().get("ready") == workers
                          or self.proc.poll() is not None, timeout, 0.05), self.output()
        assert self.proc.poll() is None, self.output()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode(errors="replace")[-4000:]


def handled(out: Path, kind: str = "shared") -> dict[int, list[str]]:
    """Per worker pid, the ``n`` values of the messages of ``kind`` it handled."""
    result: dict[int, list[str]] = {}
    for f in out.glob("handled-*.txt"):
        pid = int(f.stem.split("-")[1])
        lines = f.read_text().splitlines()
        result[pid] = [ln.split(" ", 1)[1] for ln in lines if ln.startswith(kind + " ")]
    return result


def unique(out: Path, kind: str = "shared") -> set[str]:
    return {n for values in handled(out, kind).values() for n in values}


def counts(out: Path, kind: str = "shared") -> Counter[int]:
    return Counter({pid: len(v) for pid, v in handled(out, kind).items() if v})


