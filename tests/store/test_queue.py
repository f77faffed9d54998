"""DurableQueue: one contract suite over MemoryBackend and SQLiteBackend, then the
SQLite-only guarantees (crash recovery, backlog, rotation, clock credit)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from fieldmq.client.handle import PublishHandle
from fieldmq.errors import StoreFull
from fieldmq.store.queue import DurableQueue

from .conftest import Queues, drain, payloads, put, run_and_kill, take_all, wait_for

YEAR = 365 * 86400.0

# -- ordering --------------------------------------------------------------------------------


def test_priority_first_then_fifo(queues: Queues) -> None:
    """take() gives priority 10 first and FIFO within a priority."""
    q = queues.open()
    for i, prio in enumerate([1, 5, 10, 5, 1, 10, 7]):
        put(q, f"{prio}-{i}".encode(), priority=prio)
    assert payloads(take_all(q)) == [b"10-2", b"10-5", b"7-6", b"5-1", b"5-3", b"1-0", b"1-4"]


def test_take_respects_n_and_empty_queue(queues: Queues) -> None:
    """take(n) returns at most n messages and an empty list when nothing is sendable."""
    q = queues.open()
    assert q.take(10) == []
    for i in range(5):
        put(q, b"%d" % i)
    assert payloads(q.take(2)) == [b"0", b"1"]
    assert payloads(q.take(0)) == []
    assert payloads(q.take(10)) == [b"2", b"3", b"4"]
    assert q.take(10) == []
    assert q.sendable() == 0 and q.pending_count() == 5


def test_requeue_all_sends_inflight_first(queues: Queues) -> None:
    """After requeue_all the in-flight messages come back first, ahead of higher priorities."""
    q = queues.open()
    for i in range(4):
        put(q, b"low%d" % i, priority=1)
    first = q.take(2)
    assert payloads(first) == [b"low0", b"low1"]
    put(q, b"high", priority=10)
    assert q.requeue_all() == 2
    assert q.requeue_all() == 0
    assert payloads(take_all(q)) == [b"low0", b"low1", b"high", b"low2", b"low3"]


def test_requeue_keeps_order_within_priority(queues: Queues) -> None:
    """requeue_all keeps the original order of each priority's in-flight messages."""
    q = queues.open()
    for i in range(6):
        put(q, b"a%d" % i, priority=3)
    got = q.take(6)
    q.acked([got[2]])
    q.requeue_all()
    assert payloads(take_all(q)) == [b"a0", b"a1", b"a3", b"a4", b"a5"]


def test_requeue_partial_goes_first_in_given_order(queues: Queues) -> None:
    """requeue(entries) puts exactly those messages first; others stay in flight."""
    q = queues.open()
    for i in range(5):
        put(q, b"%d" % i)
    got = q.take(3)
    q.requeue([got[1], got[2]])
    assert payloads(q.take(10)) == [b"1", b"2", b"3", b"4"]
    q.requeue([got[1]])
    q.requeue([got[1]])  # a second requeue of the same entry is ignored
    assert payloads(q.take(10)) == [b"1"]


def test_acked_removes_for_good(queues: Queues) -> None:
    """Acknowledged messages leave the queue, their handles say 'acked', counters move."""
    q = queues.open()
    hs = [put(q, b"%d" % i) for i in range(3)]
    got = q.take(3)
    q.acked(got[:2])
    assert [h.status for h in hs] == ["acked", "acked", "queued"]
    assert q.pending_count() == 1
    q.requeue_all()
    assert payloads(take_all(q)) == [b"2"]
    s = q.stats()
    assert (s["acked"], s["published"], s["inflight"], s["queued"]) == (2, 3, 1, 0)


def test_acked_twice_or_not_in_flight_is_ignored(queues: Queues) -> None:
    """Acking an entry twice, or one not in flight, changes nothing."""
    q = queues.open()
    put(q, b"a")
    put(q, b"b")
    (a,) = q.take(1)
    q.acked([a])
    q.acked([a])
    assert q.stats()["acked"] == 1
    (b,) = q.take(1)
    q.requeue_all()
    q.acked([b])  # in the retry list, not in flight: will be resent
    assert q.pending_count() == 1
    assert payloads(take_all(q)) == [b"b"]


# -- limits and eviction -------------------------------------------------------------------


