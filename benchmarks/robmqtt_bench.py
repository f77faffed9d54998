"""robmqtt (PyPI ``robmqtt``, pins paho-mqtt<2) measured for comparison.

Runs under ``benchmarks/.venv-robmqtt/bin/python`` (never the project venv):
``robmqtt_bench.py PHASE 'JSON-ARGS'`` with PHASE ``e2e``, ``enqueue`` or ``drain``;
prints ``RESULT {json}``. The API used is robmqtt 1.0's ``ProductionMQTTClient``:
``connect()``, ``start()``, ``publish(topic, payload, qos, retain, priority)`` (returns
paho's MQTTMessageInfo when connected, None when it queued offline), ``stop()``, and
``offline_queue.get_stats()``. Defaults except what a benchmark needs: a queue large
enough not to evict, logs at WARNING in a temp dir.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from robmqtt import ProductionMQTTClient  # type: ignore[import-not-found]

PAYLOAD = b"x" * 100
TOPIC = "bench/robmqtt/telemetry"
perf = time.perf_counter


def make(a: dict[str, Any], d: Path, port: int | None = None, queue: int = 1000) -> Any:
    host, url_port = a["url"].removeprefix("mqtt://").split(":")
    return ProductionMQTTClient(
        client_id=f"bench-robmqtt-{a['phase']}", broker_host=host,
        broker_port=port or int(url_port), db_path=str(d / "robmqtt.db"),
        log_dir=str(d / "logs"), log_level="WARNING", max_queue_size=queue,
    )


def wait_connected(c: Any, timeout: float = 15.0) -> None:
    deadline = perf() + timeout
    while not c.is_connected:
        if perf() > deadline:
            raise RuntimeError("robmqtt did not connect")
        time.sleep(0.01)


def e2e(a: dict[str, Any], d: Path) -> dict[str, Any]:
    n = a["count"]
    c = make(a, d)
    c.connect()
    c.start()
    wait_connected(c)
    t0 = perf()
    infos = [c.publish(TOPIC, PAYLOAD, qos=1) for _ in range(n)]
    returned = perf() - t0
    queued = sum(1 for i in infos if i is None)
    last = next((i for i in reversed(infos) if i is not None), None)
    if last is not None:
        last.wait_for_publish(timeout=a.get("timeout", 60))
    elapsed = perf() - t0
    acked = sum(1 for i in infos if i is not None and i.is_published())
    c.stop()
    return {"count": n, "seconds": round(elapsed, 3), "msgs_per_s": round(n / elapsed, 1),
            "publish_returned_msgs_per_s": round(n / returned, 1),
            "acked": acked, "queued_offline_instead": queued}


def enqueue(a: dict[str, Any], d: Path) -> dict[str, Any]:
    n = a["count"]
    c = make(a, d, queue=n + 10)  # never connected: everything goes to the offline queue
    t0 = perf()
    for _ in range(n):
        c.publish(TOPIC, PAYLOAD, qos=1)
    elapsed = perf() - t0
    total = c.offline_queue.get_stats()["total_messages"]
    c.stop()
    return {"count": n, "seconds": round(elapsed, 3), "msgs_per_s": round(n / elapsed, 1),
            "queued": total}


def drain(a: dict[str, Any], d: Path) -> dict[str, Any]:
    n, budget = a["count"], a.get("drain_budget", 15.0)
    c = make(a, d, queue=n + 10)
    for _ in range(n):
        c.publish(TOPIC, PAYLOAD, qos=1)
    before = c.offline_queue.get_stats()["total_messages"]
    c.connect()
    c.start()
    wait_connected(c)
    t0 = perf()
    left = before
    while perf() - t0 < budget:
        left = c.offline_queue.get_stats()["total_messages"]
        if left == 0:
            break
        time.sleep(0.1)
    elapsed = perf() - t0
    c.stop()
    sent = before - left
    return {"backlog": before, "sent": sent, "seconds": round(elapsed, 2),
            "msgs_per_s": round(sent / elapsed, 1), "budget_seconds": budget}


if __name__ == "__main__":
    phase = sys.argv[1]
    args = json.loads(sys.argv[2])
    args["phase"] = phase
    tmp = Path(tempfile.mkdtemp(prefix=f"robmqtt-bench-{phase}-"))
    try:
        result = {"e2e": e2e, "enqueue": enqueue, "drain": drain}[phase](args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT " + json.dumps(result), flush=True)
