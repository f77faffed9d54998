"""Rollup arithmetic and its durable state (no broker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fieldmq import Message
from fieldmq.bridge.config import BridgeMapping, Rollup
from fieldmq.bridge.rollup import Aggregate, NonNumeric, extract_value, interval_start
from fieldmq.bridge.rollups import RollupEngine, RollupStore


@pytest.mark.parametrize(
    ("payload", "field", "value"),
    [
        (b"21.5", "value", 21.5), (b"-3", "value", -3.0), (b"1e3", None, 1000.0),
        (b'{"value": 7}', "value", 7.0), (b'{"s": {"t": 2.5}}', "s.t", 2.5),
        (b' 4 ', "value", 4.0),
    ],
)
def test_extract_value_accepts_numbers_and_object_fields(
    payload: bytes, field: str | None, value: float
) -> None:
    """A JSON number, or the named (dotted) field of a JSON object, is the value."""
    assert extract_value(payload, field) == value


@pytest.mark.parametrize(
    ("payload", "field", "why"),
    [
        (b"true", "value", "bool"), (b'"21.5"', "value", "str"), (b"null", "value", "NoneType"),
        (b"[1]", "value", "list"), (b"NaN", "value", "finite"), (b"Infinity", "value", "finite"),
        (b"1" + b"0" * 400, "value", "finite"), (b"\xff\xfe", "value", "not JSON"),
        (b"abc", "value", "not JSON"), (b'{"v": 1}', "value", "no field"),
        (b'{"value": "1"}', "value", "not a finite number"),
        (b'{"value": true}', "value", "not a finite number"),
        (b'{"value": 1}', None, "names no field"), (b'{"s": 1}', "s.t", "no field"),
    ],
)
def test_extract_value_rejects_everything_else(payload: bytes, field: str | None, why: str) -> None:
    """Booleans, strings, null, arrays, NaN, overflow, non-JSON and missing fields are refused."""
    with pytest.raises(NonNumeric, match=why):
        extract_value(payload, field)


def test_aggregate_summary_values() -> None:
    """count, min, max, mean and last follow the values added, non-numeric counted apart."""
    agg = Aggregate(start=60.0, interval=60.0)
    for v in (3.0, -1.0, 10.0, 4.0):
        agg.add(v)
    agg.add_non_numeric()
    s = agg.summary("t")
    assert s == {"topic": "t", "start": 60.0, "end": 120.0, "count": 4, "min": -1.0,
                 "max": 10.0, "mean": 4.0, "last": 4.0, "non_numeric": 1}
    assert json.loads(agg.payload("t")) == s
    assert not agg.due(119.999) and agg.due(120.0)


def test_empty_aggregate_has_null_statistics() -> None:
    """With only non-numeric messages the summary says so with nulls."""
    agg = Aggregate(0.0, 10.0)
    assert agg.empty
    agg.add_non_numeric()
    s = agg.summary("t")
    assert (s["count"], s["min"], s["mean"], s["last"], s["non_numeric"]) == (0, None, None,
                                                                              None, 1)


def test_interval_start_is_epoch_aligned() -> None:
    """Intervals start at multiples of their length."""
    assert interval_start(125.0, 60) == 120.0
    assert interval_start(120.0, 60) == 120.0
    assert interval_start(0.5, 0.25) == 0.5


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Acks:
    def __init__(self) -> None:
        self.acked: list[str] = []

    def msg(self, topic: str, payload: bytes, mid: str | None = None) -> Message:
        key = mid or f"{topic}:{payload!r}:{len(self.acked)}"
        return Message(topic, payload, 1, message_id=mid, _acker=lambda: self.acked.append(key))


def _engine(store: RollupStore, clock: Clock, out: list[tuple[str, dict[str, Any], str]],
            field: str | None = "value") -> tuple[RollupEngine, BridgeMapping]:
    m = BridgeMapping(name="r", direction="forward", source="s/+/v", target="up/+/v",
                      rollup=Rollup(10, field))

    def publish(mapping: BridgeMapping, topic: str, payload: bytes, mid: str) -> None:
        out.append((mapping.target_topic(topic), json.loads(payload), mid))

    return RollupEngine(store, [m], publish, bridge_id="b", clock=clock), m


def test_engine_acks_only_after_commit_and_publishes_at_interval_end() -> None:
    """Messages are acked at flush; each topic's summary is published once its interval ends."""
    clock, out, acks = Clock(100.0), [], Acks()
    eng, m = _engine(RollupStore(None), clock, out)
    for v in (1, 2, 6):
        eng.add(m, acks.msg("s/a/v", json.dumps({"value": v}).encode()))
    eng.add(m, acks.msg("s/b/v", b"5"))
    eng.add(m, acks.msg("s/b/v", b'"oops"'))
    assert acks.acked == []
    assert eng.flush() == 5 and len(acks.acked) == 5
    clock.now = 109.9
    assert eng.close_due() == 0
    clock.now = 110.0
    assert eng.close_due() == 2
    got = {topic: (s["count"], s["min"], s["max"], s["mean"], s["last"], s["non_numeric"])
           for topic, s, _ in out}
    assert got == {"up/a/v": (3, 1, 6, 3, 6, 0), "up/b/v": (1, 5, 5, 5, 5, 1)}
    assert all(s["start"] == 100.0 and s["end"] == 110.0 for _, s, _ in out)