def test_count_limit_evicts_lowest_priority_oldest(queues: Queues) -> None:
    """At max_messages the oldest message of the lowest priority is evicted."""
    q = queues.open(max_messages=4)
    a = put(q, b"a", priority=1)
    b = put(q, b"b", priority=1)
    put(q, b"c", priority=5)
    put(q, b"d", priority=9)
    put(q, b"e", priority=5)
    assert (a.status, a.reason) == ("dropped", "evicted")
    assert b.status == "queued"
    with pytest.raises(Exception, match="evicted"):
        a.wait(timeout=0)
    assert q.stats()["dropped"] == {"evicted": 1}
    assert payloads(take_all(q)) == [b"d", b"c", b"e", b"b"]


def test_never_evict_higher_priority_for_lower(queues: Queues) -> None:
    """A full store of higher priorities rejects a lower-priority message with StoreFull."""
    q = queues.open(max_messages=2)
    put(q, b"a", priority=6)
    put(q, b"b", priority=9)
    with pytest.raises(StoreFull):
        put(q, b"low", priority=5)
    assert q.stats()["dropped"] == {"rejected": 1}
    assert q.stats()["published"] == 2
    assert payloads(take_all(q)) == [b"b", b"a"]


def test_equal_priority_evicts_oldest(queues: Queues) -> None:
    """With equal priorities the newest message wins and the oldest is evicted."""
    q = queues.open(max_messages=3)
    hs = [put(q, b"%d" % i, priority=4) for i in range(6)]
    assert [h.status for h in hs] == ["dropped"] * 3 + ["queued"] * 3
    assert all(h.reason == "evicted" for h in hs[:3])
    assert q.stats()["dropped"] == {"evicted": 3}
    assert payloads(take_all(q)) == [b"3", b"4", b"5"]


def test_byte_limit_evicts_until_it_fits(queues: Queues) -> None:
    """At max_bytes, lowest-priority oldest messages are evicted until the new one fits."""
    q = queues.open(max_bytes=100)  # size = len(payload) + len(topic); topic "t"
    put(q, b"a" * 29, priority=2)  # 30
    put(q, b"b" * 29, priority=1)  # 30
    put(q, b"c" * 29, priority=3)  # 30
    put(q, b"d" * 39, priority=3)  # 40: needs 30 freed -> evicts "b" (priority 1)
    assert q.stats()["queued_bytes"] == 100
    put(q, b"e" * 59, priority=3)  # 60: evicts "a" (prio 2), then "c" (oldest prio 3)
    assert payloads(take_all(q)) == [b"d" * 39, b"e" * 59]
    assert q.stats()["dropped"] == {"evicted": 3}


def test_message_over_max_bytes_rejected_without_eviction(queues: Queues) -> None:
    """A message larger than max_bytes is rejected and evicts nothing."""
    q = queues.open(max_bytes=50)
    h = put(q, b"x", priority=1)
    with pytest.raises(StoreFull, match="exceed"):
        put(q, b"y" * 100, priority=10)
    assert h.status == "queued"
    assert q.stats()["dropped"] == {"rejected": 1}


def test_in_flight_messages_are_not_evicted(queues: Queues) -> None:
    """Messages in flight count towards the limit but are never evicted."""
    q = queues.open(max_messages=2)
    put(q, b"a", priority=1)
    put(q, b"b", priority=1)
    q.take(2)
    with pytest.raises(StoreFull):
        put(q, b"c", priority=10)


def test_rejected_put_evicts_nothing(queues: Queues) -> None:
    """A put that ends in StoreFull leaves the queue exactly as it was (no eviction for nothing)."""
    q = queues.open(max_bytes=100)
    low = put(q, b"l" * 9, priority=1)  # 10 bytes
    put(q, b"h" * 79, priority=9)  # 80 bytes
    with pytest.raises(StoreFull):
        put(q, b"m" * 49, priority=5)  # 50 bytes: evicting "low" alone cannot make room
    assert (low.status, low.reason) == ("queued", None)
    assert q.stats()["dropped"] == {"rejected": 1}
    assert payloads(take_all(q)) == [b"h" * 79, b"l" * 9]


def test_put_many_is_all_or_nothing_over_the_limit(queues: Queues) -> None:
    """A batch larger than the limits is rejected as a whole and stores nothing."""
    q = queues.open(max_messages=3)
    items = [("t", b"t", b"%d" % i, 1, False, 5, None, None) for i in range(5)]
    with pytest.raises(StoreFull):
        q.put_many(items, None)
    assert q.pending_count() == 0
    assert q.stats()["published"] == 0


