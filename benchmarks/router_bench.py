"""Router benchmark: plain paho subscriber processes vs fieldmq router workers.

Run on its own: ``.venv/bin/python benchmarks/router_bench.py [--messages 20000]``.
For 1, 2 and 3 consumer processes on one mosquitto (``fieldmq.testing``), N QoS 1
messages are published to a shared subscription (``$share/bench/bench/+/data``) while
the consumers run; each consumer appends one byte per handled message to its own file
(the same work for both). Reported: msgs/s (first publish to last message handled)
and CPU microseconds per message of the consumer processes (``RUSAGE_CHILDREN``, minus
an identical run with zero messages, so start-up is not counted).

RouteMQ is not measured here: it installs (``benchmarks/.venv-routemq``) but needs its
own project layout (``app.routers`` discovery, ``.env`` configuration); see the report.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from fieldmq.testing import MosquittoBroker

HERE = Path(__file__).resolve().parent

PAHO_SUB = textwrap.dedent("""
    import os, signal, sys, threading
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    port, out, idx = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    fd = os.open(os.path.join(out, f"n-{idx}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-bench-{idx}",
                    protocol=mqtt.MQTTv5)
    c.on_connect = lambda c, u, f, rc, p: (c.subscribe("$share/bench/bench/+/data", 1),
                                           os.write(fd, b""), open(out + f"/ready-{idx}", "w"))
    c.on_message = lambda c, u, m: os.write(fd, b"x")
    c.connect("127.0.0.1", port)
    c.loop_start()
    stop.wait()
    c.disconnect(); c.loop_stop()
""")

APP = textwrap.dedent("""
    import os
    from fieldmq.router import Router
    router = Router(name="bench", middleware=[])
    _fd = []
    @router.route("bench/{device}/data", shared=True)
    def data(message, device):
        if not _fd:
            _fd.append(os.open(os.path.join(os.environ["BENCH_OUT"], f"n-{os.getpid()}"),
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        os.write(_fd[0], b"x")
""")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def handled(out: Path) -> int:
    return sum(f.stat().st_size for f in out.glob("n-*"))


def publish(port: int, n: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(f"bench/d{i % 100}/data", b"x" * 100, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def run_once(kind: str, broker: MosquittoBroker, workers: int, n: int) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="router-bench-"))
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONPATH": str(out)}
    procs: list[subprocess.Popen[bytes]] = []
    cpu0 = children_cpu()
    if kind == "paho":
        for i in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-c", PAHO_SUB, str(broker.port),
                                           str(out), str(i)]))
        ready = lambda: len(list(out.glob("ready-*"))) == workers  # noqa: E731
    else:
        (out / "benchapp.py").write_text(APP)
        port = _free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fieldmq", "--log-level", "WARNING", "run", "benchapp:router",
             "--broker", broker.url, "--workers", str(workers), "--http-port", str(port),
             "--dead-letters", str(out / "dlq.db"), "--client-prefix", f"bench-w{workers}",
             "--prefetch", "100"], env=env, cwd=out))
        ready = lambda: _ready(port) == workers  # noqa: E731
    deadline = time.monotonic() + 60
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind} consumers did not start")
        time.sleep(0.05)
    started = time.perf_counter()
    if n:
        publish(broker.port, n)
    while handled(out) < n:
        if time.perf_counter() - started > 300:
            raise RuntimeError(f"{kind}: only {handled(out)} of {n} handled")
        time.sleep(0.01)
    took = time.perf_counter() - started
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    return took, children_cpu() - cpu0


def _free_port() -> int:
    from fieldmq.testing import free_port

    return free_port()


def _ready(port: int) -> int:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return int(json.load(r).get("ready", 0))
    except OSError:
        return -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,3")
    args = parser.parse_args()
    n = args.messages
    print(f"{'consumer':<10} {'workers':>7} {'msgs/s':>10} {'cpu us/msg':>11}")
    with MosquittoBroker() as broker:
        broker.start()
        for w in (int(x) for x in args.workers.split(",")):
            for kind in ("paho", "fieldmq"):
                _, idle_cpu = run_once(kind, broker, w, 0)
                took, cpu = run_once(kind, broker, w, n)
                per = max(0.0, cpu - idle_cpu) / n * 1e6
                print(f"{kind:<10} {w:>7} {n / took:>10.0f} {per:>11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
