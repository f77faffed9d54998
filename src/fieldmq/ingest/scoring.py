"""Scoring alerts against ground-truth labels (the simulator's ``labels.jsonl``). Pure,
apart from :func:`load_labels` which reads a JSON-lines file.

The matching rule: an alert is a **true positive** when its device and metric equal a
label's and its timestamp lies in ``[label.start, label.end + tolerance]`` (compared to the
millisecond, as payload timestamps are rounded to it); otherwise it is
a false positive. A label is **detected** when at least one alert matches it. An alert
that matches two labels counts once; one label matched by several alerts counts once.

* ``precision = matched alerts / alerts``;
* ``recall = detected labels / labels``, over the labels that are not ``truncated``
  (cut by the end of the run before they played out; alerts on them still count as
  true positives);
* ``f1 = 2 * precision * recall / (precision + recall)``;
* detection delay of a detected label: ``first matching alert ts - label.start``
  (mean, median and maximum reported).

Only alerts of the scored window count: pass ``since``/``until`` to ignore alerts
outside the labelled run (e.g. a warm-up). Labels and alerts carry Unix timestamps.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GroundTruth", "Score", "load_labels", "score"]

_FIELDS = ("device", "metric", "start", "end")
_SLACK = 0.001  # payload timestamps are rounded to the millisecond


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One labelled anomaly (the fields of ``fieldmq.sim.anomalies.Label`` that matter)."""

    device: str
    metric: str
    start: float
    end: float
    kind: str = ""
    truncated: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "label") -> GroundTruth:
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            start, end = float(data["start"]), float(data["end"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: start and end must be numbers") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"{where}: needs finite start <= end, got {start!r}, {end!r}")
        return cls(str(data["device"]), str(data["metric"]), start, end,
                   str(data.get("kind", "")), data.get("truncated") is True)


@dataclass(frozen=True, slots=True)
class Score:
    """The result of :func:`score`. ``labels`` counts the labels scored for recall (the
    truncated ones are in ``truncated``)."""

    alerts: int
    labels: int
    true_positives: int
    detected: int
    tolerance: float
    delays: tuple[float, ...] = ()
    missed: tuple[GroundTruth, ...] = field(default=(), repr=False)
    by_kind: Mapping[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    truncated: int = 0

    @property
    def false_positives(self) -> int:
        return self.alerts - self.true_positives

    @property
    def precision(self) -> float:
        return self.true_positives / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.labels if self.labels else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = self.delays
        return {
            "alerts": self.alerts, "labels": self.labels,
            "true_positives": self.true_positives, "false_positives": self.false_positives,
            "detected": self.detected, "missed": len(self.missed),
            "truncated": self.truncated,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4),
            "f1": round(self.f1, 4), "tolerance_s": self.tolerance,
            "delay_mean_s": round(statistics.fmean(d), 3) if d else None,
            "delay_median_s": round(statistics.median(d), 3) if d else None,
            "delay_max_s": round(max(d), 3) if d else None,
            "recall_by_kind": {k: round(hit / n, 4) for k, (hit, n) in
                               sorted(self.by_kind.items())},
        }


def load_labels(path: str | Path) -> list[GroundTruth]:
    """Labels from a JSON-lines file; ``ValueError`` naming the line when one is bad."""
    labels = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise ValueError(f"{path}:{n}: a label must be a JSON object")
            labels.append(GroundTruth.from_dict(data, where=f"{path}:{n}"))
    return labels


def score(
    alerts: Iterable[tuple[str, str, float]],
    labels: Sequence[GroundTruth],
    *,
    tolerance: float = 30.0,
    since: float | None = None,
    until: float | None = None,
) -> Score:
    """Score ``(device, metric, ts)`` alerts against ``labels`` with the rule above."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number of seconds >= 0, got {tolerance!r}")
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        index[(lab.device, lab.metric)].append(i)
    first: dict[int, float] = {}
    n_alerts = tp = 0
    for device, metric, ts in alerts:
        if (since is not None and ts < since) or (until is not None and ts > until):
            continue
        n_alerts += 1
        hit = False
        for i in index.get((device, metric), ()):
            lab = labels[i]
            if lab.start - _SLACK <= ts <= lab.end + tolerance:
                hit = True
                if i not in first or ts < first[i]:
                    first[i] = ts
        tp += int(hit)
    scored = [i for i, lab in enumerate(labels) if not lab.truncated]
    delays = tuple(first[i] - labels[i].start for i in scored if i in first)
    by_kind: dict[str, tuple[int, int]] = {}
    for i in scored:
        found, n = by_kind.get(labels[i].kind, (0, 0))
        by_kind[labels[i].kind] = (found + (i in first), n + 1)
    missed = tuple(labels[i] for i in scored if i not in first)
    return Score(n_alerts, len(scored), tp, len(scored) - len(missed), tolerance, delays,
                 missed, by_kind, truncated=len(labels) - len(scored))