def test_put_many_rejected_evicts_nothing(queues: Queues) -> None:
    """A rejected batch evicts nothing: all or nothing means the store is unchanged."""
    q = queues.open(max_messages=3)
    low = put(q, b"low", priority=1)
    put(q, b"high", priority=9)
    items = [("t", b"t", b"%d" % i, 1, False, 5, None, None) for i in range(3)]
    with pytest.raises(StoreFull):
        q.put_many(items, None)
    assert low.status == "queued"
    assert q.pending_count() == 2
    assert payloads(take_all(q)) == [b"high", b"low"]


def test_put_many_orders_and_evicts(queues: Queues) -> None:
    """put_many assigns consecutive seqs in order and evicts like put when room is needed."""
    q = queues.open(max_messages=4)
    old = put(q, b"old", priority=1)
    items = [("t", b"t", b"%d" % i, 1, False, p, None, None) for i, p in enumerate([5, 9, 5, 1])]
    out = q.put_many(items, None)
    assert [e.seq for e in out] == list(range(out[0].seq, out[0].seq + 4))
    assert (old.status, old.reason) == ("dropped", "evicted")
    assert q.put_many([], None) == []
    assert payloads(take_all(q)) == [b"1", b"0", b"2", b"3"]


# -- TTL and time ------------------------------------------------------------------------------


def test_wall_clock_jumps_never_expire(queues: Queues) -> None:
    """A wall-clock step of a year forward or back expires nothing."""
    q = queues.open()
    h = put(q, b"a", ttl=60)
    queues.clock.jump_wall(YEAR)
    assert payloads(q.take(1)) == [b"a"]
    q.requeue_all()
    queues.clock.jump_wall(-2 * YEAR)
    assert payloads(q.take(1)) == [b"a"]
    assert h.status == "queued"
    assert q.stats()["dropped"] == {}
    assert q.stats()["oldest_age"] == 0.0


def test_ttl_expires_on_store_time(queues: Queues) -> None:
    """When monotonic time passes the TTL the message expires at take with reason 'expired'."""
    q = queues.open()
    short = put(q, b"short", ttl=10)
    forever = put(q, b"forever")
    put(q, b"long", ttl=100)
    queues.clock.advance(9.9)
    assert q.stats()["oldest_age"] == pytest.approx(9.9)
    queues.clock.advance(0.1)  # now == expires: expired
    assert payloads(take_all(q)) == [b"forever", b"long"]
    assert (short.status, short.reason) == ("expired", "expired")
    assert forever.status == "queued"
    with pytest.raises(Exception, match="expired"):
        short.wait(timeout=0)
    assert q.stats()["dropped"] == {"expired": 1}
    assert q.pending_count() == 2


def test_ttl_zero_expires_at_once(queues: Queues) -> None:
    """A TTL of 0 s expires at the first take."""
    q = queues.open()
    h = put(q, b"x", ttl=0)
    assert q.take(1) == []
    assert h.status == "expired"


def test_retry_list_expires_too(queues: Queues) -> None:
    """A requeued message whose TTL elapsed expires instead of being resent."""
    q = queues.open()
    h = put(q, b"x", ttl=5)
    q.take(1)
    q.requeue_all()
    queues.clock.advance(6)
    assert q.take(1) == []
    assert h.status == "expired"
    assert q.pending_count() == 0


# -- durability, stats, lifecycle ----------------------------------------------------------------


STATS_KEYS = {"queued", "inflight", "queued_bytes", "published", "acked", "dropped",
              "oldest_age", "durable_lag", "fsync_lag_ms", "fsync_helper", "spilled", "recovered",
              "store_bytes", "store_error"}


def test_stats_keys_and_values(queues: Queues) -> None:
    """stats() has the documented keys with consistent values."""
    q = queues.open()
    s = q.stats()
    assert set(s) == STATS_KEYS
    assert (s["queued"], s["inflight"], s["queued_bytes"], s["oldest_age"]) == (0, 0, 0, None)
    put(q, b"12345", topic="ab")
    put(q, b"x")
    q.take(1)
    s = q.stats()
    assert (s["queued"], s["inflight"], s["queued_bytes"], s["published"]) == (1, 1, 9, 2)
    assert s["store_error"] is None


