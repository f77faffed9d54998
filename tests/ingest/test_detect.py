"""Anomaly detectors (pure) and their quality on simulated fleets."""

from __future__ import annotations

import json
import math
import random

import pytest

from fieldmq.ingest.detect import (
    EWMA,
    AnomalyDetector,
    DetectorConfig,
    EWMAConfig,
    MADConfig,
    RollingMAD,
    StuckConfig,
    StuckDetector,
)
from fieldmq.ingest.records import Decoded, MessageRow, decode_message
from fieldmq.ingest.scoring import GroundTruth, Score, score


def row(ts: float, device: str = "d", topic: str = "fleet/d/data/telemetry") -> MessageRow:
    return MessageRow(f"{device}-{ts}", topic, "fleet", device, "data", "telemetry", ts, ts,
                      "{}")


def test_mad_scores_outliers_and_ignores_noise() -> None:
    """Noise stays under the threshold; a jump of many sigmas scores far above it."""
    rng = random.Random(1)
    det = RollingMAD(MADConfig(window=60, threshold=7, min_points=10))
    scores = [det.score(50 + rng.gauss(0, 1)) for _ in range(200)]
    assert scores[:10] == [None] * 10
    assert max(s for s in scores if s is not None) < 7
    z = det.score(90.0)
    assert z is not None and z > 20


def test_mad_survives_a_constant_signal() -> None:
    """A window of identical values (MAD 0) does not divide by zero."""
    det = RollingMAD(MADConfig(min_points=3, window=10))
    for _ in range(10):
        det.score(1.0)
    z = det.score(1.5)
    assert z is not None and z > 1e3


def test_ewma_warms_up_then_flags_a_jump() -> None:
    """EWMA says nothing during warm-up and flags a large jump afterwards."""
    rng = random.Random(2)
    det = EWMA(EWMAConfig(alpha=0.1, threshold=6, warmup=20))
    scores = [det.score(10 + rng.gauss(0, 0.5)) for _ in range(100)]
    assert all(s is None for s in scores[:20])
    assert max(s for s in scores[20:] if s is not None) < 6
    z = det.score(30.0)
    assert z is not None and z > 6


def test_stuck_detector_needs_an_implausible_run() -> None:
    """Exact repeats alert only once longer than the learned repeat rate allows."""
    det = StuckDetector()
    rng = random.Random(3)
    assert not any(det.update(round(rng.gauss(0, 1), 2)) for _ in range(100))
    hits = [det.update(0.42) for _ in range(6)]
    assert hits[:3] == [False, False, False] and hits[3:] == [True, True, True]


def test_stuck_detector_ignores_saturation_at_the_floor() -> None:
    """Runs at the lowest value ever seen (a clamped sensor) are not a frozen sensor."""
    det = StuckDetector()
    rng = random.Random(4)
    for _ in range(100):
        det.update(max(1.0, round(rng.gauss(3, 1), 1)))
    assert not any(det.update(1.0) for _ in range(10))


def test_stuck_at_a_new_extreme_is_still_stuck() -> None:
    """A rising signal that freezes at its highest value so far alerts: the bound was
    never reached before the run, so it is not saturation."""
    det = StuckDetector()
    rng = random.Random(6)
    assert not any(det.update(round(40 + k * 0.05 + rng.gauss(0, 0.3), 2))
                   for k in range(60))
    frozen = det.high + 0.5
    assert any(det.update(frozen) for _ in range(10))


def test_stuck_detector_warms_up() -> None:
    """Nothing alerts during the first ``warmup`` comparisons, however long the run."""
    slow, fast = StuckDetector(StuckConfig(warmup=40)), StuckDetector(StuckConfig(warmup=20))
    values = [float(k) for k in range(30)] + [7.5] * 11
    assert not any(slow.update(v) for v in values)
    assert any(fast.update(v) for v in values)
    assert slow.update(7.5)


