"""The supervisor: start worker processes, restart the dead ones, stop them all.

``Supervisor(...).run()`` blocks in the main thread:

1. plans slots (:func:`~fieldmq.router.plan.plan`) and starts one process per slot
   with the ``spawn`` start method (``forkserver`` on request; never ``fork``);
2. waits on the processes' sentinels: a worker that exits while the router runs is
   restarted after a backoff (:class:`~fieldmq.router.restarts.RestartTracker`); a
   crash loop stops the router with exit status 3;
3. on SIGTERM/SIGINT (or :meth:`Supervisor.request_stop`) sends SIGTERM to every
   worker, waits ``shutdown_timeout`` (+ 5 s grace) for them, SIGKILLs stragglers and
   returns 0;
4. optionally serves ``/health`` and ``/metrics`` (merged per-worker metrics) and
   scales the elastic routes between ``min_workers`` and ``max_workers``.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..runtime.signals import StopSignals
from .metrics import render
from .plan import plan
from .restarts import RestartPolicy, RestartTracker
from .routes import Router
from .scaling import Autoscaler, ScalingPolicy
from .worker import WorkerSpec, worker_main

__all__ = ["EXIT_CRASH_LOOP", "RunSettings", "Supervisor"]

log = logging.getLogger("fieldmq.router")

EXIT_CRASH_LOOP = 3


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How to run a router (the ``fieldmq run`` options)."""

    brokers: tuple[str, ...] = ("mqtt://127.0.0.1:1883",)
    workers: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    client_prefix: str | None = None
    dead_letters: str = "fieldmq-dead-letters.db"
    dead_letter_topic: str | None = None
    receive_maximum: int = 100
    shutdown_timeout: float = 10.0
    username: str | None = None
    password: str | None = None
    start_method: Literal["spawn", "forkserver"] = "spawn"
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    scaling: ScalingPolicy | None = None
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    log_level: str = "INFO"
    log_json: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Slot:
    index: int
    routes: tuple[int, ...]
    tracker: RestartTracker
    proc: Any = None
    started: float = 0.0
    restart_at: float | None = None
    retired: bool = False
    restarts: int = 0


