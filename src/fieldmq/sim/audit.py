"""The loss audit's arithmetic: what the devices accepted against what arrived.
Pure (rows in, report out); :mod:`.acceptlog` and :mod:`.receiver` read the files.

Message ids are ``<store-uid>-<seq>`` and a store numbers the messages it accepts
without gaps, so the audit knows more than the accept log says:

* a seq missing from the log *between* two logged seqs of one store was accepted
  too (the log lost it; e.g. its batch was not committed when the process died):
  it is counted as sent ("inferred");
* an arrival whose seq is *after* the store's last logged seq was accepted by that
  store (the log's tail was cut by a crash): counted as sent and received;
* an arrival from an unknown store, or from before the store's first logged seq
  (a previous run's backlog), is ``unexpected``; it is reported, never sent/lost.

Per device: ``sent``, ``received`` (distinct), ``missing`` = sent - received,
``dropped`` (what the client itself reported dropping: evicted, expired...),
``lost`` = missing not explained by ``dropped``, ``duplicated`` (extra arrivals),
``out_of_order`` (first arrivals on a topic with a lower seq than one already seen
there), ``late`` (latency above ``late_after``), and latency percentiles.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "AcceptedRow",
    "AuditReport",
    "DeviceAudit",
    "ReceivedRow",
    "audit_logs",
    "percentile",
    "split_message_id",
]

MAX_LISTED = 20


class AcceptedRow(NamedTuple):
    message_id: str
    device: str
    seq: int
    topic: str
    accepted_at: float


class ReceivedRow(NamedTuple):
    message_id: str | None
    topic: str
    received_at: float
    payload_ts: float | None = None


def split_message_id(message_id: str) -> tuple[str, int] | None:
    """``"<uid>-<seq>"`` -> ``(uid, seq)``; ``None`` for anything else."""
    uid, sep, seq = message_id.rpartition("-")
    if not sep or not uid or not seq.isdigit():
        return None
    return uid, int(seq)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of sorted ``values``."""
    if not values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]


