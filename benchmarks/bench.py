"""fieldmq benchmark orchestrator; run it through ``benchmarks/run``.

Starts ONE mosquitto (``fieldmq.testing.MosquittoBroker``, ephemeral port) and runs
each measured item in its own subprocess (``benchmarks/items.py``; robmqtt through
``benchmarks/robmqtt_bench.py`` in its own venv) with a hard timeout. On a machine
with 2+ cores the broker is pinned to CPU 1 and the measured process to CPU 0.
Prints a table and writes ``benchmarks/results/latest.json``.
Not a test module: nothing under ``tests/`` imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fieldmq.testing import MosquittoBroker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROBMQTT_PY = HERE / ".venv-robmqtt" / "bin" / "python"
PAYLOAD_BYTES = 100

TARGETS = {
    "e2e_ratio": 0.8,
    "drain_ratio": 0.8,
    "enqueue_publish": 40_000,
    "enqueue_batch": 200_000,
    "rss_mb_1m": 60.0,
    "bytes_x_payload": 4.0,
    "durable_lag_ms": 10.0,
}

FULL = {
    "rounds": 3, "e2e": 100_000, "robmqtt": 2_000, "robmqtt_drain_s": 15.0,
    "enqueue": 1_000_000, "slice": 100_000,
    "drain": 100_000, "latency": 100_000, "paced": 10_000,
    "disk": [[0, 100_000], [5_000, 50_000], [200, 2_000], [5_000, 25_000, 60],
             [200, 1_000, 60]],
}
QUICK = {
    "rounds": 1, "e2e": 20_000, "robmqtt": 300, "robmqtt_drain_s": 5.0,
    "enqueue": 200_000, "slice": 100_000,
    "drain": 20_000, "latency": 20_000, "paced": 2_000,
    "disk": [[0, 20_000], [5_000, 10_000], [200, 400], [5_000, 5_000, 60]],
}
ITEM_NAMES = ["e2e", "robmqtt", "enqueue", "enqueue_batch", "drain", "latency", "diskbytes"]


class Runner:
    def __init__(self, pin: bool, verbose: bool) -> None:
        self.pin = pin and (os.cpu_count() or 1) >= 2
        self.verbose = verbose
        self.broker = MosquittoBroker()

    def start_broker(self) -> None:
        self.broker.start()
        if self.pin and self.broker.pid:
            os.sched_setaffinity(self.broker.pid, {1})

    def _popen(self, cmd: list[str], stdin: bool = False) -> subprocess.Popen[str]:
        def pre() -> None:
            os.setsid()
            if self.pin:
                os.sched_setaffinity(0, {0})

        return subprocess.Popen(
            cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=None,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, preexec_fn=pre,
        )

    @staticmethod
    def _kill(p: subprocess.Popen[str]) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)

    @staticmethod
    def _parse(out: str, rc: int | None) -> dict[str, Any]:
        for line in reversed(out.splitlines()):
            if line.startswith("RESULT "):
                return dict(json.loads(line[7:]))
        return {"error": f"no result (exit code {rc})"}

    def run(self, cmd: list[str], timeout: float) -> dict[str, Any]:
        """Run one item with a hard timeout; a hung item is killed, never waited on."""
        load = os.getloadavg()[0]  # other work on the machine skews figures: record it
        p = self._popen(cmd)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(p)
            return {"error": f"timed out after {timeout:.0f} s (killed)", "load_1min": load}
        return {**self._parse(out, p.returncode), "load_1min": load}

    def item(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        args = {"url": self.broker.url, **args}
        cmd = [sys.executable, str(HERE / "items.py"), name, json.dumps(args)]
        return self.run(cmd, timeout)

    def drain(self, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Stop the broker, let the item enqueue offline, start the broker, say GO."""
        self.broker.stop()
        args = {"url": self.broker.url, **args}
        p = self._popen([sys.executable, str(HERE / "items.py"), "drain", json.dumps(args)],
                        stdin=True)
        deadline = time.monotonic() + timeout
        try:
            assert p.stdout is not None and p.stdin is not None
            ready = _readline(p, deadline)
            if ready != "READY":
                self._kill(p)
                return {"error": f"drain item did not get ready ({ready!r})"}
            # GO first, so the item's clock starts before the broker does: it measures
            # broker start + reconnect, then the drain from the moment it is connected
            p.stdin.write("GO\n")
            p.stdin.flush()
            self.start_broker()
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            return self._parse(out, p.returncode)
        except subprocess.TimeoutExpired:
            self._kill(p)
            return {"error": f"timed out after {timeout:.0f} s (killed)"}
        finally:
            self.start_broker()


