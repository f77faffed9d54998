"""Run a simulated fleet: the broker (when the simulator runs it), one fault proxy
per device group the scenario touches, the audit subscriber, worker threads or
processes, the scenario's timeline, then drain, audit and report.

.. code-block:: python

    from fieldmq.sim import Simulation, SimulationConfig, load_scenario

    config = SimulationConfig(state_dir="run1", devices=20, seed=42,
                              scenario=load_scenario("outage"))
    result = Simulation(config).run()
    print(result.audit.table())
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from ..client.config import parse_broker_url
from ..testing.broker import MosquittoBroker
from ..testing.faultproxy import FaultProxy, FaultSchedule
from .acceptlog import read_accepted, read_device_stats, read_labels
from .audit import AuditReport, audit_logs
from .fleet import DeviceSpec, build_fleet, split
from .receiver import AuditSubscriber, read_received
from .scenario import (
    BROKER_ACTIONS,
    NETWORK_ACTIONS,
    Scenario,
    Step,
    check_groups,
)
from .worker import Snapshot, WorkerConfig, run_thread, worker_main

__all__ = ["FleetStatus", "Simulation", "SimulationConfig", "SimulationError",
           "SimulationResult", "audit_state_dir"]

log = logging.getLogger("fieldmq.sim")

# fieldmq.Client waits on its socket with select(), which fails for descriptors >= 1024
# (FD_SETSIZE); each client holds about 9 (socket, wake pipe, SQLite + WAL + shm,
# journal, lock), so one process stays below that with at most this many devices.
MAX_DEVICES_PER_PROCESS = 100

_OUR_FILES = ("accepted-*.db*", "received.db*", "labels.jsonl", "summary.json")
_OUR_DIRS = ("stores", "audit", "broker")


class ManagedBroker(Protocol):
    """A broker the simulator starts, stops and kills (``MosquittoBroker`` by default;
    ``SimulationConfig.broker_factory`` supplies another, e.g. the demo's amqtt)."""

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start(self, timeout: float = 10.0) -> object: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def kill(self, timeout: float = 10.0) -> None: ...

    def close(self) -> None: ...


class SimulationError(RuntimeError):
    """The simulation could not run (bad setup, a worker died)."""


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """How to run a fleet. ``broker=None`` runs a private mosquitto in
    ``<state_dir>/broker`` (needed for scenarios that stop or kill the broker)."""

    state_dir: str | Path
    devices: int | None = None
    mix: Mapping[str, int] | None = None
    seed: int = 0
    duration: float | None = None
    scenario: Scenario | None = None
    broker: str | None = None
    broker_factory: Callable[[Path], ManagedBroker] | None = None
    protocol: int = 5
    keep_broker: bool = False  # leave the private broker running after run() (caller stops it)
    # Called with the broker URL once it runs and before any device starts, e.g. to
    # subscribe consumers that must not miss the first messages.
    on_broker_ready: Callable[[str], None] | None = None
    processes: int | None = None
    topic_group: str = "fleet"
    client_prefix: str = "sim"
    anomalies: bool = True
    label_payload: bool = False
    rate: float = 1.0
    drain_timeout: float = 60.0
    late_after: float = 10.0
    keepalive: float = 10.0
    max_backoff: float = 5.0
    overwrite: bool = False
    worker_log_level: int = logging.WARNING
    # Simulated seconds per wall-clock second, and the anomaly-free start (simulated
    # seconds); None: the scenario's (1 and 0 without one).
    speed: float | None = None
    warmup: float | None = None

    def __post_init__(self) -> None:
        if self.processes is not None and self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes!r}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be > 0 s, got {self.duration!r}")
        if not self.max_backoff > 0:
            raise ValueError(f"max_backoff must be > 0 s, got {self.max_backoff!r}")
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate!r}")
        if self.speed is not None and not (self.speed > 0 and self.speed < float("inf")):
            raise ValueError(f"speed must be a number > 0, got {self.speed!r}")
        if self.warmup is not None and not (0 <= self.warmup < self.run_length):
            raise ValueError(f"warmup must be >= 0 s and shorter than the run, "
                             f"got {self.warmup!r}")
        if self.protocol not in (4, 5):
            raise ValueError(f"protocol must be 4 (MQTT 3.1.1) or 5, got {self.protocol!r}")
        if self.scenario is not None and self.scenario.needs_broker and self.broker:
            raise ValueError(
                f"scenario {self.scenario.name!r} stops or kills the broker, so the simulator "
                "must run it: leave out --broker (a private mosquitto is started)"
            )

    @property
    def run_length(self) -> float:
        if self.duration is not None:
            return self.duration
        if self.scenario is not None and self.scenario.duration is not None:
            return self.scenario.duration
        return 60.0

    @property
    def clock_speed(self) -> float:
        if self.speed is not None:
            return self.speed
        return self.scenario.speed if self.scenario is not None else 1.0

    @property
    def anomaly_warmup(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return self.scenario.warmup if self.scenario is not None else 0.0


@dataclass(slots=True)
class FleetStatus:
    """What the progress display shows, refreshed about twice a second."""

    phase: str
    elapsed: float
    duration: float
    devices: int
    up: int = 0
    connected: int = 0
    published: int = 0
    received: int = 0
    queued: int = 0
    inflight: int = 0
    reconnects: int = 0
    boots: int = 0
    faults: list[str] = field(default_factory=list)
    max_queue: tuple[str, int] | None = None


@dataclass(slots=True)
class SimulationResult:
    audit: AuditReport
    status: FleetStatus
    history: list[tuple[float, str]]
    labels: int
    undrained: int
    state_dir: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit": self.audit.as_dict(),
            "history": [{"at": round(at, 3), "step": label} for at, label in self.history],
            "labels": self.labels,
            "undrained_devices": self.undrained,
            "published": self.status.published,
            "received": self.status.received,
            "reconnects": self.status.reconnects,
            "state_dir": str(self.state_dir),
        }


