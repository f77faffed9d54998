"""Matrix items 6, 7, 8 (rows that cannot be sent, mosquitto) and 9: wall-clock steps,
a corrupt store at start-up, dead letters, two processes on one store."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chaos.common import FAST, Ledger, drained, subscriber
from fieldmq import Client, StoreLocked
from fieldmq.testing import FakeClock, MosquittoBroker

YEAR = 365 * 86400.0


def test_wall_clock_steps_of_a_year_keep_ttl_and_order(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Wall clock +1 y / -1 y while messages wait (open and closed): no mass expiry, order kept."""
    mosquitto.stop()
    clock = FakeClock()
    store = tmp_path / "clock.db"
    expected: list[tuple[int, int, str]] = []  # (-priority, seq, id): the delivery order
    kw = {"client_id": "clk-pub", "brokers": [mosquitto.url], "store": store,
          "clock": clock, "backoff": FAST}

    def publish_some(c: Client, tag: str) -> None:
        for i in range(12):
            prio = (3, 7, 5)[i % 3]
            h = c.publish(f"{topic}/m", f"{tag}{i}".encode(), priority=prio, ttl=3600)
            expected.append((-prio, h.seq, h.message_id))

    with Client(**kw) as c:  # type: ignore[arg-type]
        publish_some(c, "a")
        short = c.publish(f"{topic}/m", b"short", ttl=5)  # must still expire on elapsed time
        clock.jump_wall(YEAR)
        clock.advance(1)
        publish_some(c, "b")
        clock.jump_wall(-YEAR)
        clock.advance(1)
    clock.jump_wall(YEAR)  # forward while the store is closed: implausible gap, ignored
    with caplog.at_level(logging.WARNING, logger="fieldmq.store"), Client(**kw) as c:  # type: ignore[arg-type]
        publish_some(c, "c")
        clock.advance(10)  # the 5 s TTL elapses, the 3600 s ones do not
    assert "implausible clock step" in caplog.text
    clock.jump_wall(-2 * YEAR)  # backwards while closed: ignored too
    mosquitto.start()
    ledger = Ledger()
    sub = subscriber(mosquitto.url, f"{topic}/#", "clk-sub", ledger)
    try:
        with Client(**kw) as c:  # type: ignore[arg-type]
            stats = drained(c)
            assert stats["dropped"] == {"expired": 1}, stats
        ids = [i for _, _, i in sorted(expected)]
        assert ledger.wait_all(set(ids), 30) == set()
        assert [i for i in ledger.order if i in set(ids)] == ids
        assert short.message_id not in ledger.counts
        print(f"chaos[6] waiting={len(ids)} expired=0 (+1 short-ttl expired as due) order=kept")
    finally:
        sub.close()


