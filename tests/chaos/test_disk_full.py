"""Matrix item 5: the disk is full. A real size-limited filesystem (a 16 MB tmpfs, when
this process may mount one) and SQLite's page-count limit as a stand-in that runs
everywhere."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.common import FAST, Ledger, drained, subscriber
from fieldmq import Client, StoreFull
from fieldmq.store.queue import DurableQueue
from fieldmq.store.sqlite import SQLiteBackend
from fieldmq.testing import MosquittoBroker
from helpers import wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted for this test (skipped where mounting is not allowed)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); "
                    "the page-limit test covers the policy")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_filesystem_raises_storefull_and_recovers(
    small_disk: Path, mosquitto: MosquittoBroker, topic: str
) -> None:
    """ENOSPC: publish() raises StoreFull, nothing stored is damaged; accepted again with space."""
    # Space comes back in two steps: a little (new messages are accepted again, but the
    # backlog cannot be written, so reopening the store raises StoreFull: recovery copies
    # the journal into SQLite), then enough (the store opens and everything is delivered).
    mosquitto.stop()  # messages must wait in the store
    big, small = small_disk / "filler-big", small_disk / "filler-small"
    big.write_bytes(b"\0" * 13 * 1024 * 1024)
    small.write_bytes(b"\0" * 512 * 1024)
    store = small_disk / "full.db"
    payloads: dict[str, bytes] = {}
    with Client(client_id="df-pub", brokers=[mosquitto.url], store=store, backoff=FAST) as pub:
        with pytest.raises(StoreFull, match="full"):
            for i in range(5000):
                data = os.urandom(2000) + str(i).encode()
                payloads[pub.publish(f"{topic}/m", data).message_id] = data
        stats = pub.stats()
        assert stats["dropped"].get("rejected", 0) >= 1 and stats["store_error"], stats
        assert stats["queued"] + stats["inflight"] == len(payloads)
        small.unlink()  # a little space is back

        def accepts() -> bool:
            try:
                payloads[pub.publish(f"{topic}/m", b"after").message_id] = b"after"
            except StoreFull:
                return False
            return True

        assert wait_until(accepts, 10, 0.05)
        for i in range(20):
            payloads[pub.publish(f"{topic}/m", f"later{i}".encode()).message_id] = (
                f"later{i}".encode()
            )
        assert pub.flush(10)
    with pytest.raises(StoreFull):
        Client(client_id="df-pub", brokers=[mosquitto.url], store=store)
    big.unlink()  # enough space is back
    mosquitto.start()
    ledger = Ledger()
    sub = subscriber(mosquitto.url, f"{topic}/#", "df-sub", ledger)
    try:
        with Client(client_id="df-pub", brokers=[mosquitto.url], store=store,
                    backoff=FAST) as pub:
            s = pub.stats()
            assert s["queued"] + s["inflight"] + s["acked"] == len(payloads), s
            stats = drained(pub)
            assert stats["dropped"] == {} and stats["store_error"] is None
        assert ledger.wait_all(set(payloads), 30) == set()
        assert all(ledger.payloads[k] == v for k, v in payloads.items())
        print(f"chaos[5-tmpfs] accepted={len(payloads)} lost=0 corrupted=0")
    finally:
        sub.close()


def test_page_limit_stand_in_rejects_once_memory_cap_is_reached(tmp_path: Path) -> None:
    """SQLite cannot grow: the backlog stays in memory up to its cap, then StoreFull; recovers."""
    backend = SQLiteBackend(tmp_path / "pages.db", max_pages=40)
    q = DurableQueue(backend, spill_after=0.0, hot_max_bytes=64 * 1024).open()
    kept: list[int] = []
    try:
        with pytest.raises(StoreFull, match="disk is full"):
            for i in range(5000):
                e = q.put("t/x", b"t/x", os.urandom(500), 1, False, 5, None, None, None)
                kept.append(e.seq)
                if i % 50 == 0:  # the writer spills in the background; let it see the limit
                    wait_until(lambda: q.stats()["store_error"] is not None, 0.2)
        assert q.stats()["dropped"]["rejected"] >= 1
        db = backend._require_db()
        db.execute("PRAGMA max_page_count=100000")  # space is back
        assert wait_until(lambda: q.stats()["store_error"] is None, 10)
        e = q.put("t/x", b"t/x", b"again", 1, False, 5, None, None, None)
        kept.append(e.seq)
    finally:
        q.close()
    q = DurableQueue(SQLiteBackend(tmp_path / "pages.db")).open()
    try:
        assert q.pending_count() == len(kept)
        assert [e.seq for e in q.take(len(kept))] == kept
    finally:
        q.close()
