"""A worker told to stop lets the handler that is running finish, acknowledges its
message, and takes no new one (driven in-process against a real mosquitto)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

from fieldmq import Client
from fieldmq.router import Router
from fieldmq.router.worker import Worker, WorkerSpec
from fieldmq.testing import MosquittoBroker
from helpers import wait_until


def test_stop_waits_for_the_running_handler_then_acknowledges(
        mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[str] = []
    router = Router(name="drain", middleware=[])

    @router.route("drain/{n}", shared=True)
    def slow(message: Any, n: str) -> None:
        seen.append(n)
        entered.set()
        release.wait(30)

    spec = WorkerSpec(app="-", slot=0, routes=(0,), patterns=("drain/{n}",),
                      brokers=(mosquitto.url,), client_prefix="drain",
                      dead_letters=str(tmp_path / "dlq.db"), receive_maximum=10,
                      shutdown_timeout=0.2)
    worker = Worker(spec, router, queue.SimpleQueue())
    worker.start()  # returns connected and subscribed
    with Client(client_id="drain-pub", brokers=[mosquitto.url]) as pub:
        pub.publish_many([("drain/1", b"x"), ("drain/2", b"x")], qos=1).wait(timeout=10)
    assert entered.wait(10)
    worker.stop.set()
    assert worker.drain() is False  # the handler is still running: not idle
    release.set()
    assert wait_until(worker.drain, 10)
    worker.close()
    assert seen == ["1"]  # the second message was not taken after stop

    # The same session again: only the unhandled message comes back (the first was acked).
    seen.clear()
    again = Worker(spec, router, queue.SimpleQueue())
    again.start()
    assert wait_until(lambda: seen == ["2"], 10), seen
    again.stop.set()
    assert again.drain()
    again.close()
    assert seen == ["2"]
