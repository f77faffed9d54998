"""Router benchmark: plain paho subscriber processes vs fieldmq router workers.

Run on its own: ``.venv/bin/python benchmarks/router_bench.py [--messages 20000]``.
For 1, 2 and 3 consumer processes on one mosquitto (``fieldmq.testing``), N QoS 1
messages are published to a shared subscription (``$share/bench/bench/+/data``) while
the consumers run; each consumer appends one byte per handled message to its own file
(the same work for both). Reported: msgs/s (first publish to last message handled)
and CPU microseconds per message of the consumer processes (``RUSAGE_CHILDREN``, minus
an identical run with zero messages, so start-up is not counted).

RouteMQ (PyPI ``routemq``, which needs Python 3.12) runs from its own venv,
``benchmarks/.venv-routemq`` (``--routemq-python`` to point elsewhere): the benchmark writes
the project layout it discovers (``app/routers/bench.py``, a ``.env`` with the broker) and
runs ``python -m routemq.cli run`` with the route ``shared=True, worker_count=N``. RouteMQ
has no readiness signal, so probe messages are published until every worker has handled one.
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
from collections.abc import Callable
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


ROUTEMQ_ROUTER = textwrap.dedent("""
    import os
    from routemq import Router
    router = Router()
    _fd = []
    async def handle(device, payload, client):
        if not _fd:
            _fd.append(os.open(os.path.join(os.environ["BENCH_OUT"], f"n-{os.getpid()}"),
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        os.write(_fd[0], b"x")
    router.on("bench/{device}/data", handle, qos=1, shared=True, worker_count=WORKERS)
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
    elif kind == "routemq":
        routers = out / "app" / "routers"
        routers.mkdir(parents=True)
        (out / "app" / "__init__.py").write_text("")
        (routers / "__init__.py").write_text("")
        (routers / "bench.py").write_text(ROUTEMQ_ROUTER.replace("WORKERS", str(workers)))
        (out / ".env").write_text(
            f"MQTT_BROKER=127.0.0.1\nMQTT_PORT={broker.port}\nMQTT_GROUP_NAME=bench\n"
            f"MQTT_CLIENT_ID=routemq-bench-w{workers}\nENABLE_REDIS=false\n"
            "ENABLE_MYSQL=false\nENABLE_TSDB=false\nLOG_LEVEL=WARNING\n")
        log = (out / "routemq.log").open("wb")
        procs.append(subprocess.Popen([ROUTEMQ_PYTHON, "-m", "routemq.cli", "run"], env=env,
                                      cwd=out, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        ready = _probe_ready(broker.port, out, workers)
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
            for p in procs:
                p.kill()
            raise RuntimeError(f"{kind} consumers did not start; see {out}")
        time.sleep(0.05)
    base = handled(out)  # probe messages handled while waiting for readiness
    started = time.perf_counter()
    if n:
        publish(broker.port, n)
    last, last_change = -1, time.perf_counter()
    while handled(out) - base < n:
        now = time.perf_counter()
        got = handled(out) - base
        if got != last:
            last, last_change = got, now
        elif kind == "routemq" and now - last_change > 5.0:
            break  # RouteMQ lost the rest (it acknowledges before handling): report it
        if now - started > 300:
            raise RuntimeError(f"{kind}: only {got} of {n} handled")
        time.sleep(0.01)
    took = (last_change if handled(out) - base < n else time.perf_counter()) - started
    LOST[kind, workers] = n - (handled(out) - base)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    return took, children_cpu() - cpu0


ROUTEMQ_PYTHON = str(HERE / ".venv-routemq" / "bin" / "python")
LOST: dict[tuple[str, int], int] = {}


def _probe_ready(port: int, out: Path, workers: int) -> Callable[[], bool]:
    """Ready once every worker process has handled a probe (RouteMQ signals nothing)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    def ready() -> bool:
        if len(list(out.glob("n-*"))) >= workers:
            return True
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
        try:
            c.connect("127.0.0.1", port)
            c.loop_start()
            for i in range(workers):
                c.publish(f"bench/probe{i}/data", b"p", qos=1).wait_for_publish(5)
            c.disconnect()
            c.loop_stop()
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.5)
        return len(list(out.glob("n-*"))) >= workers

    return ready


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
    global ROUTEMQ_PYTHON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--kinds", default="paho,fieldmq,routemq")
    parser.add_argument("--routemq-python", default=ROUTEMQ_PYTHON,
                        help="a Python 3.12 with routemq installed ('' to skip RouteMQ)")
    args = parser.parse_args()
    ROUTEMQ_PYTHON = args.routemq_python
    kinds = [k for k in args.kinds.split(",") if k != "routemq"]
    if "routemq" in args.kinds.split(","):
        if ROUTEMQ_PYTHON and Path(ROUTEMQ_PYTHON).exists():
            kinds.append("routemq")
        else:
            print("RouteMQ skipped: no Python with routemq at " + repr(ROUTEMQ_PYTHON))
    n = args.messages
    print(f"{'consumer':<10} {'workers':>7} {'msgs/s':>10} {'cpu us/msg':>11}")
    for w in (int(x) for x in args.workers.split(",")):
        for kind in kinds:
            # A fresh broker per run: sessions left in a $share group by one consumer
            # (RouteMQ keeps them) must not take a share of the next one's messages.
            with MosquittoBroker() as broker:
                _, idle_cpu = run_once(kind, broker, w, 0)
            with MosquittoBroker() as broker:
                took, cpu = run_once(kind, broker, w, n)
            done = n - LOST.get((kind, w), 0)
            per = max(0.0, cpu - idle_cpu) / max(1, done) * 1e6
            lost = f"  LOST {n - done} of {n}" if done < n else ""
            print(f"{kind:<10} {w:>7} {done / took:>10.0f} {per:>11.1f}{lost}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
