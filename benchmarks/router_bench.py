"""Router benchmark: plain paho subscriber processes vs fieldmq router workers vs RouteMQ.

Run on its own: ``.venv/bin/python benchmarks/router_bench.py [--messages 20000]
[--mode flood|backlog|paced] [--repeat 3]``. For 1, 2 and 3 consumer processes on one
mosquitto (``fieldmq.testing``, a fresh broker per run), N QoS 1 messages of 100 bytes go to
``bench/<device>/data`` (100 devices) and are consumed through a shared subscription
(``$share/bench/bench/+/data``); each consumer appends one byte per handled message to its
own file (the same work for all three).

Modes (what bounds the rate is the point of each):

- ``flood`` (default): the consumers run and are ready; one publisher writes all N PUBLISH
  packets, pre-encoded, down one socket (MQTT 3.1.1, QoS 1; it reads the PUBACKs on a thread),
  so the broker has the whole backlog within a fraction of a second and the consumers are the
  bottleneck. msgs/s is first publish to last message handled.
- ``backlog`` (paho and fieldmq): the consumers are started once (their persistent sessions
  join the ``$share`` group), stopped, the N messages are published and acknowledged by the
  broker (mosquitto 2.0 queues a ``$share`` message for an offline persistent member, in
  strict round robin over the members, so each holds N/workers), and the consumers are
  started again. msgs/s counts from the moment every consumer has handled a message
  (the workers start one after another) to the last message handled. RouteMQ cannot take
  part: its workers connect with clean sessions and fresh random client ids, so what is
  published while it is down is lost.
- ``paced``: the previous method, one paho publisher waiting for its acknowledgements while
  the consumers run (it caps every consumer near 7-8k msgs/s).

CPU microseconds per message are the consumer processes' user + system time
(``RUSAGE_CHILDREN``), minus an identical run with zero messages, so start-up is not counted.
With ``--repeat K`` each cell is run K times and the median is printed.

RouteMQ (PyPI ``routemq``, which needs Python 3.12) runs from its own venv,
``benchmarks/.venv-routemq`` (``--routemq-python`` to point elsewhere; create it with
``~/.pyenv/versions/3.12.*/bin/python -m venv benchmarks/.venv-routemq &&
benchmarks/.venv-routemq/bin/pip install routemq greenlet``): the benchmark writes the
project layout it discovers (``app/routers/bench.py``, a ``.env`` with the broker) and runs
``python -m routemq.cli run`` with the route ``shared=True, worker_count=N``. RouteMQ has no
readiness signal, so probe messages are published until every worker has handled one.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fieldmq.testing import MosquittoBroker

HERE = Path(__file__).resolve().parent

PAHO_SUB = textwrap.dedent("""
    import os, signal, sys, threading
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    port, out, idx = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    fd = os.open(os.path.join(out, f"n-{idx}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-bench-{idx}",
                    protocol=mqtt.MQTTv5)
    c.on_connect = lambda c, u, f, rc, p: (c.subscribe("$share/bench/bench/+/data", 1),
                                           os.write(fd, b""), open(out + f"/ready-{idx}", "w"))
    c.on_message = lambda c, u, m: os.write(fd, b"x")
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600  # persistent, like the fieldmq workers
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
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


# -- publishers ---------------------------------------------------------------------------
def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s."""
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _utf8(client_id)
    return b"\x10" + _varlen(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH."""
    body = _utf8(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _varlen(len(body)) + body


def flood(port: int, n: int) -> None:
    """Publish ``n`` QoS 1 messages as fast as the broker takes them; return once it
    acknowledged them all (CONNACK + n PUBACKs, 4 bytes each)."""
    if n > 65535:
        raise ValueError("flood() numbers packets 1..n: at most 65535 messages")
    packets = b"".join(publish_packet(f"bench/d{i % 100}/data", b"x" * 100, i + 1)
                       for i in range(n))
    sock = socket.create_connection(("127.0.0.1", port))
    need, got = 4 + 4 * n, bytearray()

    def read() -> None:
        while len(got) < need:
            data = sock.recv(65536)
            if not data:
                return
            got.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sock.sendall(connect_packet("bench-flood") + packets)
    reader.join(300)
    sock.close()
    if len(got) < need:
        raise RuntimeError(f"flood: the broker acknowledged {(len(got) - 4) // 4} of {n}")


def paced(port: int, n: int) -> None:
    """One paho client, up to 1000 messages in flight (the original method)."""
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


# -- consumers ----------------------------------------------------------------------------
Procs = list[subprocess.Popen[bytes]]


def launch(kind: str, port: int, workers: int, out: Path) -> tuple[Procs, Callable[[], bool]]:
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONPATH": str(out)}
    procs: Procs = []
    for f in out.glob("ready-*"):
        f.unlink()
    if kind == "paho":
        for i in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-c", PAHO_SUB, str(port),
                                           str(out), str(i)]))
        return procs, lambda: len(list(out.glob("ready-*"))) == workers
    if kind == "routemq":
        routers = out / "app" / "routers"
        routers.mkdir(parents=True, exist_ok=True)
        (out / "app" / "__init__.py").write_text("")
        (routers / "__init__.py").write_text("")
        (routers / "bench.py").write_text(ROUTEMQ_ROUTER.replace("WORKERS", str(workers)))
        (out / ".env").write_text(
            f"MQTT_BROKER=127.0.0.1\nMQTT_PORT={port}\nMQTT_GROUP_NAME=bench\n"
            f"MQTT_CLIENT_ID=routemq-bench-w{workers}\nENABLE_REDIS=false\n"
            "ENABLE_MYSQL=false\nENABLE_TSDB=false\nLOG_LEVEL=WARNING\n")
        log = (out / "routemq.log").open("ab")
        procs.append(subprocess.Popen([ROUTEMQ_PYTHON, "-m", "routemq.cli", "run"], env=env,
                                      cwd=out, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        return procs, _probe_ready(port, out, workers)
    (out / "benchapp.py").write_text(APP)
    http = _free_port()
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "fieldmq", "--log-level", "WARNING", "run", "benchapp:router",
         "--broker", f"mqtt://127.0.0.1:{port}", "--workers", str(workers),
         "--http-port", str(http), "--dead-letters", str(out / "dlq.db"),
         "--client-prefix", f"bench-w{workers}", "--prefetch", str(PREFETCH)],
        env=env, cwd=out))
    return procs, lambda: _ready(http) == workers


