"""Soak test (not CI): steady QoS 1 load through a fault proxy for ``--minutes``
(default 10) while random faults hit the link and the broker, then a drain and a loss
audit. Prints published / acked / lost / duplicated / late and exits non-zero when
the client lost anything. Bounded: it stops by itself.

    .venv/bin/python benchmarks/soak.py --minutes 10

Faults (one at a time, every 2-8 s, chosen at random with ``--seed``): proxy latency,
bandwidth cap, blackhole (longer than keepalive, so the client must notice the dead
link), reset (RST), refuse (connects fail), and broker SIGTERM or SIGKILL + restart.

What is counted:

* ``client_lost``: messages whose ``publish()`` returned but that never got a broker
  PUBACK and are no longer in the store. The client's guarantee: must be 0.
* ``not_received``: acked by the broker but never seen by the subscriber. mosquitto
  forgets messages it acked but had not passed on when it is SIGKILLed (it keeps them
  in memory between saves); only SIGKILL can cause these.
* ``duplicated``: deliveries of a message id already seen (at-least-once resends).
* ``late``: first delivery more than ``--late`` seconds after ``publish()`` returned.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fieldmq import Backoff, Client, Message
from fieldmq.testing import FaultProxy, MosquittoBroker


class Receiver:
    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.deliveries: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, msg: Message) -> None:
        if msg.message_id is None:
            return
        now = time.time()
        with self.lock:
            self.deliveries[msg.message_id] += 1
            self.first_seen.setdefault(msg.message_id, now)


class Chaos(threading.Thread):
    """Injects one random fault at a time until stopped."""

    def __init__(self, proxy: FaultProxy, broker: MosquittoBroker, keepalive: float,
                 rng: random.Random) -> None:
        super().__init__(name="soak-chaos", daemon=True)
        self.proxy, self.broker, self.keepalive, self.rng = proxy, broker, keepalive, rng
        self.stop_event = threading.Event()
        self.counts: Counter[str] = Counter()

    def run(self) -> None:
        wait = self.stop_event.wait
        while not wait(self.rng.uniform(2, 8)):
            kind = self.rng.choice(["latency", "bandwidth", "blackhole", "reset", "refuse",
                                    "broker-stop", "broker-kill"])
            self.counts[kind] += 1
            p, b = self.proxy, self.broker
            if kind == "latency":
                p.latency(self.rng.uniform(50, 400))
                wait(self.rng.uniform(2, 6))
            elif kind == "bandwidth":
                p.bandwidth(self.rng.uniform(5_000, 50_000))
                wait(self.rng.uniform(2, 6))
            elif kind == "blackhole":
                p.blackhole()
                wait(self.keepalive * self.rng.uniform(1.6, 2.5))
            elif kind == "reset":
                p.reset()
            elif kind == "refuse":
                p.refuse()
                wait(self.rng.uniform(1, 4))
            else:
                b.save()
                (b.stop if kind == "broker-stop" else b.kill)()
                wait(self.rng.uniform(0.5, 3))
                b.start()
            p.passthrough()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(60)
        self.proxy.passthrough()
        if not self.broker.running:
            self.broker.start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    ap.add_argument("--rate", type=float, default=200.0, help="messages per second")
    ap.add_argument("--keepalive", type=float, default=5.0, help="client keepalive (s)")
    ap.add_argument("--late", type=float, default=30.0, help="late threshold (s)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    backoff = Backoff(initial=0.1, maximum=2.0, stable_after=5.0)
    work = Path(tempfile.mkdtemp(prefix="fieldmq-soak-"))
    recv = Receiver()
    published: list[tuple[str, float]] = []
    t_start = time.monotonic()
    with MosquittoBroker(workdir=work / "broker") as broker, \
            FaultProxy(("127.0.0.1", broker.port)) as proxy:
        sub = Client(client_id="soak-sub", brokers=[broker.url], persistent_session=True,
                     backoff=backoff)
        sub.subscribe("soak/#", recv)
        if not sub.wait_connected(30):
            print("subscriber could not connect", file=sys.stderr)
            return 2
        broker.save()
        pub = Client(client_id="soak-pub", brokers=[proxy.url], store=work / "pub.db",
                     keepalive=args.keepalive, backoff=backoff)
        chaos = Chaos(proxy, broker, args.keepalive, rng)
        chaos.start()
        end = time.monotonic() + args.minutes * 60
        i = 0
        next_report = time.monotonic() + 30
        while (now := time.monotonic()) < end:
            h = pub.publish(f"soak/m/{i % 16}", f"{i}".encode(), qos=1)
            published.append((h.message_id, time.time()))
            i += 1
            ahead = t_start + i / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load, not synchronisation
            if now >= next_report:
                s = pub.stats()
                print(f"[{now - t_start:6.0f}s] published={i} acked={s['acked']} "
                      f"queued={s['queued']} inflight={s['inflight']} "
                      f"reconnects={s['reconnects']} faults={dict(chaos.counts)}", flush=True)
                next_report = now + 30
        chaos.stop()
        drained = pub.drain(180)
        stats = pub.stats()
        ids = {m for m, _ in published}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with recv.lock:
                if ids <= recv.first_seen.keys():
                    break
            time.sleep(0.2)
        pub.close()
        sub.close()
    with recv.lock:
        seen = dict(recv.first_seen)
        dups = sum(n - 1 for n in recv.deliveries.values() if n > 1)
    pending = stats["queued"] + stats["inflight"]
    acked = stats["acked"]
    summary: dict[str, Any] = {
        "seed": seed, "minutes": args.minutes, "rate": args.rate,
        "published": len(published), "acked": acked, "pending_after_drain": pending,
        "client_lost": len(published) - acked - pending - sum(stats["dropped"].values()),
        "dropped": stats["dropped"], "not_received": len(ids - seen.keys()),
        "duplicated": dups,
        "late": sum(1 for m, t in published if m in seen and seen[m] - t > args.late),
        "max_latency_s": round(max((seen[m] - t for m, t in published if m in seen),
                                   default=0.0), 2),
        "reconnects": stats["reconnects"], "faults": dict(chaos.counts),
        "drained": drained, "elapsed_s": round(time.monotonic() - t_start, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    ok = summary["client_lost"] == 0 and drained and not stats["dropped"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