def _readline(p: subprocess.Popen[str], deadline: float) -> str:
    import selectors

    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            return p.stdout.readline().strip()
        if p.poll() is not None:
            return f"exited with {p.returncode}"
    return "timed out"


def robmqtt_item(r: Runner, cfg: dict[str, Any]) -> dict[str, Any]:
    """robmqtt's e2e, offline enqueue and drain, each in its own process in its own venv."""
    failed = HERE / ".venv-robmqtt.failed"
    if not ROBMQTT_PY.exists() or failed.exists():
        reason = failed.read_text().strip() if failed.exists() else "venv missing"
        return {"error": f"robmqtt not installed: {reason}"}
    out: dict[str, Any] = {}
    for phase, args in (("e2e", {"count": cfg["robmqtt"]}),
                        ("enqueue", {"count": cfg["robmqtt"]}),
                        ("drain", {"count": 500, "drain_budget": cfg["robmqtt_drain_s"]})):
        cmd = [str(ROBMQTT_PY), str(HERE / "robmqtt_bench.py"), phase,
               json.dumps({"url": r.broker.url, **args})]
        res = r.run(cmd, timeout=150)
        out[phase] = res
        if "msgs_per_s" in res:
            out[f"{phase}_msgs_per_s"] = res["msgs_per_s"]
        print(f"robmqtt {phase}: {res}", flush=True)
    return out


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return "?"

    import paho.mqtt

    dirty = [ln[3:] for ln in git("status", "--porcelain", "--", "src").splitlines()]
    mosq = subprocess.run([r_find_mosquitto(), "-h"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "paho": paho.mqtt.__version__,
        "mosquitto": (mosq.stdout.splitlines() or ["?"])[0],
        "loadavg_at_start": os.getloadavg(),
        "commit": git("rev-parse", "HEAD"), "commit_subject": git("log", "-1", "--format=%s"),
        "src_uncommitted": dirty,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def r_find_mosquitto() -> str:
    from fieldmq.testing.broker import find_mosquitto

    return find_mosquitto()


def ok(flag: bool | None) -> str:
    return "-" if flag is None else ("MEETS" if flag else "MISSES")


def build_table(res: dict[str, Any]) -> list[list[str]]:
    """Rows: figure, value, ratio vs raw paho, target, verdict."""
    rows: list[list[str]] = []
    t = TARGETS

    def g(d: Any, *keys: str) -> Any:
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def num(v: Any, fmt: str = "{:,.0f}") -> str:
        return fmt.format(v) if isinstance(v, (int, float)) else "n/a"

    paho = g(res, "e2e", "paho_msgs_per_s")
    fmq = g(res, "e2e", "fieldmq_msgs_per_s")
    rob = g(res, "robmqtt", "e2e_msgs_per_s")

    def ratio(v: Any) -> str:
        return f"{v / paho:.2f}x" if isinstance(v, (int, float)) and paho else "n/a"

    rows.append(["e2e QoS1 raw paho (msgs/s)", num(paho), "1.00x", "baseline", "-"])
    rows.append(["e2e QoS1 fieldmq (msgs/s)", num(fmq), ratio(fmq), ">= 0.80x",
                 ok(fmq / paho >= t["e2e_ratio"] if fmq and paho else None)])
    rows.append(["e2e QoS1 robmqtt (msgs/s)", num(rob), ratio(rob), "(0.03x in issue)", "-"])
    for key, label, target in (("enqueue", "publish(), 1 thread", t["enqueue_publish"]),
                               ("enqueue_batch", "publish_many()", t["enqueue_batch"])):
        v = g(res, key, "first_slice_msgs_per_s")
        rows.append([f"offline enqueue 100k, {label} (msgs/s)", num(v), "",
                     f">= {target:,}", ok(v >= target if v else None)])
        sl = g(res, key, "slices_msgs_per_s") or []
        cnt = g(res, key, "count")
        if len(sl) > 1:
            med = statistics.median(sl[1:])
            rows.append([f"  sustained, 100k slices 2..{len(sl)} (median msgs/s)", num(med),
                         "", f">= {target:,}", ok(med >= target)])
            rows.append([f"  slowest 100k slice up to {num(cnt)} queued (msgs/s)",
                         f"{min(sl):,} ({min(sl) / sl[0]:.2f} of 1st)", "", f">= {target:,}",
                         ok(min(sl) >= target)])
    v = g(res, "robmqtt", "enqueue_msgs_per_s")
    rows.append(["offline enqueue robmqtt (msgs/s)", num(v), "", "(1.3k in issue)", "-"])
    v = g(res, "drain", "msgs_per_s")
    rows.append(["drain 100k backlog after reconnect (msgs/s)", num(v), ratio(v), ">= 0.80x",
                 ok(v / paho >= t["drain_ratio"] if v and paho else None)])
    v = g(res, "drain", "reconnect_seconds")
    rows.append(["  broker start -> reconnected (s)", num(v, "{:.2f}"), "", "", "-"])
    v = g(res, "robmqtt", "drain_msgs_per_s")
    rows.append(["drain robmqtt (msgs/s)", num(v, "{:,.1f}"), ratio(v), "(~10 in issue)", "-"])
    lat = g(res, "latency", "publish_us")
    if lat:
        rows.append(["publish() latency p50/p99/p999 (us)",
                     f"{lat['p50']:.1f}/{lat['p99']:.1f}/{lat['p999']:.1f}", "", "", "-"])
    # the power-safety lag itself: per sync, from the oldest write it covered to the end of
    # its fdatasync, as the store measures it (stats()["fsync_lag_ms"])
    paced_rate = (g(res, "latency", "durable_lag_ms_paced") or {}).get("rate", "paced")
    for key, label, target in (
            ("fsync_lag_ms_full_speed", "flat out", True),
            ("fsync_lag_ms_paced", f"{paced_rate}/s", True),
            ("fsync_lag_ms_full_speed_thread", "flat out, fsync_helper=False", False),
            ("fsync_lag_ms_paced_thread", f"{paced_rate}/s, fsync_helper=False", False)):
        lag = g(res, "latency", key)
        if lag:
            rows.append([f"power-safety lag per sync p50/p99/max (ms), {label}",
                         f"{lag['p50']:.1f}/{lag['p99']:.1f}/{lag['max']:.1f}", "",
                         "<= 10 ms" if target else "(info)",
                         ok(lag["p99"] <= t["durable_lag_ms"]) if target else "-"])
    # when a thread of the application learns it (GIL scheduling of that thread included)
    for key, label in (("durable_lag_ms_full_speed", "wait_durable, flat out"),
                       ("durable_lag_ms_paced", "wait_durable, paced"),
                       ("durable_lag_ms_full_speed_polled", "polling .durable, flat out"),
                       ("durable_lag_ms_paced_polled", "polling .durable, paced")):
        lag = g(res, "latency", key)
        if lag:
            if "paced" in key:
                label = label.replace("paced", f"{lag.get('rate', '?')}/s")
            rows.append([f"  seen by a waiting thread p50/p99/p999 (ms), {label}",
                         f"{lag['p50']:.1f}/{lag['p99']:.1f}/{lag['p999']:.1f}", "",
                         "(info)", "-"])
    v = g(res, "enqueue", "rss_queued_mb")
    cnt = g(res, "enqueue", "count")
    rows.append([f"RSS with {num(cnt)} queued (MB, VmRSS)", num(v, "{:.1f}"), "",
                 "<= 60 MB", ok(v <= t["rss_mb_1m"] if v else None)])
    v = g(res, "enqueue", "rss_peak_mb")
    rows.append(["  peak RSS while filling (MB, VmHWM)", num(v, "{:.1f}"), "", "(info)", "-"])
    v = g(res, "enqueue_batch", "rss_queued_mb")
    rows.append(["  same, filled by publish_many (MB)", num(v, "{:.1f}"), "", "<= 60 MB",
                 ok(v <= t["rss_mb_1m"] if v else None)])
    v = g(res, "enqueue_batch", "rss_peak_mb")
    rows.append(["  peak RSS, publish_many (MB, VmHWM)", num(v, "{:.1f}"), "", "(info)", "-"])
    runs = g(res, "diskbytes", "runs") or {}
    for key, r in runs.items():
        rate = "flat out" if key == "full_speed" else key
        bpm = r["write_bytes_per_msg"]
        head = key.startswith("5000/s")
        rows.append([f"disk bytes/delivered msg, {rate} ({r['achieved_msgs_per_s']:,}/s)",
                     f"{bpm:,.0f}", f"{r['x_payload']:.1f}x payload",
                     "<= 4x (400 B)" if head else "(info)",
                     ok(bpm <= t["bytes_x_payload"] * PAYLOAD_BYTES) if head else
                     ("(" + ok(bpm <= t["bytes_x_payload"] * PAYLOAD_BYTES).lower() + ")")])
    return rows


def print_table(rows: list[list[str]]) -> str:
    head = ["figure", "value", "vs raw paho", "target", "verdict"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a sanity check")
    ap.add_argument("--only", action="append", choices=ITEM_NAMES,
                    help="run only this item (repeatable)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin broker/client to CPUs")
    ap.add_argument("--rounds", type=int, help="e2e rounds (alternating paho/fieldmq)")
    ap.add_argument("--out", help="JSON path; default results/latest.json for a full run of "
                    "every item, results/partial.json otherwise")
    ns = ap.parse_args()
    if not ns.out:
        partial = ns.quick or ns.only or ns.rounds or ns.no_pin
        ns.out = str(HERE / "results" / ("partial.json" if partial else "latest.json"))
    cfg = dict(QUICK if ns.quick else FULL)
    if ns.rounds:
        cfg["rounds"] = ns.rounds
    only = set(ns.only or ITEM_NAMES)
    r = Runner(pin=not ns.no_pin, verbose=True)
    meta = machine()
    meta.update(quick=ns.quick, pinned=r.pin, config=cfg,
                command=" ".join(["benchmarks/run", *sys.argv[1:]]))
    print(f"fieldmq benchmark at {meta['commit'][:12]} ({meta['commit_subject']})"
          + (f"; uncommitted src changes: {', '.join(meta['src_uncommitted'])}"
             if meta["src_uncommitted"] else ""), flush=True)
    print(f"{meta['nproc']} x {meta['cpu']}, kernel {meta['kernel']}, "
          f"load {meta['loadavg_at_start']}"
          f", broker pinned to CPU 1 and client to CPU 0: {r.pin}", flush=True)
    res: dict[str, Any] = {}
    t_all = time.monotonic()
    r.start_broker()
    print(f"mosquitto on {r.broker.url} (pid {r.broker.pid})", flush=True)
    try:
        if "e2e" in only:
            paho_runs: list[dict[str, Any]] = []
            fmq_runs: list[dict[str, Any]] = []
            for i in range(cfg["rounds"]):
                for name, runs in (("paho", paho_runs), ("fieldmq", fmq_runs)):
                    out = r.item(name, {"count": cfg["e2e"]}, timeout=180)
                    runs.append(out)
                    print(f"e2e round {i + 1} {name}: {out.get('msgs_per_s', out)}", flush=True)
            res["e2e"] = {"paho_runs": paho_runs, "fieldmq_runs": fmq_runs}
            for name, runs in (("paho", paho_runs), ("fieldmq", fmq_runs)):
                ok_runs = [x["msgs_per_s"] for x in runs if "msgs_per_s" in x]
                if ok_runs:
                    res["e2e"][f"{name}_msgs_per_s"] = round(statistics.median(ok_runs))
        if "robmqtt" in only:
            res["robmqtt"] = robmqtt_item(r, cfg)
        for key, mode in (("enqueue", "publish"), ("enqueue_batch", "batch")):
            if key in only:
                res[key] = r.item("enqueue", {"count": cfg["enqueue"], "slice": cfg["slice"],
                                              "mode": mode, "budget": 240}, timeout=420)
                print(f"{key}: { {k: v for k, v in res[key].items() if k != 'slices'} }",
                      flush=True)
        if "drain" in only:
            res["drain"] = r.drain({"count": cfg["drain"]}, timeout=300)
            print(f"drain: {res['drain']}", flush=True)
        if "latency" in only:
            res["latency"] = r.item("latency", {"count": cfg["latency"],
                                                "paced_count": cfg["paced"]}, timeout=300)
            print(f"latency: {res['latency']}", flush=True)
        if "diskbytes" in only:
            res["diskbytes"] = r.item("diskbytes", {"runs": cfg["disk"]}, timeout=300)
            print(f"diskbytes: {res['diskbytes']}", flush=True)
        if "e2e" not in only and "e2e" not in res:
            # ratios need a paho baseline: measure one round
            out = r.item("paho", {"count": cfg["e2e"]}, timeout=180)
            res["e2e"] = {"paho_runs": [out], "paho_msgs_per_s": out.get("msgs_per_s")}
    finally:
        r.broker.close()
    meta["seconds"] = round(time.monotonic() - t_all, 1)
    rows = build_table(res)
    table = print_table(rows)
    print()
    print(table)
    doc = {"meta": meta, "targets": TARGETS, "results": res, "table": rows}
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
          f"({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
