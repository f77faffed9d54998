"""Pure decisions: slot planning, restart backoff and crash loops, autoscaling, metrics."""

from __future__ import annotations

import random

import pytest

from fieldmq import Backoff
from fieldmq.router import RestartPolicy, Router, ScalingPolicy
from fieldmq.router.metrics import WorkerStats, render
from fieldmq.router.plan import needed_workers, plan
from fieldmq.router.restarts import RestartTracker
from fieldmq.router.scaling import Autoscaler


def _router() -> Router:
    r = Router(middleware=[])
    r.on("single/{x}", lambda m, x: None)
    r.on("all/{x}", lambda m, x: None, shared=True)
    r.on("one/{x}", lambda m, x: None, shared=True, workers=1)
    r.on("two/{x}", lambda m, x: None, shared=True, workers=2)
    return r


def test_plan_honours_worker_counts_exactly() -> None:
    """Each shared route with workers=k is in exactly k slots; non-shared only in slot 0."""
    r = _router()
    for n in range(2, 7):
        p = plan(r.routes, n)
        count = {i: sum(i in v for v in p.values()) for i in range(4)}
        assert count == {0: 1, 1: n, 2: 1, 3: 2}
        assert 0 in p[0]


def test_plan_spreads_fixed_routes_and_rejects_impossible() -> None:
    """Fixed routes go to the least loaded slots; too many workers is a clear error."""
    p = plan(_router().routes, 3)
    assert p == {0: (0, 1, 3), 1: (1, 2), 2: (1, 3)}
    assert needed_workers(_router().routes) == 2
    with pytest.raises(ValueError, match="run with --workers 2"):
        plan(_router().routes, 1)
    with pytest.raises(ValueError, match="positive int"):
        plan(_router().routes, 0)
    p = plan(_router().routes, 5, fixed_slots=2)
    assert all(3 not in p[s] and 2 not in p[s] for s in (2, 3, 4))


def test_restart_backoff_grows_and_resets_after_stable_run() -> None:
    """Quick deaths back off exponentially; a long run resets the streak."""
    pol = RestartPolicy(backoff=Backoff(initial=1, maximum=8, jitter=False, stable_after=30),
                        max_restarts=100, window=10)
    t = RestartTracker(pol, random.Random(0))
    delays = [t.on_exit(now=i * 100.0, ran_for=1.0, exitcode=1).delay for i in range(5)]
    assert delays == [1, 2, 4, 8, 8]
    d = t.on_exit(now=1000.0, ran_for=60.0, exitcode=1)
    assert d.restart and d.delay == 1 and "exit status 1" in d.reason


def test_crash_loop_detected_within_window() -> None:
    """More than max_restarts deaths within the window stop the restarts."""
    pol = RestartPolicy(backoff=Backoff(initial=0.1, maximum=1, jitter=False),
                        max_restarts=3, window=60)
    t = RestartTracker(pol)
    assert all(t.on_exit(float(i), 0.5, 1).restart for i in range(3))
    d = t.on_exit(3.0, 0.5, -9)
    assert not d.restart and "crash loop" in d.reason and "-9" in d.reason
    slow = RestartTracker(pol)
    assert all(slow.on_exit(i * 61.0, 0.5, 1).restart for i in range(10))
    with pytest.raises(ValueError):
        RestartPolicy(window=0)


def test_autoscaler_up_down_cooldown_and_bounds() -> None:
    """Sustained load adds a worker, sustained idleness removes one, within bounds."""
    pol = ScalingPolicy(min_workers=1, max_workers=3, up_after=2, down_after=3, cooldown=10)
    a = Autoscaler(pol, 1)
    assert a.observe(0, 0.9, None) == 1
    assert a.observe(5, 0.9, None) == 2
    assert a.observe(6, 0.9, None) == 2 and a.observe(7, 0.9, None) == 2  # cooldown
    assert a.observe(16, 0.9, None) == 3
    assert [a.observe(30 + i, 0.95, None) for i in range(5)] == [3] * 5  # max
    assert [a.observe(50 + i * 5, 0.1, None) for i in range(3)] == [3, 3, 2]
    assert a.observe(70, 0.5, None) == 2  # neither hot nor cold resets the streak
    assert [a.observe(80 + i * 11, 0.0, None) for i in range(6)] == [2, 2, 1, 1, 1, 1]


def test_autoscaler_latency_target() -> None:
    """Latency above the target scales up even at low utilization."""
    a = Autoscaler(ScalingPolicy(min_workers=1, max_workers=4, latency_target=0.1,
                                 up_after=1, cooldown=0), 1)
    assert a.observe(0, 0.1, 0.5) == 2
    assert a.observe(1, 0.1, 0.08) == 2  # below target but not below half: hold
    with pytest.raises(ValueError):
        ScalingPolicy(min_workers=3, max_workers=2)
    with pytest.raises(ValueError):
        ScalingPolicy(min_workers=1, max_workers=2, scale_up_at=0.2, scale_down_at=0.5)


def test_metrics_render_merges_workers() -> None:
    """Per-worker counters render as labelled Prometheus series."""
    s0, s1 = WorkerStats(), WorkerStats()
    s0.record('a/{x}', "handled", 0.002)
    s0.record('a/{x}', "retried", 0.0)
    s1.record('a/{x}', "dead_lettered", 0.3)
    text = render({0: s0.snapshot(), 1: s1.snapshot()}, alive={0: True, 1: False},
                  restarts={0: 0, 1: 2}, desired=2)
    assert 'fieldmq_router_messages_total{worker="0",route="a/{x}",outcome="handled"} 1' in text
    assert 'fieldmq_router_messages_total{worker="1",route="a/{x}",outcome="dead_lettered"} 1' \
        in text
    assert 'fieldmq_router_retries_total{worker="0",route="a/{x}"} 1' in text
    assert 'fieldmq_router_handler_seconds_bucket{worker="0",route="a/{x}",le="0.0025"} 1' in text
    assert 'fieldmq_router_handler_seconds_count{worker="1",route="a/{x}"} 1' in text
    assert 'fieldmq_router_worker_up{worker="1"} 0' in text
    assert 'fieldmq_router_worker_restarts_total{worker="1"} 2' in text
    assert 'fieldmq_router_workers{state="alive"} 1' in text