def test_message_in_a_new_interval_closes_the_old_one_first() -> None:
    """A value arriving after the interval end is summarised in the next interval."""
    clock, out, acks = Clock(100.0), [], Acks()
    eng, m = _engine(RollupStore(None), clock, out)
    eng.add(m, acks.msg("s/a/v", b"1"))
    clock.now = 111.0
    eng.add(m, acks.msg("s/a/v", b"2"))
    assert [(s["start"], s["count"], s["last"]) for _, s, _ in out] == [(100.0, 1, 1)]
    clock.now = 95.0  # the wall clock stepped back: the open interval takes the value
    eng.add(m, acks.msg("s/a/v", b"3"))
    clock.now = 120.0
    eng.close_due()
    assert [(s["start"], s["count"], s["last"]) for _, s, _ in out][1] == (110.0, 2, 3)


def test_state_survives_a_crash_and_redeliveries_are_not_counted_twice(tmp_path: Path) -> None:
    """Committed state is resumed after a restart; a redelivered id is acked, not counted."""
    path = tmp_path / "rollups.db"
    clock, out, acks = Clock(100.0), [], Acks()
    eng, m = _engine(RollupStore(path), clock, out)
    eng.add(m, acks.msg("s/a/v", b"4", "id-1"))
    eng.add(m, acks.msg("s/a/v", b"8", "id-2"))
    eng.flush()
    eng.add(m, acks.msg("s/a/v", b"100", "id-3"))  # never committed: the "crash" comes now
    del eng  # no close(): like SIGKILL
    eng2, m = _engine(RollupStore(path), clock, out)
    assert eng2.open_intervals == 1
    eng2.add(m, acks.msg("s/a/v", b"8", "id-2"))  # the broker redelivers the unacked ones...
    eng2.add(m, acks.msg("s/a/v", b"100", "id-3"))
    eng2.flush()
    assert eng2.counts["duplicates"] == 1
    clock.now = 110.0
    eng2.close_due()
    (_, s, mid), = out
    assert (s["count"], s["min"], s["max"], s["last"]) == (3, 4, 100, 100)
    assert mid == eng2.summary_id("r", "s/a/v", 100.0)


def test_summary_published_before_a_crash_is_republished_with_the_same_id(tmp_path: Path) -> None:
    """If the state row outlives the publish, the repeat carries the same fmq-id."""
    path = tmp_path / "rollups.db"
    clock, out, acks = Clock(100.0), [], Acks()
    eng, m = _engine(RollupStore(path), clock, out)
    eng.add(m, acks.msg("s/a/v", b"1"))
    eng.flush()
    eng._store.delete = lambda *a: None  # type: ignore[method-assign]  # crash before delete
    clock.now = 110.0
    eng.close_due()
    eng2, _ = _engine(RollupStore(path), clock, out)
    eng2.close_due()
    assert len(out) == 2 and out[0][2] == out[1][2] and out[0][1] == out[1][1]


def test_engine_close_commits_and_acks_pending(tmp_path: Path) -> None:
    """close() acks what is pending after committing it; open intervals stay stored."""
    clock, out, acks = Clock(100.0), [], Acks()
    eng, m = _engine(RollupStore(tmp_path / "r.db"), clock, out)
    eng.add(m, acks.msg("s/a/v", b"1"))
    eng.close()
    assert len(acks.acked) == 1 and out == []
    eng2, _ = _engine(RollupStore(tmp_path / "r.db"), clock, out)
    assert eng2.open_intervals == 1


def test_value_late_for_a_published_interval_counts_in_the_next_one() -> None:
    """After an interval's summary is out, a value timed inside it (a clock read before
    the close, or a clock step back) goes to the next interval, under a new summary id,
    never into a second summary with the first one's id (receivers would drop it)."""
    clock, out, acks = Clock(100.0), [], Acks()
    eng, m = _engine(RollupStore(None), clock, out)
    eng.add(m, acks.msg("s/a/v", b"1"))
    clock.now = 110.5
    assert eng.close_due() == 1
    clock.now = 109.0  # inside the interval just published
    eng.add(m, acks.msg("s/a/v", b"2"))
    clock.now = 121.0
    assert eng.close_due() == 1
    summaries = [(s["start"], s["count"], s["last"], mid) for _, s, mid in out]
    assert [s[:3] for s in summaries] == [(100.0, 1, 1), (110.0, 1, 2)]
    assert summaries[0][3] != summaries[1][3]


def test_every_acknowledgement_follows_the_commit_of_its_value(tmp_path: Path) -> None:
    """Issue 8 suspect, ruled out: whichever path acknowledges a message (the ticker's
    flush, a full batch of 256, a new interval closing the old one, a duplicate), its id
    is already in the committed state, read through a second SQLite connection."""
    import sqlite3

    path = tmp_path / "rollups.db"
    clock, out = Clock(100.0), []
    eng, m = _engine(RollupStore(path), clock, out)
    reader = sqlite3.connect(str(path))
    acked: list[str] = []

    def acker(mid: str) -> Callable[[], None]:
        def ack() -> None:
            row = reader.execute("SELECT 1 FROM seen WHERE id = ?", (mid,)).fetchone()
            assert row is not None, f"{mid} acknowledged before its commit"
            acked.append(mid)
        return ack

    def add(i: int, topic: str = "s/a/v") -> None:
        mid = f"id-{i}"
        eng.add(m, Message(topic, str(i).encode(), 1, message_id=mid, _acker=acker(mid)))

    for i in range(300):  # one full batch of 256 commits inside add()
        add(i)
    assert len(acked) == 256
    add(300, "s/b/v")
    clock.now = 110.0
    add(301)  # a new interval: the old one is flushed and published first
    assert len(acked) == 301 and len(out) == 1
    assert eng.flush() == 1
    add(5)  # a redelivered duplicate is acknowledged with the next commit
    assert eng.counts["duplicates"] == 1 and eng.flush() == 1
    assert acked.count("id-5") == 2 and len(acked) == 303
    reader.close()