def _via(proxy: FaultProxy, url: str) -> str:
    """The proxy's URL with the broker URL's credentials (a broker may require a login)."""
    target = parse_broker_url(url)
    if not target.username:
        return proxy.url
    user = quote(target.username, safe="")
    if target.password:
        user += ":" + quote(target.password, safe="")
    return f"mqtt://{user}@127.0.0.1:{proxy.port}"


def audit_state_dir(state_dir: str | Path, *, late_after: float = 10.0) -> AuditReport:
    """Audit the logs a simulation left in ``state_dir``."""
    root = Path(state_dir)
    accepted = sorted(root.glob("accepted-*.db"))
    if not accepted:
        raise FileNotFoundError(f"no accept logs (accepted-*.db) in {root}")
    received = root / "received.db"
    stats = read_device_stats(accepted)
    dropped = {dev: sum(int(v) for k, v in (s.get("dropped") or {}).items() if k != "offline")
               for dev, s in stats.items()}
    return audit_logs(read_accepted(accepted), read_received([received]),
                      dropped=dropped, late_after=late_after)


def _prepare(root: Path, overwrite: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    ours = [p for pattern in _OUR_FILES for p in root.glob(pattern)]
    ours += [root / d for d in _OUR_DIRS if (root / d).exists()]
    if ours and not overwrite:
        raise SimulationError(
            f"state directory {root} holds a previous run ({ours[0].name}, ...); "
            "use another directory or --overwrite to delete that run"
        )
    for p in ours:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


class Simulation:
    """One run of a fleet. ``run(progress)`` blocks until the audit is done."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.fleet: list[DeviceSpec] = build_fleet(
            seed=config.seed, devices=config.devices, mix=config.mix)
        self.scenario = config.scenario or Scenario(name="steady")
        if self.scenario.end > config.run_length:
            raise ValueError(
                f"scenario {self.scenario.name!r} has a step at {self.scenario.end:g} s, "
                f"after the end of the run ({config.run_length:g} s); give a longer --duration"
            )
        if config.anomaly_warmup >= config.run_length:
            raise ValueError(
                f"the anomaly warm-up ({config.anomaly_warmup:g} s) does not end before the "
                f"run ({config.run_length:g} s); give a longer --duration or a shorter --warmup"
            )
        per = -(-len(self.fleet) // MAX_DEVICES_PER_PROCESS)
        if config.processes is None:
            self.processes = per
        elif len(self.fleet) / config.processes > MAX_DEVICES_PER_PROCESS:
            raise ValueError(
                f"{len(self.fleet)} devices in {config.processes} process(es) is more than "
                f"{MAX_DEVICES_PER_PROCESS} per process: each fieldmq.Client holds ~9 file "
                "descriptors and waits on them with select(), which cannot go past 1024; "
                f"use --processes {per} or more"
            )
        else:
            self.processes = config.processes
        self.groups = sorted({d.group for d in self.fleet})
        for step in check_groups(self.scenario, self.groups):
            log.warning("scenario step %r at %gs targets no device of this fleet; skipped",
                        step.label, step.at)
        self.broker: ManagedBroker | None = None
        self.proxies: dict[str, FaultProxy] = {}
        self.faults: dict[str, str] = {}
        self.history: list[tuple[float, str]] = []
        self._commands: list[Any] = []
        self._events: Any = None
        self._procs: list[Any] = []
        self._snapshots: dict[int, Snapshot] = {}
        self._done: dict[int, Snapshot] = {}
        self._errors: list[str] = []
        self._t_start = 0.0
        self._lock = threading.Lock()
        self._abort = threading.Event()

    # -- scenario actions ----------------------------------------------------------------
    def _targets(self, step: Step) -> list[FaultProxy]:
        if step.group == "all":
            return list(self.proxies.values())
        proxy = self.proxies.get(step.group)
        return [proxy] if proxy else []

    def _action(self, step: Step) -> Callable[[], None]:
        def run() -> None:
            a = step.action
            if a in BROKER_ACTIONS:
                assert self.broker is not None
                if a == "broker-stop":
                    self.broker.stop()
                elif a == "broker-kill":
                    self.broker.kill()
                elif a == "broker-restart":
                    self.broker.stop()
                    self.broker.start()
                else:
                    self.broker.start()
                key = "broker"
            elif a in NETWORK_ACTIONS:
                for proxy in self._targets(step):
                    proxy.set_mode(a, step.value)
                key = f"net:{step.group}"
                if step.group == "all":
                    for k in [k for k in self.faults if k.startswith("net:")]:
                        del self.faults[k]
            else:
                cmd = "kill" if a == "device-kill" else "restart"
                for q in self._commands:
                    q.put((cmd, step))
                key = f"dev:{step.group}:{','.join(step.devices)}"
            with self._lock:
                if a in ("pass", "broker-start", "broker-restart", "device-restart"):
                    self.faults.pop(key, None)
                else:
                    self.faults[key] = step.label
                self.history.append((self._elapsed(), step.label))
            log.info("scenario: %s", step.label)

        run.__name__ = step.label
        return run

    def _elapsed(self) -> float:
        """Simulated seconds since the start of the run."""
        return (time.monotonic() - self._t_start) * self.config.clock_speed

    # -- setup and teardown -----------------------------------------------------------------
    def _start_network(self) -> tuple[str, dict[str, str]]:
        cfg = self.config
        if cfg.broker is None:
            factory = cfg.broker_factory or (lambda d: MosquittoBroker(workdir=d))
            self.broker = factory(self.state_dir / "broker")
            self.broker.start()
            url = self.broker.url
        else:
            url = cfg.broker
        groups = self.scenario.network_groups
        wanted = self.groups if "all" in groups else sorted(groups & set(self.groups))
        if wanted:
            target = parse_broker_url(url)
            for g in wanted:
                self.proxies[g] = FaultProxy((target.host, target.port)).start()
        brokers = {g: _via(self.proxies[g], url) if g in self.proxies else url
                   for g in self.groups}
        return url, brokers

    def _start_workers(self, brokers: dict[str, str]) -> None:
        cfg = self.config
        parts = split(self.fleet, self.processes)
        t0 = time.time()
        configs = [WorkerConfig(
            index=i, devices=tuple(p), brokers=brokers, state_dir=str(self.state_dir), t0=t0,
            topic_group=cfg.topic_group, client_prefix=cfg.client_prefix,
            anomalies=cfg.anomalies, label_payload=cfg.label_payload, rate=cfg.rate,
            keepalive=cfg.keepalive, max_backoff=cfg.max_backoff, log_level=cfg.worker_log_level,
            protocol=cfg.protocol, speed=cfg.clock_speed, warmup=cfg.anomaly_warmup,
        ) for i, p in enumerate(parts)]
        if self.processes == 1:
            self._events = queue.Queue()
            for wc in configs:
                q: queue.Queue[Any] = queue.Queue()
                self._commands.append(q)
                self._procs.append(run_thread(wc, q, self._events))
        else:
            ctx = multiprocessing.get_context("spawn")
            self._events = ctx.Queue()
            for wc in configs:
                mq = ctx.Queue()
                self._commands.append(mq)
                proc = ctx.Process(target=worker_main, args=(wc, mq, self._events),
                                   name=f"fieldmq-sim-worker-{wc.index}", daemon=True)
                proc.start()
                self._procs.append(proc)

    def _pump(self, timeout: float) -> None:
        """Take worker events for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                kind, index, data = self._events.get(timeout=max(0.0, left)) if left > 0 else (
                    self._events.get_nowait())
            except queue.Empty:
                for i, proc in enumerate(self._procs):
                    if i not in self._done and not proc.is_alive():
                        code = getattr(proc, "exitcode", None)
                        raise SimulationError(
                            f"simulator worker {i} ended before finishing (exit code {code}); "
                            "a script that uses --processes must guard its entry point with "
                            "if __name__ == '__main__'" if code else
                            f"simulator worker {i} ended before finishing") from None
                return
            if kind == "snapshot":
                self._snapshots[index] = data
            elif kind == "done":
                self._snapshots[index] = data
                self._done[index] = data
            else:
                self._errors.append(str(data))
                raise SimulationError(f"simulator worker {index} failed:\n{data}")

    def status(self, phase: str, received: int = 0) -> FleetStatus:
        st = FleetStatus(phase=phase, elapsed=self._elapsed(),
                         duration=self.config.run_length, devices=len(self.fleet),
                         received=received)
        top: tuple[str, int] | None = None
        for snap in self._snapshots.values():
            for name, d in snap.devices.items():
                st.up += d.up
                st.connected += d.connected
                st.published += d.published
                st.queued += d.queued
                st.inflight += d.inflight
                st.reconnects += d.reconnects
                st.boots += d.boots
                if d.queued and (top is None or d.queued > top[1]):
                    top = (name, d.queued)
        st.max_queue = top
        with self._lock:
            st.faults = sorted(self.faults.values())
        return st

    def device_states(self) -> dict[str, Any]:
        """The latest known state of each device client (queued, inflight, connected,
        reconnects...), as the simulator itself sees it: live even while the broker is
        down and the devices cannot report."""
        out: dict[str, Any] = {}
        for snap in list(self._snapshots.values()):
            out.update(snap.devices)
        return out

    def stop(self) -> None:
        """Ask a running ``run()`` to end early (it still drains and audits)."""
        self._abort.set()

    def run(self, progress: Callable[[FleetStatus], None] | None = None) -> SimulationResult:
        cfg = self.config
        _prepare(self.state_dir, cfg.overwrite)
        report = progress or (lambda _status: None)
        subscriber: AuditSubscriber | None = None
        schedule: FaultSchedule | None = None
        try:
            url, brokers = self._start_network()
            if cfg.on_broker_ready is not None:
                cfg.on_broker_ready(url)
            subscriber = AuditSubscriber(
                broker=url, log_path=self.state_dir / "received.db",
                store=self.state_dir / "audit" / "store.db", topic_group=cfg.topic_group,
                client_id=f"{cfg.client_prefix}-audit", protocol=cfg.protocol).start()
            self._t_start = time.monotonic()
            self._start_workers(brokers)
            speed = cfg.clock_speed
            schedule = FaultSchedule([(s.at / speed, self._action(s))
                                      for s in self.scenario.steps],
                                     name="fieldmq-sim-scenario").start()
            end = self._t_start + cfg.run_length / speed
            while time.monotonic() < end and not self._abort.is_set():
                self._pump(min(0.5, max(0.0, end - time.monotonic())))
                report(self.status("running", subscriber.received))
                if schedule.errors:
                    raise SimulationError(f"scenario step failed: {schedule.errors[0]!r}")
            schedule.close()
            self._restore()
            return self._finish(subscriber, report)
        finally:
            self._teardown(subscriber, schedule)

    def _restore(self) -> None:
        """After the timeline: a healthy network and broker, so everything can drain."""
        for proxy in self.proxies.values():
            proxy.passthrough()
        if self.broker is not None and not self.broker.running:
            self.broker.start()
        with self._lock:
            self.faults.clear()

    def _finish(self, subscriber: AuditSubscriber,
                report: Callable[[FleetStatus], None]) -> SimulationResult:
        cfg = self.config
        for q in self._commands:
            q.put(("finish", cfg.drain_timeout))
        deadline = time.monotonic() + cfg.drain_timeout + 30.0
        while len(self._done) < len(self._commands):
            if time.monotonic() > deadline:
                raise SimulationError("simulator workers did not finish in time")
            self._pump(0.5)
            report(self.status("draining", subscriber.received))
        recorded = sum(s.recorded for s in self._done.values())
        # Wait until the audit subscriber has everything the devices delivered.
        deadline = time.monotonic() + cfg.drain_timeout
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = subscriber.log.committed
            if n != last:
                last, quiet_since = n, time.monotonic()
            elif n >= recorded and time.monotonic() - quiet_since >= 1.0:
                break
            report(self.status("draining", subscriber.received))
            time.sleep(0.1)
        status = self.status("audit", subscriber.received)
        subscriber.close()
        audit = audit_state_dir(self.state_dir, late_after=cfg.late_after)
        labels = read_labels(sorted(self.state_dir.glob("accepted-*.db")))
        with open(self.state_dir / "labels.jsonl", "w", encoding="utf-8") as fh:
            for label in labels:
                fh.write(json.dumps(label.as_dict()) + "\n")
        result = SimulationResult(
            audit=audit, status=status, history=list(self.history), labels=len(labels),
            undrained=sum(s.undrained for s in self._done.values()), state_dir=self.state_dir)
        (self.state_dir / "summary.json").write_text(json.dumps(result.as_dict(), indent=1))
        return result

    def _teardown(self, subscriber: AuditSubscriber | None,
                  schedule: FaultSchedule | None) -> None:
        if schedule is not None:
            try:
                schedule.close()
            except Exception:  # already reported, or the run is failing anyway
                log.debug("scenario error at teardown", exc_info=True)
        for q in self._commands:
            q.put(("abort", None))
        deadline = time.monotonic() + 30.0
        while any(p.is_alive() for p in self._procs) and time.monotonic() < deadline:
            try:  # keep reading, or a worker process blocks at exit on a full pipe
                self._events.get(timeout=0.1)
            except queue.Empty:
                pass
        for proc in self._procs:
            if isinstance(proc, multiprocessing.process.BaseProcess):
                if proc.is_alive():
                    log.error("simulator worker %s did not stop; killing it", proc.name)
                    proc.kill()
                proc.join(5.0)
                proc.close()
            else:
                proc.join(5.0)
        for q in self._commands:
            if hasattr(q, "close"):
                q.close()
                q.join_thread()
        if self._events is not None and hasattr(self._events, "close"):
            self._events.close()
            self._events.join_thread()
        if subscriber is not None:
            subscriber.close()
        for proxy in self.proxies.values():
            proxy.close()
        if self.broker is not None and not self.config.keep_broker:
            self.broker.stop()
            self.broker = None
