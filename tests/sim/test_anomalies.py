"""Anomaly injection: the labels describe exactly what was done to the values."""

from __future__ import annotations

import itertools

from fieldmq.sim.anomalies import GAP, KINDS, MIN_DEPARTURE, Label
from fieldmq.sim.device import DeviceModel
from fieldmq.sim.fleet import DeviceSpec, build_fleet
from fieldmq.sim.profiles import PROFILES


def _run(spec: DeviceSpec, n: int, *, anomalies: bool,
         label_payload: bool = False) -> tuple[list[dict[str, object]], list[Label], list[int]]:
    model = DeviceModel(spec, anomalies=anomalies, label_payload=label_payload)
    payloads, labels, alerts = [], [], []
    for k in range(n):
        r = model.reading(k, 1000.0 + k)
        payloads.append(r.payload)
        if r.label:
            labels.append(r.label)
        if r.alert:
            alerts.append(k)
    last = model.finish(1000.0 + n - 1)
    if last is not None:
        labels.append(last)
    return payloads, labels, alerts


def test_labels_match_the_injected_values() -> None:
    """Outside labels values equal the clean run; inside, each kind did what it says."""
    kinds_seen: set[str] = set()
    for spec in build_fleet(seed=11, devices=20):
        n = 1500
        clean, _, _ = _run(spec, n, anomalies=False)
        dirty, labels, alerts = _run(spec, n, anomalies=True)
        profile = PROFILES[spec.profile]
        touched: set[tuple[int, str]] = set()
        for lb in labels:
            kinds_seen.add(lb.kind)
            assert lb.device == spec.device_id
            assert lb.start_tick <= lb.end_tick
            assert lb.start == 1000.0 + lb.start_tick and lb.end == 1000.0 + lb.end_tick
            metric = PROFILES[spec.profile].metrics[lb.metric]
            window = range(lb.start_tick, lb.end_tick + 1)
            for k in window:
                touched.add((k, lb.metric))
                value = dirty[k].get(lb.metric)
                if lb.kind == "dropout":
                    assert value is None
                elif lb.kind == "spike":
                    assert metric.spike[0] <= value <= metric.spike[1]  # type: ignore[operator]
                elif lb.kind == "stuck":
                    assert value == clean[lb.start_tick][lb.metric]
                else:  # drift: ramps away from the clean value toward the spike range
                    assert value != clean[k][lb.metric] or k == lb.start_tick
            if lb.kind == "drift":
                first = abs(dirty[lb.start_tick][lb.metric] - clean[lb.start_tick][lb.metric])  # type: ignore[operator]
                last = abs(dirty[lb.end_tick][lb.metric] - clean[lb.end_tick][lb.metric])  # type: ignore[operator]
                assert last >= first
        assert sorted(alerts) == sorted(lb.start_tick for lb in labels)
        for k in range(n):
            for m in profile.metrics:
                if (k, m) not in touched:
                    assert dirty[k].get(m) == clean[k][m], (spec.device_id, k, m)
    assert kinds_seen == set(KINDS)


def test_labels_stay_out_of_the_payload_unless_asked() -> None:
    """Payloads carry no anomaly field by default; with label_payload they name it."""
    spec = build_fleet(seed=11, mix={"camera": 1})[0]
    plain, labels, _ = _run(spec, 2000, anomalies=True)
    assert labels and all("anomaly" not in p for p in plain)
    marked, labels2, _ = _run(spec, 2000, anomalies=True, label_payload=True)
    assert labels2 == labels
    lb = labels[0]
    assert marked[lb.start_tick]["anomaly"] == {"kind": lb.kind, "metric": lb.metric}
    assert "anomaly" not in marked[lb.end_tick + 1] or any(
        x.start_tick == lb.end_tick + 1 for x in labels)


def test_failure_rate_sets_how_often() -> None:
    """Anomalies start at about the profile's failure rate per reading."""
    spec = build_fleet(seed=2, mix={"sensor": 1})[0]
    _, labels, _ = _run(spec, 20000, anomalies=True)
    busy = sum(lb.end_tick - lb.start_tick + 1 for lb in labels)
    rate = len(labels) / (20000 - busy)
    assert 0.02 < rate < 0.04  # sensor: 0.03


def test_finish_labels_an_anomaly_cut_by_the_end() -> None:
    """An anomaly still active when the run ends gets a label ending at the last reading."""
    spec = build_fleet(seed=11, mix={"camera": 1})[0]
    model = DeviceModel(spec)
    k = 0
    while model.active is None:
        model.reading(k, float(k))
        k += 1
    active = model.active
    label = model.finish(99.0)
    assert label is not None and label.kind == active.kind and label.end == 99.0
    assert model.finish(100.0) is None


def test_warmup_gap_and_visible_departures() -> None:
    """No anomaly starts in the warm-up; anomalies of a device are GAP readings apart;
    a spike or drift starts only where its range is MIN_DEPARTURE sd from the value."""
    starts = 0
    for spec in build_fleet(seed=5, devices=12):
        profile = PROFILES[spec.profile]
        model = DeviceModel(spec, warmup=100 * profile.interval)
        clean_model = DeviceModel(spec, anomalies=False, warmup=100 * profile.interval)
        labels: list[Label] = []
        clean = []
        for k in range(3000):
            r = model.reading(k, float(k))
            clean.append(clean_model.reading(k, float(k)).payload)
            if r.label:
                labels.append(r.label)
        assert labels and min(lb.start_tick for lb in labels) >= 100
        for a, b in itertools.pairwise(labels):
            assert b.start_tick - a.end_tick > GAP
        for lb in labels:
            if lb.kind in ("spike", "drift"):
                m = profile.metrics[lb.metric]
                x = clean[lb.start_tick][lb.metric]
                assert isinstance(x, float)
                assert max(m.spike[0] - x, x - m.spike[1]) >= MIN_DEPARTURE * m.sd
                starts += 1
    assert starts > 10