def wait_ready(kind: str, procs: Procs, ready: Callable[[], bool], out: Path) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{kind} consumers did not start; see {out}")
        time.sleep(0.05)


def stop(procs: Procs) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)


def wait_handled(kind: str, out: Path, base: int, n: int,
                 workers: int = 0) -> tuple[float, int, float, int]:
    """Poll until ``n`` messages beyond ``base`` are handled. Returns (start, handled at
    start, end, lost): start is the first message handled, or with ``workers`` the moment
    every consumer has handled one (so a consumer that starts late does not count its
    start-up); end is when the last one was handled. RouteMQ acknowledges before
    handling and may lose messages: a stall of 5 s ends its wait and the loss is
    reported."""
    sizes = {f: f.stat().st_size for f in out.glob("n-*")}
    start, at_start = 0.0, 0
    last, last_change = -1, time.perf_counter()
    began = last_change
    while True:
        files = {f: f.stat().st_size for f in out.glob("n-*")}
        got = sum(files.values()) - base
        now = time.perf_counter()
        if not start and got > 0 and (
                not workers or sum(v > sizes.get(f, 0) for f, v in files.items()) >= workers):
            start, at_start = now, got
        if got >= n:
            return start, at_start, now, 0
        if got != last:
            last, last_change = got, now
        elif kind == "routemq" and now - last_change > 5.0:
            return start, at_start, last_change, n - got
        if now - began > 300:
            raise RuntimeError(f"{kind}: only {got} of {n} handled")
        time.sleep(0.005)


