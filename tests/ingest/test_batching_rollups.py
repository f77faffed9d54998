"""Batching decisions and rollup arithmetic (pure)."""

from __future__ import annotations

import random

import pytest

from fieldmq.ingest.batching import Batcher, BatchPolicy
from fieldmq.ingest.records import Reading
from fieldmq.ingest.rollups import RollupCell, RollupKey, bucket_of, merge_into, rollup


def test_batch_is_due_when_full() -> None:
    """max_rows items make the batch due at once."""
    b: Batcher[int] = Batcher(BatchPolicy(max_rows=3, max_delay=60))
    assert not b.add(1, 0.0) and not b.add(2, 0.0)
    assert b.add(3, 0.0)
    assert b.take() == [1, 2, 3] and len(b) == 0 and b.wait(0.0) is None


def test_batch_is_due_when_its_first_item_is_old() -> None:
    """The delay counts from the first item, not the last."""
    b: Batcher[str] = Batcher(BatchPolicy(max_rows=100, max_delay=1.0))
    b.add("a", 10.0)
    b.add("b", 10.9)
    assert b.wait(10.9) == pytest.approx(0.1)
    assert not b.due(10.99) and b.due(11.0)
    b.take()
    assert not b.due(100.0)


def test_batch_taken_in_bulk_keeps_order_and_first_arrival() -> None:
    """extend() adds many items at once: due by size, aged from the first extend."""
    b: Batcher[int] = Batcher(BatchPolicy(max_rows=5, max_delay=2.0))
    assert not b.extend([], 0.0) and b.wait(0.0) is None  # nothing added, no clock
    assert not b.extend([1, 2], 10.0)
    assert not b.extend([3], 11.0) and b.wait(11.0) == pytest.approx(1.0)
    assert b.extend([4, 5, 6], 11.5)
    assert b.take() == [1, 2, 3, 4, 5, 6] and b.wait(12.0) is None


@pytest.mark.parametrize("kwargs", [{"max_rows": 0}, {"max_delay": -1.0},
                                    {"max_delay": float("nan")}])
def test_bad_batch_policy_is_refused(kwargs: dict[str, float]) -> None:
    """Non-positive sizes and negative or NaN delays raise ValueError."""
    with pytest.raises(ValueError):
        BatchPolicy(**kwargs)  # type: ignore[arg-type]


def test_bucket_alignment() -> None:
    """Buckets start at multiples of the width, negative times included."""
    assert bucket_of(125.0, 60) == 120.0
    assert bucket_of(3599.9, 3600) == 0.0
    assert bucket_of(-1.0, 60) == -60.0
    with pytest.raises(ValueError):
        bucket_of(1.0, 0)


def test_rollup_cells_sum_min_max_per_bucket() -> None:
    """Readings fold into one cell per device, metric, width and bucket."""
    rs = [Reading(f"m{i}", "d", "cpu", 60.0 + 10 * i, float(v)) for i, v in
          enumerate([5, 1, 9, 3, 7, 2, 8])]
    cells = rollup(rs, (60, 3600))
    first = cells[RollupKey("d", "cpu", 60, 60.0)]
    assert (first.n, first.total, first.min, first.max) == (6, 27.0, 1.0, 9.0)
    assert (first.first_ts, first.last_ts) == (60.0, 110.0)
    hour = cells[RollupKey("d", "cpu", 3600, 0.0)]
    assert hour.n == 7 and hour.avg == pytest.approx(35 / 7)


def test_rollup_matches_folding_one_cell_per_reading() -> None:
    """rollup() equals merging single-reading cells one by one (the definition)."""
    rng = random.Random(3)
    rs = [Reading(f"m{i}", rng.choice("abc"), rng.choice("xy"), rng.uniform(0, 9000),
                  rng.gauss(0, 5)) for i in range(400)]
    expected: dict[RollupKey, RollupCell] = {}
    for r in rs:
        for w in (60, 3600):
            merge_into(expected, {RollupKey(r.device, r.metric, w, bucket_of(r.ts, w)):
                                  RollupCell.of(r.value, r.ts)})
    assert rollup(rs, (60, 3600)) == expected
    with pytest.raises(ValueError):
        rollup(rs, (0,))


def test_merging_partial_rollups_equals_one_rollup() -> None:
    """Rollups of parts merged in any order equal the rollup of the whole."""
    rng = random.Random(7)
    rs = [Reading(f"m{i}", rng.choice("ab"), "x", rng.uniform(0, 7200), rng.gauss(0, 5))
          for i in range(500)]
    whole = rollup(rs)
    parts = [rs[i::3] for i in range(3)]
    rng.shuffle(parts)
    merged: dict[RollupKey, RollupCell] = {}
    for p in parts:
        merge_into(merged, rollup(p))
    assert merged.keys() == whole.keys()
    for k, c in whole.items():
        m = merged[k]
        assert (m.n, m.min, m.max, m.first_ts, m.last_ts) == (c.n, c.min, c.max, c.first_ts,
                                                              c.last_ts)
        assert m.total == pytest.approx(c.total)
