"""One benchmark item per process: ``python benchmarks/items.py NAME 'JSON-ARGS'``.

Each item prints progress to stderr and exactly one line ``RESULT {json}`` to stdout.
Started by ``benchmarks/bench.py`` (through ``benchmarks/run``); uses only fieldmq's
public API (``Client``, ``publish``, ``publish_many``, ``drain``, ``flush``, ``stats``,
handles' ``wait``/``wait_durable``) so internal changes to the engine do not break it.
Not a test module: nothing under ``tests/`` imports it.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import logging
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAYLOAD = b"x" * 100
TOPIC = "bench/fieldmq/telemetry"
BATCH = 1000  # publish_many() batch size

perf = time.perf_counter


def log(msg: str) -> None:
    print(f"  [{ITEM}] {msg}", file=sys.stderr, flush=True)


def proc_status(key: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


def proc_io() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def percentiles(values: list[float], scale: float) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(pct(values, 0.50) * scale, 3),
        "p99": round(pct(values, 0.99) * scale, 3),
        "p999": round(pct(values, 0.999) * scale, 3),
        "max": round(max(values) * scale, 3) if values else float("nan"),
    }


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"mqtt://127.0.0.1:{port}"


def tmp_store(tag: str) -> tuple[Path, Path]:
    d = Path(tempfile.mkdtemp(prefix=f"fieldmq-bench-{tag}-"))
    return d, d / "store.db"


# --------------------------------------------------------------------------------------
# raw paho-mqtt
# --------------------------------------------------------------------------------------
def item_paho(a: dict[str, Any]) -> dict[str, Any]:
    """Raw paho-mqtt 2.x QoS1: unlimited paho inflight, an application window of
    ``window`` unacked messages refilled continuously, TCP_NODELAY. Publish start to
    the last PUBACK."""
    import paho.mqtt.client as mqtt

    n, window, warmup = a["count"], a.get("window", 1000), a.get("warmup", 1000)
    proto = mqtt.MQTTv5 if a.get("protocol", 4) == 5 else mqtt.MQTTv311
    host, port = a["url"].removeprefix("mqtt://").split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=proto)
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    slots = threading.Semaphore(window)
    state = {"acked": 0, "target": 0}
    done = threading.Event()
    connected = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        connected.set()

    def on_publish(client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        state["acked"] += 1
        slots.release()
        if state["acked"] >= state["target"]:
            done.set()

    c.on_connect = on_connect
    c.on_publish = on_publish
    c.connect(host, int(port), keepalive=60)
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError("paho did not connect in 10 s")
    errors = 0

    def run(count: int) -> float:
        nonlocal errors
        done.clear()
        state["acked"] = 0
        state["target"] = count
        publish, acquire = c.publish, slots.acquire
        t0 = perf()
        for _ in range(count):
            acquire()
            if publish(TOPIC, PAYLOAD, qos=1).rc != 0:
                errors += 1
        if not done.wait(a.get("timeout", 120)):
            raise RuntimeError(f"paho: only {state['acked']}/{count} acked in time")
        return perf() - t0

    run(warmup)
    elapsed = run(n)
    c.disconnect()
    c.loop_stop()
    return {
        "count": n, "seconds": round(elapsed, 4), "msgs_per_s": round(n / elapsed),
        "publish_errors": errors, "window": window,
        "protocol": "MQTT 5" if proto == mqtt.MQTTv5 else "MQTT 3.1.1",
        "paho_version": importlib.metadata.version("paho-mqtt"),
    }


# --------------------------------------------------------------------------------------
# fieldmq
# --------------------------------------------------------------------------------------
def make_client(url: str, store: Path, **kw: Any) -> Any:
    from fieldmq import Client

    return Client(client_id=kw.pop("client_id", "bench-fieldmq"), brokers=[url],
                  store=str(store), **kw)


def finish(client: Any, handle: Any, timeout: float) -> None:
    """Wait for the last handle, then for the whole queue (``drain``)."""
    handle.wait(timeout=timeout)
    if not client.drain(timeout=timeout):
        raise RuntimeError(f"drain() did not finish in {timeout} s: {client.stats()}")


def item_fieldmq(a: dict[str, Any]) -> dict[str, Any]:
    """fieldmq QoS1 with default guarantees: ``publish()`` in a loop, then the last
    handle's ``wait()`` and ``drain()``."""
    n, warmup, timeout = a["count"], a.get("warmup", 1000), a.get("timeout", 120)
    d, store = tmp_store("e2e")
    try:
        client = make_client(a["url"], store)
        if not client.wait_connected(10):
            raise RuntimeError(f"fieldmq did not connect: {client.stats()}")

        def run(count: int) -> float:
            publish = client.publish
            t0 = perf()
            h = None
            for _ in range(count):
                h = publish(TOPIC, PAYLOAD, qos=1)
            finish(client, h, timeout)
            return perf() - t0

        run(warmup)
        before = client.stats()
        elapsed = run(n)
        st = client.stats()
        client.close()
        acked = st["acked"] - before["acked"]
        return {
            "count": n, "seconds": round(elapsed, 4), "msgs_per_s": round(n / elapsed),
            "acked": acked, "dropped": st["dropped"], "reconnects": st["reconnects"],
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)