@pytest.mark.parametrize("damage", ["garbage", "damaged-page", "torn-journal"])
def test_corrupt_store_at_startup_is_moved_aside(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str, damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A corrupt store is moved aside, logged and reported in stats(); the client keeps working."""
    store = tmp_path / "c.db"
    with Client(client_id="cor", brokers=["mqtt://127.0.0.1:9"], store=store) as c:
        handles = [c.publish(f"{topic}/old", os.urandom(300)) for _ in range(2000)]
        assert c.flush(10)
    if damage == "torn-journal":
        journal = next(tmp_path.glob("c.db.journal-*"))
        with open(journal, "ab") as f:
            f.write(os.urandom(777))  # a power cut mid-write: the tail fails its CRC
    else:
        with open(store, "r+b") as f:
            f.seek(0 if damage == "garbage" else 4096 * 3)
            f.write(os.urandom(4096 * (1 if damage == "garbage" else 40)))
    ledger = Ledger()
    sub = subscriber(mosquitto.url, f"{topic}/new/#", "cor-sub", ledger)
    try:
        with caplog.at_level(logging.ERROR), Client(
            client_id="cor", brokers=[mosquitto.url], store=store, backoff=FAST
        ) as c:
            err = c.stats()["store_error"]
            h = c.publish(f"{topic}/new/x", b"after")
            h.wait(10)
            drained(c)
        assert ledger.wait_all({h.message_id}, 10) == set()
        moved = sorted(p.name for p in tmp_path.glob("c.db.corrupt-*"))
        if damage == "torn-journal":
            assert err is None and moved == []  # nothing to move: the tail is cut off
        else:
            assert err and "corrupt" in err and "moved aside" in err
            assert len(moved) == 1 and moved[0].startswith("c.db.corrupt-20")
            assert "moved it aside" in caplog.text
        assert len(handles) == 2000
        print(f"chaos[7-{damage}] moved_aside={len(moved)} store_error={bool(err)} running=yes")
    finally:
        sub.close()


def test_rows_that_cannot_be_sent_are_dead_lettered(
    tmp_path: Path, topic: str, mosquitto_factory: object
) -> None:
    """A topic the broker refuses (ACL, PUBACK 0x87) and invalid old rows never block the rest."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny {topic}/secret/#\n")
    assert callable(mosquitto_factory)
    broker: MosquittoBroker = mosquitto_factory(extra_config=f"acl_file {acl}")
    store = tmp_path / "dl.db"
    with Client(client_id="dl-pub", brokers=["mqtt://127.0.0.1:9"], store=store) as c:
        c.publish(f"{topic}/ok", b"seed")
        c.flush(10)
    # Rows an older version (or a bug) left behind: a wildcard topic and a QoS of 3.
    db = sqlite3.connect(store)
    with db:
        db.executemany(
            "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)",
            [(900, f"{topic}/bad/#", b"x", 1, 0, 10, 0.0, -1.0, None),
             (901, f"{topic}/bad/q", b"x", 3, 0, 10, 0.0, -1.0, None)],
        )
    db.close()
    ledger = Ledger()
    sub = subscriber(broker.url, f"{topic}/ok/#", "dl-sub", ledger)
    try:
        with Client(client_id="dl-pub", brokers=[broker.url], store=store, backoff=FAST) as c:
            denied = c.publish(f"{topic}/secret/x", b"no", priority=10)
            good = [c.publish(f"{topic}/ok/x", str(i).encode()) for i in range(100)]
            for h in good:
                h.wait(30)
            stats = drained(c)
            assert denied.status == "dropped" and denied.reason is not None
            letters = {d["seq"]: d["reason"] for d in c.dead_letters()}
        assert set(letters) == {900, 901, denied.seq}, letters
        assert "Not authorized" in str(letters[denied.seq])
        assert all(str(letters[s]).startswith("invalid:") for s in (900, 901))
        assert sum(stats["dropped"].values()) == 3
        assert ledger.wait_all({h.message_id for h in good}, 30) == set()
        print(f"chaos[8-mosquitto] dead_lettered={len(letters)} delivered={len(good) + 1}")
    finally:
        sub.close()


HOLDER = textwrap.dedent(
    """
    import sys
    from fieldmq import Backoff, Client
    c = Client(client_id="holder", brokers=[sys.argv[1]], store=sys.argv[2],
               backoff=Backoff(initial=0.05, maximum=0.5))
    for i in range(200):
        c.publish(sys.argv[3], str(i).encode())
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_two_processes_never_share_a_store(
    mosquitto: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    """A second opener (other process or same process) gets StoreLocked; after a kill it opens."""
    store = tmp_path / "lock.db"
    mosquitto.stop()  # the holder's messages stay in the store
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, mosquitto.url, str(store),
                               f"{topic}/h"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match=str(holder.pid)):
            Client(client_id="second", brokers=[mosquitto.url], store=store)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait(10)
        for f in (holder.stdin, holder.stdout):
            if f is not None:
                f.close()
    mosquitto.start()
    with Client(client_id="holder", brokers=[mosquitto.url], store=store, backoff=FAST) as c:
        with pytest.raises(StoreLocked, match=str(os.getpid())):
            Client(client_id="again", brokers=[mosquitto.url], store=store)
        stats = drained(c)
        assert stats["acked"] == 200 and stats["dropped"] == {}
    print("chaos[9] second_opener=StoreLocked after_kill=opened delivered=200")