def test_wait_durable_and_flush(queues: Queues) -> None:
    """flush() and wait_durable() return True once everything is synced; the lag drops to 0."""
    q = queues.open()
    assert q.flush(5)
    hs = [put(q, b"%d" % i) for i in range(20)]
    assert hs[-1].wait_durable(5)
    assert q.flush(5)
    assert all(h.durable for h in hs)
    assert q.stats()["durable_lag"] == 0


def test_sync_durability_put_returns_durable(queues: Queues) -> None:
    """With durability='sync' put() returns only once the message is synced."""
    q = queues.open(durability="sync")
    h = put(q, b"x")
    assert h.durable
    assert q.durable_seq >= h.seq


def test_reject_moves_to_dead_letters(queues: Queues) -> None:
    """reject() drops the message with its reason, counted, and keeps it as a dead letter."""
    q = queues.open()
    h = put(q, b"bad", topic="x/y")
    (e,) = q.take(1)
    q.reject(e, "broker:0x97")
    assert (h.status, h.reason) == ("dropped", "broker:0x97")
    assert q.stats()["dropped"] == {"broker:0x97": 1}
    assert q.pending_count() == 0
    # listed at once, although the writer thread stores it in the background
    dead = q.dead_letters()
    assert len(dead) == 1
    assert dead[0]["payload"] == b"bad" and dead[0]["reason"] == "broker:0x97"


def test_closed_queue_refuses_use(queues: Queues) -> None:
    """A closed queue refuses put and cannot be opened again."""
    q = queues.open()
    q.close()
    q.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        put(q)
    with pytest.raises(RuntimeError, match="closed"):
        q.open()


def test_bad_settings_rejected(queues: Queues) -> None:
    """Invalid durability or fsync_interval raise ValueError at construction."""
    from fieldmq.store.memory import MemoryBackend

    with pytest.raises(ValueError, match="durability"):
        DurableQueue(MemoryBackend(), durability="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fsync_interval"):
        DurableQueue(MemoryBackend(), fsync_interval=0)


def test_concurrent_producers_consumer(queues: Queues) -> None:
    """Four producer threads and one consumer: every message delivered once, FIFO per producer."""
    q = queues.open()
    n, producers = 300, 4
    got: list[bytes] = []
    done = threading.Event()

    def produce(k: int) -> None:
        for i in range(n):
            put(q, b"%d-%d" % (k, i))

    def consume() -> None:
        while len(got) < n * producers:
            batch = q.take(50)
            q.acked(batch)
            got.extend(payloads(batch))
        done.set()

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    consumer = threading.Thread(target=consume)
    consumer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert done.wait(30)
    consumer.join(5)
    assert len(got) == len(set(got)) == n * producers
    for k in range(producers):
        mine = [int(p.split(b"-")[1]) for p in got if p.startswith(b"%d-" % k)]
        assert mine == list(range(n))
    assert q.pending_count() == 0


# -- backlog (spill) -------------------------------------------------------------------------


def _spill_all(q: DurableQueue, expected: int) -> None:
    assert q.flush(5)
    wait_for(lambda: q.stats()["spilled"] >= expected, what=f"{expected} spilled")


def test_spilled_backlog_keeps_order(queues: Queues) -> None:
    """Spilled (cold) messages come before young (hot) ones of their priority, in order."""
    q = queues.open(spill_after=1.0)
    for i in range(6):
        put(q, b"old%d" % i, priority=3 if i % 2 else 7)
    queues.clock.advance(2)
    _spill_all(q, 6)
    for i in range(4):
        put(q, b"new%d" % i, priority=3 if i % 2 else 7)
    assert payloads(take_all(q)) == [b"old0", b"old2", b"old4", b"new0", b"new2",
                                     b"old1", b"old3", b"old5", b"new1", b"new3"]


def test_spilled_message_can_be_evicted_and_expire(queues: Queues) -> None:
    """A spilled message is still evicted / expired with its handle notified."""
    q = queues.open(spill_after=0.0, max_messages=3)
    evictee = put(q, b"a", priority=1)
    expiring = put(q, b"b", priority=2, ttl=5)
    _spill_all(q, 2)
    put(q, b"c", priority=5)
    put(q, b"d", priority=5)  # full: evicts the spilled "a"
    assert (evictee.status, evictee.reason) == ("dropped", "evicted")
    queues.clock.advance(6)
    assert payloads(take_all(q)) == [b"c", b"d"]
    assert expiring.status == "expired"
    assert q.stats()["dropped"] == {"evicted": 1, "expired": 1}