@dataclass(slots=True)
class DeviceAudit:
    """The audit of one device (or of the whole fleet, ``device == "TOTAL"``).
    Latencies are seconds from acceptance to arrival; ``None`` without data."""

    device: str
    sent: int = 0
    received: int = 0
    missing: int = 0
    dropped: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    late: int = 0
    inferred: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max_latency: float | None = None
    lost_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class AuditReport:
    devices: list[DeviceAudit]
    total: DeviceAudit
    unexpected: int = 0
    late_after: float = 10.0

    @property
    def ok(self) -> bool:
        """Nothing was lost."""
        return self.total.lost == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "total": self.total.as_dict(),
            "devices": [d.as_dict() for d in self.devices],
            "unexpected": self.unexpected,
            "late_after": self.late_after,
        }

    def table(self, *, devices: bool = True) -> str:
        """A plain-text table, one line per device and a total."""
        head = ("device", "sent", "recv", "lost", "dropped", "dup", "ooo", "late",
                "p50 ms", "p95 ms", "p99 ms")
        rows = [head]

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.0f}"

        for d in [*(self.devices if devices else []), self.total]:
            rows.append((d.device, str(d.sent), str(d.received), str(d.lost), str(d.dropped),
                         str(d.duplicated), str(d.out_of_order), str(d.late),
                         ms(d.p50), ms(d.p95), ms(d.p99)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if devices and self.devices:
            lines.insert(len(lines) - 1, lines[1])
        if self.unexpected:
            lines.append(f"{self.unexpected} arrival(s) from unknown stores or earlier runs")
        if self.total.lost_ids:
            lines.append("lost: " + ", ".join(self.total.lost_ids[:MAX_LISTED]))
        return "\n".join(lines)


def _fill_latency(d: DeviceAudit, latencies: list[float], late_after: float) -> None:
    latencies.sort()
    d.p50 = percentile(latencies, 50)
    d.p95 = percentile(latencies, 95)
    d.p99 = percentile(latencies, 99)
    d.max_latency = latencies[-1] if latencies else None
    d.late = sum(1 for v in latencies if v > late_after)


def audit_logs(
    accepted: Iterable[AcceptedRow],
    received: Iterable[ReceivedRow],
    *,
    dropped: Mapping[str, int] | None = None,
    late_after: float = 10.0,
) -> AuditReport:
    """Compare accepted and received rows (received in arrival order)."""
    sent: dict[str, tuple[str, int, str, float | None]] = {}  # id -> device, seq, topic, at
    stores: dict[str, tuple[str, int, int]] = {}  # uid -> device, min seq, max seq
    for row in accepted:
        parts = split_message_id(row.message_id)
        if parts is None:
            raise ValueError(f"accept log has a malformed message id {row.message_id!r}")
        uid, seq = parts
        sent[row.message_id] = (row.device, seq, row.topic, row.accepted_at)
        if uid in stores:
            dev, lo, hi = stores[uid]
            stores[uid] = (dev, min(lo, seq), max(hi, seq))
        else:
            stores[uid] = (row.device, seq, seq)
    inferred: dict[str, int] = defaultdict(int)
    for uid, (dev, lo, hi) in stores.items():
        for seq in range(lo, hi + 1):
            gap_id = f"{uid}-{seq}"
            if gap_id not in sent:
                sent[gap_id] = (dev, seq, "", None)
                inferred[dev] += 1

    arrivals: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    last_seq: dict[tuple[str, str], int] = {}
    ooo: dict[str, int] = defaultdict(int)
    unexpected = 0
    for r in received:
        if not r.message_id:
            unexpected += 1
            continue
        mid = r.message_id
        info = sent.get(mid)
        if info is None:
            parts = split_message_id(mid)
            if parts is not None and parts[0] in stores and parts[1] > stores[parts[0]][2]:
                info = sent[mid] = (stores[parts[0]][0], parts[1], r.topic, None)
                inferred[info[0]] += 1
        if info is None:
            unexpected += 1
            continue
        arrivals[mid] += 1
        if arrivals[mid] > 1:
            continue
        dev, seq, _, at = info
        key = (dev, r.topic)
        if seq < last_seq.get(key, -1):
            ooo[dev] += 1
        else:
            last_seq[key] = seq
        if at is not None:
            latencies[dev].append(max(0.0, r.received_at - at))

    per: dict[str, DeviceAudit] = {}
    missing_ids: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for mid, (dev, seq, _, _) in sent.items():
        d = per.setdefault(dev, DeviceAudit(dev))
        d.sent += 1
        n = arrivals.get(mid, 0)
        if n:
            d.received += 1
            d.duplicated += n - 1
        else:
            missing_ids[dev].append((seq, mid))
    for dev, n in (dropped or {}).items():
        per.setdefault(dev, DeviceAudit(dev)).dropped = int(n)
    total = DeviceAudit("TOTAL")
    all_latencies: list[float] = []
    for dev, d in per.items():
        d.missing = d.sent - d.received
        d.lost = max(0, d.missing - d.dropped)
        d.out_of_order = ooo.get(dev, 0)
        d.inferred = inferred.get(dev, 0)
        if d.lost:
            d.lost_ids = [mid for _, mid in sorted(missing_ids[dev])[:MAX_LISTED]]
        _fill_latency(d, latencies.get(dev, []), late_after)
        all_latencies.extend(latencies.get(dev, []))
        for name in ("sent", "received", "missing", "dropped", "lost", "duplicated",
                     "out_of_order", "late", "inferred"):
            setattr(total, name, getattr(total, name) + getattr(d, name))
        if len(total.lost_ids) < MAX_LISTED:
            total.lost_ids.extend(d.lost_ids[: MAX_LISTED - len(total.lost_ids)])
    _fill_latency(total, all_latencies, late_after)
    total.late = sum(d.late for d in per.values())
    devices = [per[k] for k in sorted(per)]
    return AuditReport(devices=devices, total=total, unexpected=unexpected,
                       late_after=late_after)
