"""One simulator process's share of the fleet: real durable clients driven by one
scheduler thread (a heap of next-due times, not a thread per device), the accept
log, and device kill/restart on command.

The coordinator (:mod:`.simulation`) talks to a worker through two queues, which
are ``queue.Queue`` for a worker in the coordinator's process and
``multiprocessing`` queues (spawn context) for a worker process:

* commands to the worker: ``("kill", Step)``, ``("restart", Step)``,
  ``("finish", drain_timeout)``, ``("abort", None)``;
* events from it: ``("snapshot", index, Snapshot)`` about twice a second,
  ``("done", index, Snapshot)`` at the end, ``("error", index, text)``.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..backoff import Backoff
from ..client.client import Client
from ..errors import FieldmqError, StoreFull
from ..runtime.codec import encode
from .acceptlog import AcceptLog
from .device import KIND_QOS, DeviceModel, telemetry_ts
from .fleet import DeviceSpec
from .profiles import Profile, get_profile
from .scenario import Step

__all__ = ["DeviceState", "Snapshot", "Worker", "WorkerConfig", "worker_main"]

log = logging.getLogger("fieldmq.sim.worker")

SNAPSHOT_INTERVAL = 0.5


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...
    def get_nowait(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker needs; picklable (a spawned process receives it)."""

    index: int
    devices: tuple[DeviceSpec, ...]
    brokers: dict[str, str]  # device group -> broker URL (a fault proxy or the broker)
    state_dir: str
    t0: float  # Unix time of the fleet's start: reading k is due at t0 + offset + k*interval
    topic_group: str = "fleet"
    client_prefix: str = "sim"
    anomalies: bool = True
    label_payload: bool = False
    rate: float = 1.0
    keepalive: float = 10.0
    max_backoff: float = 5.0
    log_level: int = logging.WARNING
    protocol: int = 5  # 4 (MQTT 3.1.1) sends message ids in the fieldmq envelope
    speed: float = 1.0  # simulated seconds per wall-clock second, from t0
    warmup: float = 0.0  # simulated seconds without anomalies at the start


@dataclass(slots=True)
class DeviceState:
    """What the progress display shows about one device."""

    up: bool = False
    connected: bool = False
    published: int = 0
    queued: int = 0
    inflight: int = 0
    reconnects: int = 0
    boots: int = 0
    rejected: int = 0
    errors: int = 0


@dataclass(slots=True)
class Snapshot:
    index: int
    at: float
    devices: dict[str, DeviceState] = field(default_factory=dict)
    recorded: int = 0
    labels: int = 0
    undrained: int = 0


class _Device:
    __slots__ = ("boots", "client", "closing", "gen", "model", "opening", "profile", "spec",
                 "state", "store", "wanted")

    def __init__(self, spec: DeviceSpec, model: DeviceModel, profile: Profile, store: Path):
        self.spec = spec
        self.model = model
        self.profile = profile
        self.store = store
        self.client: Client | None = None
        self.state = DeviceState()
        self.gen = 0  # bumps on each (re)start: stale heap entries are skipped
        self.boots = 0
        self.closing: Future[None] | None = None  # the killed client's close, if any
        self.opening = False  # a client is being opened on the pool
        self.wanted = True  # False after a kill: a client that opens then is closed again