def test_hot_max_bytes_forces_spill(queues: Queues) -> None:
    """Exceeding hot_max_bytes spills young messages at once and order is kept."""
    q = queues.open(spill_after=1e9, hot_max_bytes=100)
    for i in range(20):
        put(q, b"%02d" % i + b"." * 20)
    _spill_all(q, 5)
    assert [p[:2] for p in drain(q)] == [b"%02d" % i for i in range(20)]


# == SQLite only ==============================================================================


def test_crash_recovery_returns_unacked_in_order(sqlite_queues: Queues) -> None:
    """After SIGKILL every accepted, unacked message is back in order; acked ones never."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path)).open()
        for i in range(30):
            put(q, b"m%02d" % i, priority=(1, 5, 10)[i % 3])
        got = q.take(10)          # 10 in flight
        q.acked(got[::2])         # 5 acked
        q.requeue(got[1:3])       # 2 back in the retry list
        ready()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open()
    acked = {b"m%02d" % i for i in (2, 8, 14, 20, 26)}  # every other of the ten priority-10
    expected = [b"m%02d" % i for p in (10, 5, 1) for i in range(30) if (1, 5, 10)[i % 3] == p]
    expected = [m for m in expected if m not in acked]
    assert q.recovered == 25
    assert q.stats()["recovered"] == 25
    assert q.pending_count() == 25
    assert drain(q) == expected


def test_crash_with_nothing_synced_loses_nothing(sqlite_queues: Queues) -> None:
    """Messages put just before SIGKILL (no fsync, fsync_interval 10 s) all survive."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path), fsync_interval=10).open()
        for i in range(200):
            put(q, b"%03d" % i)
        die()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open()
    assert drain(q) == [b"%03d" % i for i in range(200)]


def test_acked_spilled_message_never_returns_after_crash(sqlite_queues: Queues) -> None:
    """A message spilled to the backlog and then acked does not come back after SIGKILL."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path), spill_after=0.0, fsync_interval=10).open()
        for i in range(5):
            put(q, b"s%d" % i)
        q.flush(10)
        wait_for(lambda: q.stats()["spilled"] >= 5)
        got = q.take(3)
        q.acked(got)
        die()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open()
    assert drain(q) == [b"s3", b"s4"]


def test_evicted_spilled_message_never_returns_after_crash(sqlite_queues: Queues) -> None:
    """A spilled message evicted for room does not come back after SIGKILL (limit kept)."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path), spill_after=0.0, fsync_interval=10,
                         max_messages=3).open()
        for i in range(3):
            put(q, b"old%d" % i, priority=1)
        q.flush(10)
        wait_for(lambda: q.stats()["spilled"] >= 3)
        put(q, b"new", priority=5)
        die()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open(max_messages=3)
    assert q.pending_count() == 3
    assert drain(q) == [b"new", b"old1", b"old2"]


def test_spilled_backlog_survives_reopen(sqlite_queues: Queues) -> None:
    """A spilled backlog plus young messages come back in order after a clean reopen."""
    q = sqlite_queues.open(spill_after=1.0)
    for i in range(10):
        put(q, b"old%d" % i, priority=(i % 2) * 5 + 1)
    sqlite_queues.clock.advance(2)
    _spill_all(q, 10)
    for i in range(4):
        put(q, b"new%d" % i, priority=(i % 2) * 5 + 1)
    (first,) = q.take(1)
    q.acked([first])
    q.close()
    q2 = sqlite_queues.open()
    assert drain(q2) == [b"old3", b"old5", b"old7", b"old9", b"new1", b"new3",
                         b"old0", b"old2", b"old4", b"old6", b"old8", b"new0", b"new2"]
    assert first.payload == b"old1"


def test_rotation_loses_nothing(sqlite_queues: Queues) -> None:
    """With a tiny rotate_bytes the journal rotates often and nothing is lost or duplicated."""
    q = sqlite_queues.open(rotate_bytes=2048, spill_after=1e9)
    acked: list[bytes] = []
    for i in range(300):
        put(q, b"%03d" % i + b"-" * 60, priority=1 + i % 10)
        if i % 7 == 0:
            (e,) = q.take(1)
            q.acked([e])
            acked.append(e.payload)
        if i % 50 == 0:
            assert q.flush(5)
    # rotation spills the young messages into the backlog: that is visible in stats
    wait_for(lambda: q.stats()["spilled"] > 0, what="a rotation")
    inflight = q.take(5)
    expected_left = 300 - len(acked)
    q.close()
    q2 = sqlite_queues.open()
    left = drain(q2)
    assert len(left) == len(set(left)) == expected_left
    assert not set(left) & set(acked)
    assert set(payloads(inflight)) <= set(left)