def item_enqueue(a: dict[str, Any]) -> dict[str, Any]:
    """Offline enqueue against a closed port, ``publish()`` from one thread or
    ``publish_many()`` in batches of 1000; rate per slice up to ``count``."""
    from fieldmq import Limits

    n, slice_n, batch = a["count"], a["slice"], a.get("mode") == "batch"
    budget = a.get("budget", 300.0)
    d, store = tmp_store("enqueue")
    try:
        rss0 = proc_status("VmRSS")
        client = make_client(closed_port_url(), store,
                             limits=Limits(max_messages=max(1_000_000, n) + 1))
        rss_client = proc_status("VmRSS")
        items = [(TOPIC, PAYLOAD)] * BATCH
        slices: list[float] = []
        total = 0
        t_start = perf()
        while total < n:
            t0 = perf()
            if batch:
                pm = client.publish_many
                for _ in range(slice_n // BATCH):
                    pm(items, qos=1)
            else:
                publish = client.publish
                for _ in range(slice_n):
                    publish(TOPIC, PAYLOAD, qos=1)
            dt = perf() - t0
            total += slice_n
            slices.append(round(slice_n / dt))
            log(f"{total:>9,} queued: slice {slice_n / dt:>10,.0f} msgs/s")
            if perf() - t_start > budget:
                log(f"time budget {budget} s spent; stopping at {total:,}")
                break
        returned = perf() - t_start
        t0 = perf()
        flushed = client.flush(timeout=120)
        flush_s = perf() - t0
        gc.collect()
        time.sleep(1.0)  # let the writer spill/checkpoint before reading RSS
        st = client.stats()
        out = {
            "mode": "publish_many" if batch else "publish",
            "count": total, "slice": slice_n, "slices_msgs_per_s": slices,
            "first_slice_msgs_per_s": slices[0],
            "overall_msgs_per_s": round(total / returned),
            "flush_seconds": round(flush_s, 3), "flushed": flushed,
            "incl_flush_msgs_per_s": round(total / (returned + flush_s)),
            "flatness_min_over_first": round(min(slices) / slices[0], 3),
            "rss_before_client_mb": round(rss0 / 2**20, 1),
            "rss_empty_client_mb": round(rss_client / 2**20, 1),
            "rss_queued_mb": round(proc_status("VmRSS") / 2**20, 1),
            "rss_peak_mb": round(proc_status("VmHWM") / 2**20, 1),
            "queued": st["queued"], "dropped": st["dropped"],
            "store_bytes": st.get("store_bytes"),
        }
        t0 = perf()
        client.close()
        out["close_seconds"] = round(perf() - t0, 3)
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def item_drain(a: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``count`` while the broker is stopped, print READY, wait for GO on stdin
    (the broker is up again), then time reconnect and drain."""
    from fieldmq import Backoff

    n, timeout = a["count"], a.get("timeout", 300)
    d, store = tmp_store("drain")
    try:
        # a short reconnect backoff so the figure measures the drain, not the backoff
        client = make_client(a["url"], store, backoff=Backoff(initial=0.05, maximum=0.2))
        items = [(TOPIC, PAYLOAD)] * BATCH
        for _ in range(n // BATCH):
            client.publish_many(items, qos=1)
        client.flush(timeout=60)
        time.sleep(1.0)  # let the young messages spill to the backlog as they would
        before = client.stats()
        log(f"queued {before['queued']:,} offline (spilled {before.get('spilled')}); READY")
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "GO":
            raise RuntimeError("the orchestrator did not say GO")
        t0 = perf()
        if not client.wait_connected(30):
            raise RuntimeError(f"no reconnect in 30 s: {client.stats()}")
        t1 = perf()
        if not client.drain(timeout=timeout):
            raise RuntimeError(f"drain did not finish in {timeout} s: {client.stats()}")
        t2 = perf()
        st = client.stats()
        client.close()
        return {
            "count": n, "queued_before": before["queued"],
            "reconnect_seconds": round(t1 - t0, 3), "drain_seconds": round(t2 - t1, 3),
            "msgs_per_s": round(n / (t2 - t1)),
            "incl_reconnect_msgs_per_s": round(n / (t2 - t0)),
            "acked": st["acked"], "dropped": st["dropped"],
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)


def item_latency(a: dict[str, Any]) -> dict[str, Any]:
    """Online: publish() call latency at full speed; then the power-safety lag (publish()
    return until ``wait_durable()`` returns) at full speed and at a paced rate; then the
    same lag observed passively (polling ``handle.durable`` every 0.2 ms), because a
    thread blocked in ``wait_durable()`` makes the writer fsync without waiting."""
    n, timeout = a["count"], a.get("timeout", 120)
    d, store = tmp_store("latency")
    try:
        client = make_client(a["url"], store)
        if not client.wait_connected(10):
            raise RuntimeError("fieldmq did not connect")
        publish = client.publish
        h = None
        for _ in range(1000):
            h = publish(TOPIC, PAYLOAD, qos=1)
        finish(client, h, timeout)

        # 1. publish() latency, nothing else running in this process but the client
        lat: list[float] = [0.0] * n
        for i in range(n):
            t0 = perf()
            h = publish(TOPIC, PAYLOAD, qos=1)
            lat[i] = perf() - t0
        finish(client, h, timeout)
        out: dict[str, Any] = {"publish_us": percentiles(lat, 1e6)}

        # 2. durability lag: a watcher thread calls wait_durable() on each handle in order
        # (or polls handle.durable); each run on a fresh client and store, so that the
        # lag the store measured itself (stats()["fsync_lag_ms"]: per sync, from the
        # oldest write it covered to the end of the fdatasync) is this run's alone
        def lag_run(count: int, rate: float | None, every: int, poll: bool,
                    **kw: Any) -> dict[str, Any]:
            ld, lstore = tmp_store("lag")
            c = make_client(a["url"], lstore, client_id="bench-lag", **kw)
            try:
                if not c.wait_connected(10):
                    raise RuntimeError("fieldmq did not connect")
                hw = None
                for _ in range(1000):
                    hw = c.publish(TOPIC, PAYLOAD, qos=1)
                finish(c, hw, timeout)
                res = _lag_run(c, count, rate, every, poll)
                res["disk"] = c.stats()["fsync_lag_ms"]
                return res
            finally:
                c.close()
                shutil.rmtree(ld, ignore_errors=True)

        def _lag_run(c: Any, count: int, rate: float | None, every: int,
                     poll: bool) -> dict[str, Any]:
            publish = c.publish
            q: queue.SimpleQueue[tuple[Any, float] | None] = queue.SimpleQueue()
            lags: list[float] = []
            failures = [0]

            def watch() -> None:
                while (item := q.get()) is not None:
                    handle, t_ret = item
                    if poll:  # passive: a waiter would make the writer fsync at once
                        deadline = t_ret + 10
                        while not handle.durable and perf() < deadline:
                            time.sleep(0.0002)
                        if not handle.durable:
                            failures[0] += 1
                    elif not handle.wait_durable(timeout=10):
                        failures[0] += 1
                    lags.append(perf() - t_ret)

            th = threading.Thread(target=watch, daemon=True)
            if every:
                th.start()
            interval = 1.0 / rate if rate else 0.0
            t_next = perf()
            hh = None
            for i in range(count):
                if rate:
                    t_next += interval
                    while (delay := t_next - perf()) > 0:
                        time.sleep(delay if delay > 0.0005 else 0)
                hh = publish(TOPIC, PAYLOAD, qos=1)
                if every and i % every == 0:
                    q.put((hh, perf()))
            q.put(None)
            if every:
                th.join(timeout)
            finish(c, hh, timeout)
            res: dict[str, Any] = percentiles(lags, 1e3) if lags else {}
            res["timeouts"] = failures[0]
            res["sampled_every"] = every
            return res

        # at full speed only every 10th handle is watched, so the watcher thread keeps up
        paced, n_paced = a.get("paced_rate", 2000), a.get("paced_count", 10_000)
        for poll in (False, True):
            tag = "_polled" if poll else ""
            out[f"durable_lag_ms_full_speed{tag}"] = lag_run(n, None, 10, poll)
            out[f"durable_lag_ms_paced{tag}"] = lag_run(n_paced, paced, 1, poll)
            out[f"durable_lag_ms_paced{tag}"]["rate"] = paced
        # nobody watching: the lag as the store measures it, with the fsync helper
        # process (the default) and with the in-process fsync thread (fsync_helper=False)
        for helper in (True, False):
            tag = "" if helper else "_thread"
            out[f"fsync_lag_ms_full_speed{tag}"] = lag_run(
                n, None, 0, False, fsync_helper=helper)["disk"]
            out[f"fsync_lag_ms_paced{tag}"] = lag_run(
                n_paced, paced, 0, False, fsync_helper=helper)["disk"]
        out["count"] = n
        client.close()
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def item_diskbytes(a: dict[str, Any]) -> dict[str, Any]:
    """Bytes written to disk per delivered message (``/proc/self/io`` write_bytes) in
    steady online operation: a warm client publishes at a fixed rate (or flat out),
    everything is acked and flushed, and the writer gets a second to finish."""
    timeout = a.get("timeout", 120)
    results: dict[str, Any] = {}
    direct = [r for r in a["runs"] if len(r) == 2 or not r[2]]
    far = [r for r in a["runs"] if len(r) > 2 and r[2]]
    _diskbytes_runs(a["url"], direct, results, timeout, "")
    # a broker far away (4G): a FaultProxy in this process delays each direction by
    # half the round trip, so acknowledgements come back after the sync is due
    from fieldmq.testing import FaultProxy

    host, port = a["url"].rsplit("/", 1)[1].split(":")
    for rate, count, rtt in far:
        with FaultProxy((host, int(port))) as proxy:
            proxy.latency(rtt / 2)
            _diskbytes_runs(proxy.url, [(rate, count)], results, timeout,
                            f", broker {rtt} ms away")
    return {"runs": results, "payload_bytes": len(PAYLOAD)}


def _diskbytes_runs(url: str, runs: list[Any], results: dict[str, Any], timeout: float,
                    tag: str) -> None:
    d, store = tmp_store("disk")
    try:
        client = make_client(url, store)
        if not client.wait_connected(10):
            raise RuntimeError("fieldmq did not connect")
        publish = client.publish
        for rate, count, *_ in runs:
            h = None
            for _ in range(2000):  # warm up: files exist, pages allocated
                h = publish(TOPIC, PAYLOAD, qos=1)
            finish(client, h, timeout)
            client.flush(timeout=10)
            time.sleep(1.0)
            io0 = proc_io()
            t0 = perf()
            t_next = t0
            interval = 1.0 / rate if rate else 0.0
            for _ in range(count):
                if rate:
                    t_next += interval
                    while (delay := t_next - perf()) > 0:
                        time.sleep(delay if delay > 0.0005 else 0)
                h = publish(TOPIC, PAYLOAD, qos=1)
            finish(client, h, timeout)
            client.flush(timeout=10)
            elapsed = perf() - t0
            time.sleep(1.0)
            io1 = proc_io()
            wb = io1["write_bytes"] - io0["write_bytes"]
            cancelled = io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"]
            key = (f"{rate}/s" if rate else "full_speed") + tag
            results[key] = {
                "count": count, "achieved_msgs_per_s": round(count / elapsed),
                "write_bytes_per_msg": round(wb / count, 1),
                "net_write_bytes_per_msg": round((wb - cancelled) / count, 1),
                "x_payload": round(wb / count / len(PAYLOAD), 2),
                "write_syscall_bytes_per_msg": round(
                    (io1["wchar"] - io0["wchar"]) / count, 1),
            }
            log(f"{key}: {results[key]}")
        client.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


ITEMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "paho": item_paho,
    "fieldmq": item_fieldmq,
    "enqueue": item_enqueue,
    "drain": item_drain,
    "latency": item_latency,
    "diskbytes": item_diskbytes,
}
ITEM = "?"

if __name__ == "__main__":
    ITEM = sys.argv[1]
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    # fieldmq logs "cannot connect" warnings while offline, on purpose; keep errors only
    logging.basicConfig(level=logging.ERROR, format=f"  [{ITEM}] %(name)s: %(message)s")
    result = ITEMS[ITEM](args)
    print("RESULT " + json.dumps(result), flush=True)