class Supervisor:
    """Run ``router`` (imported from ``app``, ``module:attribute``) in worker processes."""

    def __init__(self, *, app: str, router: Router, settings: RunSettings) -> None:
        if settings.start_method not in ("spawn", "forkserver"):
            raise ValueError("start_method must be 'spawn' or 'forkserver' (never fork: a "
                             "forked worker would share its parent's connections)")
        if not router.routes:
            raise ValueError(f"{app}: the router has no routes; register some with router.on()")
        self.app = app
        self.router = router
        self.settings = s = settings
        from .plan import needed_workers

        need = needed_workers(router.routes)
        scaling = s.scaling
        self.workers = s.workers if s.workers is not None else (
            scaling.min_workers if scaling else need)
        self._fixed = scaling.min_workers if scaling else self.workers
        if scaling is not None:
            self.workers = min(max(self.workers, scaling.min_workers), scaling.max_workers)
        self._plan = plan(router.routes, self.workers, fixed_slots=self._fixed)
        self._ctx = multiprocessing.get_context(s.start_method)
        self._events: Any = self._ctx.Queue()
        self._slots: dict[int, _Slot] = {}
        self._snapshots: dict[int, dict[str, Any]] = {}
        self._ready: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.crash_loop: str | None = None
        self._autoscaler = Autoscaler(scaling, self.workers) if scaling else None
        self.prefix = s.client_prefix or _default_prefix(router.name)
        self.http: Any = None

    # -- public -----------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("router: stopping (%s)", reason)
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def health(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            alive = {i: bool(sl.proc is not None and sl.proc.is_alive())
                     for i, sl in self._slots.items() if not sl.retired}
        dead = sorted(i for i, ok in alive.items() if not ok)
        if self.crash_loop or (alive and not any(alive.values())):
            status, code = "unhealthy", 503
        elif dead:
            status, code = "degraded", 200
        else:
            status, code = "healthy", 200
        reasons = [f"worker {i} is not running" for i in dead]
        if self.crash_loop:
            reasons.insert(0, self.crash_loop)
        with self._lock:
            ready = len(self._ready)
        return code, {"status": status, "reasons": reasons, "workers": len(alive),
                      "alive": len(alive) - len(dead), "ready": ready}

    def metrics(self) -> tuple[bytes, str]:
        with self._lock:
            alive = {i: bool(sl.proc is not None and sl.proc.is_alive())
                     for i, sl in self._slots.items() if not sl.retired}
            restarts = {i: sl.restarts for i, sl in self._slots.items()}
            text = render(dict(self._snapshots), alive=alive, restarts=restarts,
                          desired=self.workers)
        return text.encode(), "text/plain; version=0.0.4; charset=utf-8"

    def alive_pids(self) -> dict[int, int]:
        with self._lock:
            return {i: sl.proc.pid for i, sl in self._slots.items()
                    if sl.proc is not None and sl.proc.is_alive()}

    # -- processes --------------------------------------------------------------------
    def _spec(self, slot: _Slot) -> WorkerSpec:
        s = self.settings
        return WorkerSpec(
            app=self.app, slot=slot.index, routes=slot.routes,
            patterns=tuple(r.pattern.source for r in self.router.routes),
            brokers=s.brokers, client_prefix=self.prefix, dead_letters=s.dead_letters,
            receive_maximum=s.receive_maximum, shutdown_timeout=s.shutdown_timeout,
            username=s.username, password=s.password, dead_letter_topic=s.dead_letter_topic,
            sys_path=tuple(p for p in sys.path if p), log_level=s.log_level,
            log_json=s.log_json, env=dict(s.env),
        )

    def _start(self, slot: _Slot) -> None:
        proc = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(self._spec(slot), self._events),
            name=f"fieldmq-worker-{slot.index}", daemon=False,
        )
        proc.start()
        slot.proc, slot.started, slot.restart_at = proc, time.monotonic(), None
        log.info("router: worker %d started (pid %d)", slot.index, proc.pid)

    def _read_events(self) -> None:
        while True:
            try:
                item = self._events.get()
            except (EOFError, OSError, ValueError):
                return
            if item is None:
                return
            kind, slot, _pid, payload = item
            with self._lock:
                if kind == "ready":
                    self._ready.add(slot)
                elif kind == "stats":
                    self._snapshots[slot] = payload

    def wait_ready(self, timeout: float) -> bool:
        """Block until every slot's worker reported it is connected and subscribed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(i in self._ready for i, sl in self._slots.items() if not sl.retired) \
                        and self._slots:
                    return True
            self._stop.wait(0.02)
        return False

    def _on_exit(self, slot: _Slot, now: float) -> None:
        code = slot.proc.exitcode
        ran = now - slot.started
        with self._lock:
            self._ready.discard(slot.index)
        if slot.retired:
            log.info("router: worker %d retired (exit status %s)", slot.index, code)
            slot.proc = None
            return
        decision = slot.tracker.on_exit(now, ran, code)
        slot.proc = None
        if decision.restart:
            log.warning("router: worker %d died after %.1f s (%s)", slot.index, ran,
                        decision.reason)
            slot.restart_at = now + decision.delay
            slot.restarts += 1
        else:
            self.crash_loop = f"worker {slot.index}: {decision.reason}"
            log.critical("router: %s; not restarting it; stopping the router", self.crash_loop)
            self.request_stop("crash loop")

    def _scale(self, now: float, last: dict[str, float]) -> None:
        assert self._autoscaler is not None
        with self._lock:
            snaps = dict(self._snapshots)
        busy = sum(sn["busy"] for i, sn in snaps.items() if i in self._slots)
        count = sum(rs["count"] for sn in snaps.values() for rs in sn["routes"].values())
        total = sum(rs["sum"] for sn in snaps.values() for rs in sn["routes"].values())
        dt = now - last["t"]
        alive = max(1, len(self.alive_pids()))
        util = min(1.0, max(0.0, (busy - last["busy"]) / (dt * alive))) if dt > 0 else 0.0
        n = count - last["count"]
        latency = (total - last["sum"]) / n if n > 0 else None
        last.update(t=now, busy=busy, count=count, sum=total)
        want = self._autoscaler.observe(now, util, latency)
        if want == self.workers:
            return
        log.info("router: scaling from %d to %d workers (utilization %.0f%%)",
                 self.workers, want, util * 100)
        self.workers = want
        new_plan = plan(self.router.routes, want, fixed_slots=self._fixed)
        for i, routes in new_plan.items():
            if i not in self._slots or self._slots[i].retired:
                sl = _Slot(i, routes, RestartTracker(self.settings.restart))
                self._slots[i] = sl
                self._start(sl)
        for i, sl in self._slots.items():
            if i >= want and not sl.retired:
                sl.retired = True
                if sl.proc is not None and sl.proc.is_alive():
                    sl.proc.terminate()

    def run(self) -> int:
        """Run until stopped; return the exit status (0, or 3 after a crash loop)."""
        s = self.settings
        signals = StopSignals(lambda name: self.request_stop(name))
        signals.install()
        reader = threading.Thread(target=self._read_events, name="fieldmq-router-events",
                                  daemon=True)
        reader.start()
        if s.http_port is not None:
            from ..runtime.httpserver import HealthServer

            self.http = HealthServer(host=s.http_host, port=s.http_port, health=self.health,
                                     metrics=self.metrics, name="fieldmq-router-http")
            log.info("router: /health and /metrics on %s", self.http.url)
        try:
            for i, routes in self._plan.items():
                if not routes:
                    log.warning("router: worker slot %d has no route to serve; not started", i)
                    continue
                sl = _Slot(i, routes, RestartTracker(s.restart))
                self._slots[i] = sl
                self._start(sl)
            self._loop()
            return EXIT_CRASH_LOOP if self.crash_loop else 0
        finally:
            self._shutdown()
            signals.restore()
            self._events.put(None)
            reader.join(2.0)
            if self.http is not None:
                self.http.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _loop(self) -> None:
        scaling = self.settings.scaling
        last = {"t": time.monotonic(), "busy": 0.0, "count": 0.0, "sum": 0.0}
        next_scale = time.monotonic() + scaling.interval if scaling else None
        while not self._stop.is_set():
            now = time.monotonic()
            for sl in list(self._slots.values()):
                if sl.proc is not None and sl.proc.exitcode is not None:
                    self._on_exit(sl, now)
                if sl.proc is None and sl.restart_at is not None and now >= sl.restart_at \
                        and not self._stop.is_set():
                    self._start(sl)
            if self._stop.is_set():
                break
            if next_scale is not None and scaling is not None and now >= next_scale:
                self._scale(now, last)
                next_scale = now + scaling.interval
            timers = [sl.restart_at for sl in self._slots.values() if sl.restart_at is not None]
            if next_scale is not None:
                timers.append(next_scale)
            timeout = max(0.0, min(timers) - time.monotonic()) if timers else None
            waitables: list[Any] = [sl.proc.sentinel for sl in self._slots.values()
                                    if sl.proc is not None]
            waitables.append(self._wake_r)
            ready = multiprocessing.connection.wait(waitables, timeout)
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 64)
                except BlockingIOError:
                    pass

    def _shutdown(self) -> None:
        procs = [sl.proc for sl in self._slots.values() if sl.proc is not None]
        for p in procs:
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.settings.shutdown_timeout + 5.0
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                log.error("router: worker pid %d did not stop in time; killing it", p.pid)
                p.kill()
                p.join(5.0)
        log.info("router: all workers stopped")


def _default_prefix(name: str) -> str:
    from ..runtime.identity import client_id_for

    return client_id_for(name)