def test_rotation_then_crash_loses_nothing(sqlite_queues: Queues) -> None:
    """Rotations followed by SIGKILL: every unacked message survives, acked ones do not."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path), rotate_bytes=1024, spill_after=1e9).open()
        for i in range(200):
            put(q, b"%03d" % i + b"." * 40)
            if i % 20 == 19:
                q.flush(10)
        wait_for(lambda: q.stats()["spilled"] > 0)
        got = q.take(50)
        q.acked(got[:25])
        for i in range(200, 220):
            put(q, b"%03d" % i + b"." * 40)
        ready()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open()
    left = [p[:3] for p in drain(q)]
    assert left == [b"%03d" % i for i in range(25, 220)]


def test_seq_never_reused_after_reopen_or_crash(sqlite_queues: Queues) -> None:
    """Sequence numbers (message ids) keep growing across clean reopens and crashes."""
    q = sqlite_queues.open()
    last = max(put(q, b"a").seq for _ in range(5))
    drain(q)
    q.close()
    q = sqlite_queues.open()
    h = put(q, b"b")
    assert h.seq > last
    drain(q)
    q.close()
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path)).open()
        for i in range(5):
            put(q, b"c")
        q.acked(q.take(5))
        ready()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open()
    assert q.pending_count() == 0
    assert put(q, b"d").seq >= h.seq + 6


def test_non_ascii_topic_bytes_accounting_survives_reopen(sqlite_queues: Queues) -> None:
    """queued_bytes returns to 0 after reopen and ack of messages with non-ASCII topics."""
    q = sqlite_queues.open()
    for _ in range(10):
        put(q, b"payload", topic="température/é")
    before = q.stats()["queued_bytes"]
    q.close()
    q2 = sqlite_queues.open()
    assert q2.stats()["queued_bytes"] == before
    drain(q2)
    assert q2.stats()["queued_bytes"] == 0


def test_ttl_survives_reopen(sqlite_queues: Queues) -> None:
    """A message's TTL keeps counting in store time across a close and reopen."""
    q = sqlite_queues.open()
    h1 = put(q, b"x", ttl=60)
    sqlite_queues.clock.advance(30)
    q.close()
    assert h1.status == "queued"
    q2 = sqlite_queues.open()
    assert q2.stats()["oldest_age"] == pytest.approx(30)
    sqlite_queues.clock.advance(29)
    assert payloads(q2.take(1)) == [b"x"]
    q2.requeue_all()
    sqlite_queues.clock.advance(2)
    assert q2.take(1) == []
    assert q2.stats()["dropped"] == {"expired": 1}


def test_closed_time_credited_by_wall_clock(sqlite_queues: Queues) -> None:
    """Closed for 100 s by the wall clock: message ages advance by 100 s."""
    q = sqlite_queues.open()
    put(q, b"x", ttl=150)
    sqlite_queues.clock.advance(1)
    q.close()
    sqlite_queues.clock.advance(100)
    q2 = sqlite_queues.open()
    assert q2.stats()["oldest_age"] == pytest.approx(101)
    sqlite_queues.clock.advance(49)
    assert q2.take(1) == []
    assert q2.stats()["dropped"] == {"expired": 1}


@pytest.mark.parametrize("jump", [YEAR, -YEAR, -1.0])
def test_implausible_wall_step_while_closed_not_credited(
    sqlite_queues: Queues, jump: float
) -> None:
    """A wall-clock step of a year (or backwards) while closed is not counted as elapsed."""
    q = sqlite_queues.open()
    put(q, b"x", ttl=60)
    sqlite_queues.clock.advance(10)
    q.close()
    sqlite_queues.clock.jump_wall(jump)
    q2 = sqlite_queues.open()
    assert q2.stats()["oldest_age"] == pytest.approx(10)
    assert payloads(q2.take(1)) == [b"x"]


def test_closed_time_credited_when_closed_at_store_time_zero(sqlite_queues: Queues) -> None:
    """A store closed right after it was created still gets the closed time credited."""
    q = sqlite_queues.open()
    put(q, b"x")
    q.close()
    sqlite_queues.clock.advance(100)
    q2 = sqlite_queues.open()
    assert q2.stats()["oldest_age"] == pytest.approx(100)


