"""Whole runs against a real mosquitto: scenarios end with nothing lost, and the
audit catches messages removed on purpose. Scaled down to a few devices."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fieldmq.cli import main
from fieldmq.sim.scenario import load_scenario
from fieldmq.sim.simulation import Simulation, SimulationConfig, SimulationError


def test_outage_scenario_loses_nothing(tmp_path: Path) -> None:
    """The broker stops and restarts while devices publish; the audit reports lost = 0."""
    seen: list[str] = []
    config = SimulationConfig(
        state_dir=tmp_path, mix={"sensor": 2, "camera": 1, "gateway": 1}, seed=42,
        scenario=load_scenario("outage").scaled(0.3), rate=4.0, drain_timeout=30.0)
    result = Simulation(config).run(lambda st: seen.append(st.phase))
    audit = result.audit
    assert audit.ok, audit.table()
    assert audit.total.lost == 0 and audit.total.sent > 40
    assert audit.total.received == audit.total.sent
    assert [label for _, label in result.history] == ["broker-stop", "broker-start",
                                                      "broker-restart"]
    assert result.status.reconnects >= 4  # every device noticed the outage
    # messages accepted during the outage waited: the tail latency shows it
    assert audit.total.max_latency is not None and audit.total.max_latency > 1.0
    assert {"running", "draining"} <= set(seen)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["audit"]["ok"] is True
    assert (tmp_path / "labels.jsonl").exists()


def test_power_cycle_in_two_processes_then_audit_catches_deletions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Devices killed and restarted on their stores, in two worker processes, lose
    nothing; rows deleted from the received log afterwards are reported as lost."""
    code = main(["simulate", "--mix", "sensor=2,camera=1,gateway=1", "--processes", "2",
                 "--scenario", "power-cycle", "--time-scale", "0.2", "--rate", "4",
                 "--state-dir", str(tmp_path), "--json", "--seed", "7"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["audit"]
    assert out["audit"]["total"]["lost"] == 0
    assert len(list(tmp_path.glob("accepted-*.db"))) == 2
    assert "device-kill all" in [h["step"] for h in out["history"]]

    with sqlite3.connect(tmp_path / "received.db") as db:
        victims = [r[0] for r in db.execute(
            "SELECT DISTINCT message_id FROM received WHERE topic LIKE '%/telemetry' "
            "ORDER BY id LIMIT 3")]
        db.executemany("DELETE FROM received WHERE message_id = ?", [(v,) for v in victims])
    db.close()
    assert main(["audit", "--state-dir", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["lost"] == 3
    assert sorted(report["total"]["lost_ids"]) == sorted(victims)


def test_flaky_network_through_fault_proxies(tmp_path: Path) -> None:
    """Latency, bandwidth caps, blackholes and resets per group lose nothing."""
    config = SimulationConfig(
        state_dir=tmp_path, mix={"sensor": 1, "camera": 1, "gateway": 1}, seed=3,
        scenario=load_scenario("flaky-4g").scaled(0.12), rate=5.0, drain_timeout=30.0,
        keepalive=2.0)
    sim = Simulation(config)
    result = sim.run()
    assert result.audit.ok, result.audit.table()
    assert result.audit.total.sent > 20
    labels = [label for _, label in result.history]
    assert "blackhole gateway" in labels and "reset camera" in labels


def test_reusing_a_state_dir_needs_overwrite(tmp_path: Path) -> None:
    """A state directory with a previous run is refused unless overwrite is set."""
    (tmp_path / "accepted-0.db").write_bytes(b"")
    with pytest.raises(SimulationError, match="--overwrite"):
        Simulation(SimulationConfig(state_dir=tmp_path, devices=1, broker="mqtt://127.0.0.1:1"
                                    )).run()


def test_kill_and_restart_while_devices_are_opening(tmp_path: Path, mosquitto: Any) -> None:
    """A kill and a restart that arrive while the clients are still opening (a scenario
    step in the first instant, or a slow machine) leave one client per store: no
    StoreLocked, every device boots, the run finishes and its queues drain."""
    import queue as queue_mod
    import time

    from fieldmq.sim.fleet import build_fleet
    from fieldmq.sim.scenario import Step
    from fieldmq.sim.worker import WorkerConfig, run_thread

    specs = tuple(build_fleet(seed=3, devices=8))
    cfg = WorkerConfig(index=0, devices=specs, brokers={s.group: mosquitto.url for s in specs},
                       state_dir=str(tmp_path), t0=time.time(), rate=4.0)
    commands: queue_mod.Queue[Any] = queue_mod.Queue()
    events: queue_mod.Queue[Any] = queue_mod.Queue()
    step = Step(at=0.0, action="device-kill")
    for command in [("kill", step), ("restart", step), ("kill", step), ("restart", step)]:
        commands.put(command)  # waiting before the worker even starts its clients
    thread = run_thread(cfg, commands, events)
    deadline = time.monotonic() + 60
    snap = None
    while snap is None or sum(d.published for d in snap.devices.values()) < 40:
        kind, _, data = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert kind != "error", data
        snap = data
    commands.put(("finish", 10.0))
    while True:
        kind, _, data = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert kind != "error", data
        if kind == "done":
            break
    thread.join(30)
    assert not thread.is_alive()
    assert data.undrained == 0
    assert all(d.boots >= 1 for d in data.devices.values())


def test_speed_runs_the_simulated_clock_faster(tmp_path: Path, mosquitto: Any) -> None:
    """At speed 10 a controller reports every 2 simulated seconds, its payloads stamped
    with the simulated clock, which runs far ahead of the wall clock of the accept log;
    the history is in simulated seconds."""
    import itertools

    from fieldmq.sim.scenario import Scenario, Step

    scenario = Scenario(name="t", steps=(Step(at=30.0, action="pass"),), duration=60.0,
                        speed=10.0)
    result = Simulation(SimulationConfig(
        state_dir=tmp_path, mix={"controller": 1}, seed=2, broker=mosquitto.url,
        scenario=scenario, drain_timeout=20.0)).run()
    assert result.audit.ok, result.audit.table()
    with sqlite3.connect(tmp_path / "received.db") as db:
        stamps = sorted(ts for (ts,) in db.execute(
            "SELECT payload_ts FROM received WHERE topic LIKE '%/data/telemetry'"))
    db.close()
    with sqlite3.connect(tmp_path / "accepted-0.db") as db:
        walls = sorted(t for (t,) in db.execute(
            "SELECT accepted_at FROM accepted WHERE kind = 'telemetry'"))
    db.close()
    assert len(stamps) == len(walls) >= 10
    assert {round(b - a, 3) for a, b in itertools.pairwise(stamps)} == {2.0}
    # 10x nominally; a loaded machine publishes late but never stamps late
    assert stamps[-1] - stamps[0] > 2 * (walls[-1] - walls[0])
    assert [label for _, label in result.history] == ["pass all"]
    assert result.history[0][0] >= 30.0
