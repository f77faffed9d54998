"""A router used by the process tests. Configured through environment variables:

* ``COUNT_DIR``: each worker appends ``<slot-pid> <topic> <payload>`` lines to its own file;
* ``COUNT_PREFIX``: the topic prefix of the test;
* ``COUNT_WORKERS``: workers of the shared route (default: every worker);
* ``COUNT_SLOW``: seconds each handler takes (simulated work, default 0);
* ``COUNT_CRASH``: when set, importing the app in a worker exits at once (crash loop).
"""

from __future__ import annotations

import os
import threading

from fieldmq.router import Router

PREFIX = os.environ.get("COUNT_PREFIX", "count")
OUT = os.environ.get("COUNT_DIR", ".")
SLOW = float(os.environ.get("COUNT_SLOW", "0"))
_WORKERS = os.environ.get("COUNT_WORKERS")
_fd: int | None = None
_lock = threading.Lock()
_done = threading.Event()

if os.environ.get("COUNT_CRASH") and os.environ.get("FIELDMQ_ROUTER_WORKER"):
    os._exit(7)

router = Router(name="countapp")


def _write(line: str) -> None:
    global _fd
    with _lock:
        if _fd is None:
            _fd = os.open(os.path.join(OUT, f"handled-{os.getpid()}.txt"),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(_fd, line.encode())


@router.route(PREFIX + "/shared/{n}", shared=True,
              workers=int(_WORKERS) if _WORKERS else None)
def shared(message, n):
    if SLOW:
        _done.wait(SLOW)
    _write(f"shared {n}\n")


@router.route(PREFIX + "/single/{n}")
def single(message, n):
    _write(f"single {n}\n")


@router.route(PREFIX + "/v1.0/{id}")
def literal(message, id):
    _write(f"literal {id}\n")


@router.route(PREFIX + "/wild/+/data")
def wildcard(message):
    _write(f"wild {message.topic}\n")
