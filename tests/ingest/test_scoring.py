"""The matching rule of `fieldmq score` (pure) and label loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldmq.ingest.scoring import GroundTruth, load_labels, score

L = [GroundTruth("d1", "cpu", 100.0, 130.0, "spike"), GroundTruth("d1", "mem", 200.0, 210.0,
                                                                    "drift"),
     GroundTruth("d2", "cpu", 100.0, 100.0, "stuck")]


def test_alert_inside_window_is_true_positive() -> None:
    """Alerts in [start, end + tolerance] of a label with the same device/metric match."""
    s = score([("d1", "cpu", 105.0), ("d1", "cpu", 140.0), ("d1", "mem", 235.0),
               ("d2", "cpu", 99.0), ("d2", "mem", 100.0)], L, tolerance=30)
    assert (s.alerts, s.true_positives, s.detected, s.labels) == (5, 3, 2, 3)
    assert s.precision == pytest.approx(0.6) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.6 * (2 / 3) / (0.6 + 2 / 3))
    assert s.delays == (5.0, 35.0)
    assert [m.kind for m in s.missed] == ["stuck"]
    d = s.as_dict()
    assert d["delay_max_s"] == 35.0 and d["recall_by_kind"] == {"drift": 1.0, "spike": 1.0,
                                                               "stuck": 0.0}


def test_window_bounds_filter_alerts() -> None:
    """since/until drop alerts outside the scored run; no alerts means precision 1."""
    s = score([("d1", "cpu", 50.0)], L, since=60.0)
    assert s.alerts == 0 and s.precision == 1.0 and s.recall == 0.0


def test_truncated_labels_are_matched_but_not_counted_in_recall() -> None:
    """A label cut by the end of the run makes its alerts true positives but is left
    out of recall (it had not played out)."""
    labels = [GroundTruth("d1", "cpu", 100.0, 130.0, "drift"),
              GroundTruth("d1", "mem", 300.0, 301.0, "drift", truncated=True),
              GroundTruth("d2", "mem", 300.0, 301.0, "drift", truncated=True)]
    s = score([("d1", "cpu", 110.0), ("d1", "mem", 301.0)], labels)
    assert (s.alerts, s.true_positives, s.labels, s.detected, s.truncated) == (2, 2, 1, 1, 2)
    assert s.precision == 1.0 and s.recall == 1.0 and s.missed == ()
    assert s.as_dict()["truncated"] == 2
    loaded = GroundTruth.from_dict({"device": "d", "metric": "m", "start": 1, "end": 2,
                                    "truncated": True})
    assert loaded.truncated


def test_load_labels_reads_the_simulator_format(tmp_path: Path) -> None:
    """Simulator labels (extra fields included) load; a bad line names file and line."""
    from fieldmq.sim.anomalies import Label

    path = tmp_path / "labels.jsonl"
    import json

    path.write_text(json.dumps(Label("d", "cpu", "spike", 1, 2, 10.0, 20.0).as_dict()) + "\n\n")
    assert load_labels(path) == [GroundTruth("d", "cpu", 10.0, 20.0, "spike")]
    path.write_text('{"device": "d"}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:1: missing field"):
        load_labels(path)