def run_once(kind: str, mode: str, workers: int, n: int) -> tuple[int, float, float, int]:
    """One measurement on a fresh broker: (messages timed, seconds, consumer CPU
    seconds, lost)."""
    out = Path(tempfile.mkdtemp(prefix="router-bench-"))
    cpu0 = children_cpu()
    with MosquittoBroker() as broker:
        procs, ready = launch(kind, broker.port, workers, out)
        wait_ready(kind, procs, ready, out)
        if mode == "backlog":
            stop(procs)  # the persistent sessions stay in the $share group
            if n:
                flood(broker.port, n)  # returns when the broker queued them all
            base = handled(out)
            procs, ready = launch(kind, broker.port, workers, out)
            start, skipped, end, lost = wait_handled(kind, out, base, n, workers) if n \
                else (0.0, 0, 0.0, 0)
            wait_ready(kind, procs, ready, out)  # so the zero-message run costs the same
        else:
            base = handled(out)  # probe messages handled while waiting for readiness
            start, skipped = time.perf_counter(), 0
            if n:
                (flood if mode == "flood" else paced)(broker.port, n)
            _, _, end, lost = wait_handled(kind, out, base, n) if n else (0.0, 0, start, 0)
        stop(procs)
    return n - lost - skipped, end - start, children_cpu() - cpu0, lost


ROUTEMQ_PYTHON = str(HERE / ".venv-routemq" / "bin" / "python")
PREFETCH = 100


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
    global ROUTEMQ_PYTHON, PREFETCH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--kinds", default="paho,fieldmq,routemq")
    parser.add_argument("--mode", choices=("flood", "backlog", "paced"), default="flood")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; medians shown")
    parser.add_argument("--prefetch", type=int, default=PREFETCH,
                        help="fieldmq --prefetch (default %(default)s)")
    parser.add_argument("--routemq-python", default=ROUTEMQ_PYTHON,
                        help="a Python 3.12 with routemq installed ('' to skip RouteMQ)")
    args = parser.parse_args()
    ROUTEMQ_PYTHON, PREFETCH = args.routemq_python, args.prefetch
    kinds = [k for k in args.kinds.split(",") if k != "routemq"]
    if "routemq" in args.kinds.split(","):
        if args.mode == "backlog":
            print("RouteMQ skipped: its clean sessions cannot hold a backlog")
        elif ROUTEMQ_PYTHON and Path(ROUTEMQ_PYTHON).exists():
            kinds.append("routemq")
        else:
            print("RouteMQ skipped: no Python with routemq at " + repr(ROUTEMQ_PYTHON))
    n = args.messages
    print(f"mode {args.mode}, {n} messages, median of {args.repeat}")
    print(f"{'consumer':<10} {'workers':>7} {'msgs/s':>10} {'cpu us/msg':>11}  runs (msgs/s)")
    for w in (int(x) for x in args.workers.split(",")):
        for kind in kinds:
            rates, pers, losts = [], [], []
            for _ in range(args.repeat):
                _, _, idle_cpu, _ = run_once(kind, args.mode, w, 0)
                timed, took, cpu, lost = run_once(kind, args.mode, w, n)
                done = n - lost
                rates.append(timed / took)
                pers.append(max(0.0, cpu - idle_cpu) / max(1, done) * 1e6)
                losts.append(lost)
            note = f"  LOST {max(losts)} of {n}" if max(losts) else ""
            runs = " ".join(f"{r:.0f}" for r in rates)
            print(f"{kind:<10} {w:>7} {statistics.median(rates):>10.0f} "
                  f"{statistics.median(pers):>11.1f}  {runs}{note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