class Worker:
    """Runs its devices until told to finish. ``run()`` blocks (call it on a thread
    or as a process's main)."""

    def __init__(self, config: WorkerConfig, commands: _Queue, events: _Queue) -> None:
        self.cfg = config
        self.commands = commands
        self.events = events
        state = Path(config.state_dir)
        self.accept = AcceptLog(state / f"accepted-{config.index}.db")
        self.devices: dict[str, _Device] = {}
        for spec in config.devices:
            profile = get_profile(spec.profile)
            if config.rate != 1.0:
                profile = profile.scaled(config.rate)
            model = DeviceModel(spec, topic_group=config.topic_group, anomalies=config.anomalies,
                                label_payload=config.label_payload, profile=profile,
                                warmup=config.warmup)
            self.devices[spec.device_id] = _Device(
                spec, model, profile, state / "stores" / f"{spec.device_id}.db")
        (state / "stores").mkdir(parents=True, exist_ok=True)
        self._heap: list[tuple[float, int, str, str, int]] = []
        self._n = 0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fieldmq-sim-io")
        self._started: queue.SimpleQueue[tuple[_Device, Client | BaseException]] = (
            queue.SimpleQueue())
        self._closing: list[Future[None]] = []
        self._mono0 = 0.0
        self.labels = 0

    # -- clock ------------------------------------------------------------------------
    # Simulated time starts at t0 and runs ``speed`` times as fast as the wall clock; the
    # payloads and labels carry it. The accept log and the MQTT clients keep wall time.
    def _now(self) -> float:
        return self.cfg.t0 + (time.time() - self.cfg.t0) * self.cfg.speed

    def _mono(self, sim: float) -> float:
        return self._mono0 + (sim - self.cfg.t0) / self.cfg.speed

    def _push(self, due: float, kind: str, dev: _Device) -> None:
        self._n += 1
        heapq.heappush(self._heap, (due, self._n, kind, dev.spec.device_id, dev.gen))

    # -- device lifecycle -----------------------------------------------------------------
    def _open(self, dev: _Device) -> None:
        try:
            client = Client(
                client_id=f"{self.cfg.client_prefix}-{dev.spec.device_id}",
                brokers=[self.cfg.brokers[dev.spec.group]],
                store=dev.store,
                keepalive=self.cfg.keepalive,
                backoff=Backoff(initial=min(0.5, self.cfg.max_backoff),
                                maximum=self.cfg.max_backoff),
                protocol=5 if self.cfg.protocol == 5 else 4,
                envelope=self.cfg.protocol != 5,
            )
        except BaseException as exc:  # reported on the scheduler thread
            self._started.put((dev, exc))
            return
        self._started.put((dev, client))

    def _install(self, dev: _Device, client: Client) -> None:
        """On the scheduler thread: the device's client is open; it boots."""
        dev.client = client
        dev.state.up = True
        dev.boots += 1
        dev.state.boots = dev.boots
        dev.gen += 1
        now = self._now()
        p = dev.profile
        tick = max(0, int((now - self.cfg.t0 - dev.spec.offset) // p.interval) + 1)
        tick = max(tick, dev.model.next_tick)
        dev.model.skip_to(tick)
        self._publish(dev, "event", dev.model.event_topic("boot"),
                      dev.model.boot_event(now, dev.boots))
        self._publish_status(dev)
        self._push(self._mono(telemetry_ts(dev.spec, p, self.cfg.t0, tick)), "telemetry", dev)
        self._push(time.monotonic() + p.status_interval / self.cfg.speed, "status", dev)

    def _kill(self, dev: _Device) -> None:
        client, dev.client = dev.client, None
        dev.wanted = False
        dev.state.up = dev.state.connected = False
        if client is not None:
            # As a crash: no time for in-flight messages (they stay in the store), no
            # DISCONNECT (the broker publishes the device's last will, if it has one).
            dev.closing = self._pool.submit(client.close, 0.0, clean=False)
            self._closing.append(dev.closing)

    def _opened(self, dev: _Device, result: Client | BaseException) -> Client | None:
        """A client finished opening: the client if the device is still wanted up; one
        killed while it was opening is closed again (as the kill would have)."""
        dev.opening = False
        if isinstance(result, BaseException):
            raise result
        if dev.wanted:
            return result
        dev.client = result
        self._kill(dev)
        return None

    def _start(self, dev: _Device) -> None:
        """Bring a device up: nothing to do while its client is opening or open."""
        dev.wanted = dev.state.up = True
        if dev.client is None and not dev.opening:
            self._reopen(dev)

    def _reopen(self, dev: _Device) -> None:
        """Open a device, once a killed client of it has closed (that client holds the
        store's lock until then: opening earlier races it and fails)."""
        dev.state.up = dev.opening = True
        closing, dev.closing = dev.closing, None
        if closing is None:
            self._pool.submit(self._open, dev)
        else:
            closing.add_done_callback(lambda _f: self._submit_open(dev))

    def _submit_open(self, dev: _Device) -> None:
        try:
            self._pool.submit(self._open, dev)
        except RuntimeError:  # the worker is shutting down: nothing to reopen for
            log.debug("device %s not reopened: shutting down", dev.spec.device_id)

    # -- publishing -----------------------------------------------------------------------
    def _publish(self, dev: _Device, kind: str, topic: str, payload: dict[str, Any]) -> None:
        client = dev.client
        if client is None:
            return
        qos, priority = KIND_QOS[kind]
        try:
            handle = client.publish(topic, encode(payload), qos=qos, priority=priority)
        except StoreFull:
            dev.state.rejected += 1
            return
        except (FieldmqError, RuntimeError) as exc:
            dev.state.errors += 1
            log.error("device %s: publish failed: %s", dev.spec.device_id, exc)
            return
        self.accept.record(handle.message_id, dev.spec.device_id, handle.seq, topic, kind,
                           time.time())
        dev.state.published += 1

    def _publish_status(self, dev: _Device) -> None:
        client = dev.client
        if client is None:
            return
        s = client.stats()
        payload = {
            "device": dev.spec.device_id, "ts": round(self._now(), 3),
            "queue_depth": s["queued"], "inflight": s["inflight"],
            "connected": s["connected"], "reconnects": s["reconnects"],
            "boots": dev.boots, "oldest_age": s.get("oldest_age"),
        }
        self._publish(dev, "status", dev.model.status_topic, payload)

    def _telemetry(self, dev: _Device) -> None:
        p = dev.profile
        tick = dev.model.next_tick
        ts = telemetry_ts(dev.spec, p, self.cfg.t0, tick)
        reading = dev.model.reading(tick, ts)
        self._publish(dev, "telemetry", dev.model.telemetry_topic, reading.payload)
        if reading.alert is not None:
            self._publish(dev, "event", dev.model.event_topic("alert"), reading.alert)
        if reading.label is not None:
            self.accept.label(reading.label)
            self.labels += 1
        self._push(self._mono(telemetry_ts(dev.spec, p, self.cfg.t0, tick + 1)), "telemetry",
                   dev)

    # -- the loop -------------------------------------------------------------------------
    def _snapshot(self) -> Snapshot:
        snap = Snapshot(self.cfg.index, time.time(), recorded=self.accept.recorded,
                        labels=self.labels)
        for name, dev in self.devices.items():
            st = dev.state
            if dev.client is not None:
                s = dev.client.stats()
                st.connected = bool(s["connected"])
                st.queued = int(s["queued"])
                st.inflight = int(s["inflight"])
                st.reconnects = int(s["reconnects"])
            snap.devices[name] = DeviceState(**{k: getattr(st, k) for k in st.__slots__})
        return snap

    def _select(self, step: Step) -> list[_Device]:
        return [d for d in self.devices.values() if step.selects(d.spec.device_id, d.spec.group)]

    def _command(self, cmd: str, arg: Any) -> bool:
        """Apply one command; False when the run must end."""
        if cmd == "kill":
            for dev in self._select(arg):
                self._kill(dev)
        elif cmd == "restart":
            for dev in self._select(arg):
                self._start(dev)
        elif cmd in ("finish", "abort"):
            return False
        return True

    def run(self) -> None:
        """Open every device, publish on schedule, then finish (see ``_finish``)."""
        self._mono0 = time.monotonic() - (time.time() - self.cfg.t0)
        drain = 0.0
        for dev in self.devices.values():
            self._reopen(dev)
        next_snapshot = 0.0
        try:
            while True:
                while True:
                    try:
                        dev, result = self._started.get_nowait()
                    except queue.Empty:
                        break
                    client = self._opened(dev, result)
                    if client is not None:
                        self._install(dev, client)
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0][0] <= now:
                    _, _, kind, name, gen = heapq.heappop(heap)
                    dev = self.devices[name]
                    if dev.client is None or gen != dev.gen:
                        continue  # the device was killed (and maybe restarted) since
                    if kind == "telemetry":
                        self._telemetry(dev)
                    else:
                        self._publish_status(dev)
                        self._push(now + dev.profile.status_interval / self.cfg.speed,
                                   "status", dev)
                if self.accept.due():
                    self.accept.commit()
                if now >= next_snapshot:
                    self.events.put(("snapshot", self.cfg.index, self._snapshot()))
                    next_snapshot = now + SNAPSHOT_INTERVAL
                wait = 0.05 if not heap else min(0.05, max(0.0, heap[0][0] - time.monotonic()))
                try:
                    cmd, arg = self.commands.get(timeout=wait) if wait > 0 else (
                        self.commands.get_nowait())
                except queue.Empty:
                    continue
                if not self._command(cmd, arg):
                    drain = float(arg or 0.0) if cmd == "finish" else -1.0
                    break
            self._finish(drain)
        finally:
            self._shutdown()

    def _finish(self, drain: float) -> None:
        """End the run: restart killed devices (their stores hold messages), wait up to
        ``drain`` seconds until every client delivered everything, record the final
        statistics and labels, and report ``done``."""
        end = self._now()
        if drain >= 0:
            for dev in self.devices.values():
                self._start(dev)
        deadline = time.monotonic() + max(0.0, drain)
        pending = [d for d in self.devices.values() if d.opening]
        while pending and time.monotonic() < deadline + 10.0:
            try:
                dev, result = self._started.get(timeout=0.1)
            except queue.Empty:
                continue
            client = self._opened(dev, result)
            if dev in pending:
                pending.remove(dev)
            if client is None:
                continue
            dev.client = client
            dev.boots += 1
            dev.state.boots = dev.boots
            self._publish(dev, "event", dev.model.event_topic("boot"),
                          dev.model.boot_event(self._now(), dev.boots))
        for dev in self.devices.values():
            label = dev.model.finish(end)
            if label is not None:
                self.accept.label(label)
                self.labels += 1
        self.accept.commit()
        undrained = 0
        for dev in self.devices.values():
            if dev.client is None:
                continue
            left = max(0.0, deadline - time.monotonic())
            if drain >= 0 and not dev.client.drain(timeout=left):
                undrained += 1
            self.accept.device_stats(dev.spec.device_id, dev.client.stats())
        snap = self._snapshot()
        snap.undrained = undrained
        self.events.put(("done", self.cfg.index, snap))

    def _shutdown(self) -> None:
        for dev in self.devices.values():
            if dev.client is not None:
                self._closing.append(self._pool.submit(dev.client.close, 1.0))
                dev.client = None
        for fut in self._closing:
            fut.result()
        self._pool.shutdown(wait=True)
        while True:  # clients opened while shutting down
            try:
                _, result = self._started.get_nowait()
            except queue.Empty:
                break
            if isinstance(result, Client):
                result.close(0.0)
        self.accept.close()


def worker_main(config: WorkerConfig, commands: _Queue, events: _Queue) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s [worker {config.index}]: %(message)s"))
    root = logging.getLogger("fieldmq")
    root.handlers[:] = [handler]
    root.setLevel(config.log_level)
    try:
        Worker(config, commands, events).run()
    except BaseException:
        events.put(("error", config.index, traceback.format_exc()))
        raise


def run_thread(config: WorkerConfig, commands: _Queue, events: _Queue) -> threading.Thread:
    """Run a worker on a named thread of this process."""

    def target() -> None:
        try:
            Worker(config, commands, events).run()
        except BaseException:
            events.put(("error", config.index, traceback.format_exc()))

    thread = threading.Thread(target=target, name=f"fieldmq-sim-worker-{config.index}",
                              daemon=True)
    thread.start()
    return thread