def test_mad_leaving_a_floor_is_not_an_outlier() -> None:
    """A CPU clamped at 1 % for most of the window (MAD 0) moving back to its usual
    range scores low; a real spike still scores far above the threshold."""
    rng = random.Random(7)
    det = RollingMAD()
    for k in range(200):
        det.score(max(1.0, round(6 + 6 * math.sin(k / 9) + rng.gauss(0, 1), 1)))
    for _ in range(45):
        det.score(1.0)
    z = det.score(9.0)
    assert z is not None and z < 7
    z = det.score(95.0)
    assert z is not None and z > 7


def test_one_alert_per_episode_and_rearm() -> None:
    """A series alerts once per episode and again after `rearm` normal readings."""
    det = AnomalyDetector(DetectorConfig(mad=MADConfig(min_points=10), rearm=3, stuck=None))
    rng = random.Random(5)
    ts = 0.0
    alerts = []
    for value in [rng.gauss(20, 1) for _ in range(40)] + [90, 91, 92] + \
            [rng.gauss(20, 1) for _ in range(5)] + [95]:
        ts += 10
        alerts += det.observe(row(ts), {"cpu": value})
    assert [(a.detector, a.value) for a in alerts] == [("mad", 90), ("mad", 95)]
    assert alerts[0].alert_id == "d/cpu/mad/410.000" and alerts[0].group == "fleet"


def test_missing_metric_is_a_dropout_alert() -> None:
    """A metric absent from the next reading on the same topic raises one alert."""
    det = AnomalyDetector()
    det.observe(row(1.0), {"cpu": 1.0, "mem": 2.0})
    alerts = det.observe(row(2.0), {"cpu": 1.1})
    assert [(a.metric, a.detector, a.value) for a in alerts] == [("mem", "missing", None)]
    assert det.observe(row(3.0), {"cpu": 1.2}) == []
    other = row(4.0, topic="fleet/d/data/other")
    assert det.observe(other, {"x": 1.0}) == []


def test_late_readings_are_not_scored() -> None:
    """A reading older than the last one of its device is skipped."""
    det = AnomalyDetector(DetectorConfig(mad=MADConfig(min_points=3, window=5)))
    for t in range(1, 6):
        det.observe(row(float(t)), {"cpu": 1.0 + t / 100})
    assert det.observe(row(2.0), {"cpu": 1e6}) == []


@pytest.mark.parametrize("kwargs", [{"method": "median"}, {"rearm": 0}])
def test_bad_detector_config_is_refused(kwargs: dict[str, object]) -> None:
    """Unknown methods and a rearm below 1 raise ValueError."""
    with pytest.raises(ValueError):
        DetectorConfig(**kwargs)  # type: ignore[arg-type]


def simulate(seed: int, seconds: float, config: DetectorConfig) -> Score:
    """Score the detector on a default fleet built from the simulator's pure modules."""
    from fieldmq.sim.device import DeviceModel, telemetry_ts
    from fieldmq.sim.fleet import build_fleet

    t0 = 1_700_000_000.0
    events: list[tuple[float, str, bytes]] = []
    labels = []
    for spec in build_fleet(seed=seed):
        model = DeviceModel(spec)
        tick = 0
        while (ts := telemetry_ts(spec, model.profile, t0, tick)) <= t0 + seconds:
            reading = model.reading(tick, ts)
            events.append((ts, model.telemetry_topic, json.dumps(reading.payload).encode()))
            if reading.label is not None:
                labels.append(reading.label)
            tick += 1
        last = model.finish(ts)
        if last is not None:
            labels.append(last)
    events.sort()
    det = AnomalyDetector(config)
    alerts = []
    for i, (ts, topic, payload) in enumerate(events):
        d = decode_message(topic, payload, f"m-{i}", ts)
        assert isinstance(d, Decoded)
        alerts += det.observe(d.message, {r.metric: r.value for r in d.readings})
    truth = [GroundTruth(x.device, x.metric, x.start, x.end, x.kind, x.truncated) for x in labels]
    return score([(a.device, a.metric, a.ts) for a in alerts], truth, tolerance=30.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_default_detector_reaches_target_on_simulated_fleet(seed: int) -> None:
    """Precision and recall are >= 0.9 on an hour of the default simulated fleet."""
    result = simulate(seed, 3600.0, DetectorConfig())
    assert result.labels > 50
    assert result.precision >= 0.9, result.as_dict()
    assert result.recall >= 0.9, result.as_dict()