def test_clock_record_does_not_inflate_credit(sqlite_queues: Queues) -> None:
    """A periodic clock record written before close does not add open time to the credit."""
    q = sqlite_queues.open()
    put(q, b"x", ttl=300)
    sqlite_queues.clock.advance(6)  # > 5 s: the writer records the clock in the journal
    put(q, b"y")
    assert q.flush(5)
    put(q, b"z")
    assert q.flush(5)  # a full writer cycle has run since the advance
    sqlite_queues.clock.advance(94)
    q.close()
    q2 = sqlite_queues.open()  # reopened at once: nothing to credit
    assert q2.stats()["oldest_age"] == pytest.approx(100)
    assert payloads(q2.take(1)) == [b"x"]


def test_crash_credit_uses_last_clock_record(sqlite_queues: Queues) -> None:
    """After SIGKILL, store time resumes from the journal and credits the wall gap since."""
    run_and_kill(
        """
        q = DurableQueue(SQLiteBackend(path)).open()
        put(q, b"x", ttl=3600)
        ready()
        """,
        sqlite_queues.path,
    )
    q = sqlite_queues.open(clock=None)  # the real clock: the child used it too
    age = q.stats()["oldest_age"]
    assert age is not None and 0 <= age < 30


def test_newer_schema_refused_and_lock_released(sqlite_queues: Queues) -> None:
    """A store from a newer schema is refused clearly, and the failed open releases the lock."""
    from fieldmq.errors import StoreError

    q = sqlite_queues.open()
    q.close()
    with sqlite3.connect(sqlite_queues.path) as db:
        db.execute("UPDATE meta SET value=99 WHERE key='version'")
    db.close()
    for _ in range(2):
        with pytest.raises(StoreError, match="newer fieldmq"):
            sqlite_queues.open()


def test_store_files_in_tmp_path(sqlite_queues: Queues, tmp_path: Path) -> None:
    """The store lives next to its path: the db file and its lock file, nothing elsewhere."""
    q = sqlite_queues.open()
    put(q, b"x")
    q.close()
    names = {p.name for p in tmp_path.iterdir()}
    assert "store.db" in names and "store.db.lock" in names
    assert all(n.startswith("store.db") for n in names)


def test_stats_store_bytes_grows(sqlite_queues: Queues) -> None:
    """store_bytes reports the files' size and grows with the data."""
    q = sqlite_queues.open()
    before = q.stats()["store_bytes"]
    for _ in range(50):
        put(q, b"x" * 1000)
    assert q.stats()["store_bytes"] >= before + 50_000


def test_publish_handle_constructed_directly() -> None:
    """A PublishHandle with no queue is durable and reports its status."""
    h = PublishHandle(None, "id")
    assert h.status == "queued" and not h.done
    assert h.wait_durable(0)


def test_online_queue_does_not_spill_for_age(sqlite_queues: Queues) -> None:
    """While a broker connection is up, waiting messages stay in memory up to
    hot_max_bytes (they go out soon: writing them to SQLite would cost more than sending
    them); when it drops, those that waited longer than spill_after, or do not fit in a
    quarter of hot_max_bytes, move to the backlog; order is kept either way."""
    q = sqlite_queues.open(spill_after=1.0, hot_max_bytes=20)  # 3 messages: 9 bytes
    q.set_online(True)
    for i in range(3):
        put(q, b"m%d" % i)
    before = q.stats()["store_bytes"]
    sqlite_queues.clock.advance(6)  # past spill_after, and past the writer's clock record
    assert q.flush(5)
    # the clock record is appended in the same writer pass, after the spill decision
    wait_for(lambda: q.stats()["store_bytes"] > before, what="a writer pass")
    assert q.stats()["spilled"] == 0
    q.set_online(False)
    wait_for(lambda: q.stats()["spilled"] >= 3, what="spill once offline")
    put(q, b"m3")
    assert drain(q) == [b"m0", b"m1", b"m2", b"m3"]
    # offline, memory holds a quarter of hot_max_bytes: young messages over it move at once
    for i in range(4, 7):
        put(q, b"m%d" % i)
    assert q.flush(5)
    wait_for(lambda: q.stats()["spilled"] >= 4, what="spill by size offline")
    assert drain(q) == [b"m4", b"m5", b"m6"]
