"""How closely the bridge honours its bandwidth cap (docs/bridge.md quotes the result).

Two mosquitto brokers, a bridge with ``rate_limit`` = CAP bytes/s, N messages of SIZE
bytes published locally at once; the achieved rate upstream is measured from the first
to the last arrival (the burst excluded), as the cap's token bucket counts bytes
(topic + payload + 16 bytes of framing per message).

    .venv/bin/python benchmarks/bridge_cap.py [--cap 20000] [--size 1000] [--n 400]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from fieldmq import Client, Message
from fieldmq.bridge import Bridge, parse_config
from fieldmq.testing import MosquittoBroker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap", type=float, default=20_000)
    ap.add_argument("--burst", type=float, default=2_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--n", type=int, default=400)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker() as local, \
            MosquittoBroker() as up:
        cfg = parse_config({"id": "bench", "upstream": {"rate_limit": a.cap, "burst": a.burst},
                            "forward": [{"from": "bench/#"}]}).with_urls(local.url, up.url)
        arrivals: list[tuple[float, int]] = []
        done = threading.Event()

        def on(m: Message) -> None:
            arrivals.append((time.monotonic(), len(m.topic) + len(m.payload) + 16))
            if len(arrivals) == a.n:
                done.set()

        with Bridge(cfg, state_dir=Path(tmp) / "b") as bridge, \
                Client(client_id="sub", brokers=[up.url]) as sub, \
                Client(client_id="pub", brokers=[local.url]) as pub:
            sub.subscribe("bench/#", on)
            assert sub.wait_connected(10) and bridge.upstream.wait_connected(10)
            time.sleep(0.5)
            for _ in range(a.n):
                pub.publish("bench/data", b"x" * a.size)
            done.wait(a.n * (a.size + 40) / a.cap * 2 + 30)
        first, last = arrivals[0][0], arrivals[-1][0]
        wire = sum(b for _, b in arrivals[1:])
        rate = wire / (last - first)
        print(f"cap {a.cap:g} B/s, burst {a.burst:g} B, {a.n} x {a.size} B: achieved "
              f"{rate:,.0f} B/s over {last - first:.1f} s ({(rate / a.cap - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
