"""fieldmq quick start: publish through a broker outage and lose nothing.

Starts a private mosquitto on a free port, publishes 2,000 readings while the broker is
down and killed (SIGKILL) mid-stream, and shows that every one arrives. Run it with
`scripts/demo` (which bootstraps the environment) or `python examples/quickstart.py`.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

from fieldmq import Client, Deduplicator, Message
from fieldmq.testing import MosquittoBroker, MosquittoNotFound


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the outage is deliberate: keep it quiet
    try:
        broker = MosquittoBroker()
    except MosquittoNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fieldmq-demo-"))
    received: set[str] = set()
    seen = Deduplicator()
    lock = threading.Lock()

    def on_reading(msg: Message) -> None:
        if not seen.seen(msg.message_id):
            with lock:
                received.add(msg.message_id or "")

    print(f"broker will listen on {broker.url} (not started yet)")
    with Client(client_id="demo-device", brokers=[broker.url], store=workdir / "outbox.db") as dev:
        handles = [dev.publish("plant/demo/data/temp", f"{20 + i % 7}.5", qos=1, priority=5)
                   for i in range(1000)]
        s = dev.stats()
        print(f"published 1000 readings with no broker: queued={s['queued']} "
              f"durable_lag={s['durable_lag']} connected={s['connected']}")
        broker.start()
        sub = Client(client_id="demo-backend", brokers=[broker.url], persistent_session=True)
        sub.subscribe("plant/+/data/#", on_reading)
        sub.wait_connected(10)
        broker.save()
        print("broker started; the backlog drains...")
        handles += [dev.publish("plant/demo/data/temp", b"21.0") for _ in range(500)]
        broker.stop()
        print("broker stopped (SIGTERM) mid-stream; still publishing...")
        handles += [dev.publish("plant/demo/data/temp", b"22.0") for _ in range(500)]
        time.sleep(1.0)
        broker.start()
        print("broker back; waiting for every acknowledgement")
        ok = dev.drain(60)
        deadline = time.monotonic() + 30
        want = {h.message_id for h in handles}
        while time.monotonic() < deadline and not want <= received:
            time.sleep(0.05)
        s = dev.stats()
        sub.close()
    broker.close()
    lost = len(want - received)
    print(f"sent={len(want)} received={len(want & received)} lost={lost} "
          f"duplicates dropped={seen.duplicates} reconnects={s['reconnects']} "
          f"dropped={s['dropped']} drained={ok}")
    print(f"store files were in {workdir}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
