"""Matrix item 2: the publisher process SIGKILLed 5 times during load, restarted on
the same store each time."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from chaos.common import Ledger, subscriber
from fieldmq.testing import MosquittoBroker

KILLS = 5

PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    from fieldmq import Backoff, Client
    url, store, topic, start, n = sys.argv[1:6]
    start, n = int(start), int(n)
    c = Client(client_id="pk-pub", brokers=[url], store=store,
               backoff=Backoff(initial=0.05, maximum=0.5, stable_after=1.0))
    for i in range(start, start + n):
        c.publish(topic, str(i).encode(), qos=1)
        print(i, flush=True)          # publish() returned: it must survive SIGKILL
        time.sleep(0.001)
    if sys.argv[6] == "final":
        ok = c.drain(60)
        deadline = time.monotonic() + 30
        while not c.stats()["connected"] and time.monotonic() < deadline:
            time.sleep(0.01)
        s = c.stats()
        print("STATS", json.dumps({"drained": ok, "queued": s["queued"],
              "inflight": s["inflight"], "connected": s["connected"],
              "dropped": s["dropped"], "recovered": s["recovered"]}), flush=True)
        c.close()
    else:
        sys.stdin.read()              # wait to be killed
    """
)


def _run(url: str, store: Path, topic: str, start: int, n: int, final: bool,
         kill_after: int = 0) -> tuple[int, str]:
    """Run one publisher process; SIGKILL it after ``kill_after`` returned publishes.
    Returns the last index whose publish() returned, and the final stats line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, url, str(store), topic, str(start), str(n),
         "final" if final else "kill"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    last, stats = start - 1, ""
    try:
        for line in proc.stdout:
            if line.startswith("STATS"):
                stats = line.split(" ", 1)[1]
                break
            last = int(line)
            if not final and last >= start + kill_after - 1:
                proc.send_signal(signal.SIGKILL)
                break
        if not final:
            # Anything printed after the kill signal had also returned from publish().
            last = max([last, *(int(x) for x in proc.stdout.read().split())])
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
        proc.stdin.close()
    assert final or proc.returncode == -signal.SIGKILL
    return last, stats


def test_publisher_sigkilled_five_times_on_same_store(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    """Publisher SIGKILLed 5x mid-load, restarted on one store: every returned publish arrives."""
    ledger = Ledger()
    sub = subscriber(mosquitto.url, f"{topic}/#", "pk-sub", ledger)
    store = tmp_path / "pk.db"
    rng = random.Random(2)
    try:
        start = 0
        for _ in range(KILLS):
            last, _ = _run(mosquitto.url, store, f"{topic}/m", start, 400, False,
                           kill_after=rng.randrange(50, 300))
            start = last + 1
        last, stats_line = _run(mosquitto.url, store, f"{topic}/m", start, 100, True)
        stats = json.loads(stats_line)
        assert stats["drained"] and stats["queued"] == 0 and stats["inflight"] == 0, stats
        assert stats["connected"] and stats["dropped"] == {}, stats
        want = set(range(last + 1))

        def got() -> set[int]:
            return {int(p) for p in ledger.payloads.values() if p.isdigit()}

        ledger.wait_for(lambda _: want <= got(), 30)
        missing = want - got()
        assert missing == set(), sorted(missing)[:20]
        print(f"chaos[2] kills={KILLS} returned={len(want)} lost=0 "
              f"duplicated_ids={len(ledger.duplicated())}")
    finally:
        sub.close()
