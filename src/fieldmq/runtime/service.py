"""``fieldmq.Service``: run an MQTT process as a well-behaved service.

``start()`` does, in order: take the single-instance lock, open the durable
client (with a retained ``offline`` last will on ``<group>/<node>/status/online``),
publish ``online`` there (retained), start ``/health`` and ``/metrics`` if a port is
configured, start the service thread, install SIGTERM/SIGINT handlers, and tell
systemd ``READY=1``. The service is ready when it can accept messages, connected
or not: the client delivers them when the broker is reachable.

The service thread (``fieldmq-service-<app>``) tracks the connection, feeds the
systemd watchdog only while the client's network loop (and, if asked, the
application's own loop) makes progress, publishes heartbeats, samples disk and
temperature, and keeps the status file that ``fieldmq status`` reads.

``stop()`` (on SIGTERM, SIGINT, ``request_stop()`` or the end of ``run()``) sends
``STOPPING=1``, refuses new messages, publishes ``offline`` (retained), gives queued
and in-flight messages ``drain_timeout`` seconds to be acknowledged, and closes
the client: whatever is not acknowledged stays in the store for the next start.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..client.client import Client
from ..client.config import Will
from ..client.handle import PublishHandle
from ..client.message import Message
from ..errors import ConfigError, FieldmqError
from . import codec
from .config import ServiceConfig
from .convention import DeviceTopics, build_topic
from .health import UNHEALTHY, HealthInputs, HealthReport, Reason, evaluate
from .httpserver import HealthServer
from .lock import AlreadyRunning, InstanceLock
from .logs import configure as configure_logs
from .metrics import AckTimer, ServiceMetrics, metrics_available
from .notify import Notifier, watchdog_interval
from .signals import StopSignals
from .state import default_state_dir, status_path, write_status
from .sysinfo import BoardProbe
from .watchdog import WatchdogPolicy, feed_period

__all__ = ["EXIT_ALREADY_RUNNING", "EXIT_CONFIG", "Service"]

log = logging.getLogger("fieldmq.runtime")

EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: another instance holds the lock
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is invalid

ActionCallback = Callable[[Any, Message], Any]


class Service:
    """A long-running MQTT process: lock, client, status, health, systemd.

    ``config`` is a :class:`ServiceConfig` (see :meth:`from_args` to read it from
    a TOML file, ``FIELDMQ_*`` variables and flags). ``probe`` and ``notifier`` are
    seams for boards and supervisors that differ from the defaults.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        probe: BoardProbe | None = None,
        notifier: Notifier | None = None,
        env: Mapping[str, str] | None = None,
        handle_signals: bool = True,
    ) -> None:
        if not isinstance(config, ServiceConfig):
            raise TypeError(f"config must be a ServiceConfig, got {type(config).__name__}")
        self.config = config
        self._env = os.environ if env is None else env
        self.state_dir = Path(config.state_dir or default_state_dir(config.app, env=self._env))
        self.client_id = config.resolved_client_id
        self.topics = DeviceTopics(config.topic_group, config.topic_node)
        self._probe = probe or BoardProbe(disk_path=self.state_dir)
        self._notifier = notifier or Notifier(env=self._env)
        self._watchdog_sec = watchdog_interval(self._env)
        self.watchdog_policy = WatchdogPolicy.for_watchdog(
            self._watchdog_sec,
            max_loop_age=config.watchdog.max_loop_age,
            beat_timeout=config.watchdog.beat_timeout,
        )
        self._signals = StopSignals(self.request_stop) if handle_signals else None
        self._lock = InstanceLock(app=config.app, state_dir=self.state_dir, worker=config.worker,
                                  extra={"client_id": self.client_id})
        self._state = "new"
        self._state_lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._thread_done = threading.Event()
        self._client: Client | None = None
        self._http: HealthServer | None = None
        self._metrics: ServiceMetrics | None = None
        self._ack_timer: AckTimer | None = None
        self._thread: threading.Thread | None = None
        self._actions: list[tuple[str, ActionCallback]] = []
        self._started_mono = 0.0
        self._started_wall = 0.0
        self._offline_since: float | None = None
        self._last_beat: float | None = None
        self._board: dict[str, Any] = {}
        self._last_error: str | None = None
        self.stop_reason: str | None = None

    # -- construction from the command line --------------------------------------------
    @classmethod
    def from_args(
        cls, app: str | None = None, argv: list[str] | None = None, **kwargs: Any
    ) -> Service:
        """A service configured from ``argv`` (default ``sys.argv[1:]``), ``FIELDMQ_*``
        variables and the TOML file they name; ``app`` is the default app name.

        Meant for a program's entry point: an invalid value is printed with its key
        and source, and the program exits with :data:`EXIT_CONFIG` (78).
        """
        from .config import parse_argv

        try:
            config = parse_argv(app, argv, env=kwargs.get("env"))
        except ConfigError as exc:
            print(f"fieldmq: invalid configuration: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CONFIG) from exc
        return cls(config, **kwargs)

    # -- properties ----------------------------------------------------------------------
    @property
    def app(self) -> str:
        return self.config.app

    @property
    def state(self) -> str:
        """``new``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    @property
    def client(self) -> Client:
        """The durable client (after ``start()``)."""
        if self._client is None:
            raise RuntimeError("the service is not started; call start() or run() first")
        return self._client

    @property
    def http_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of /health and /metrics, if served."""
        return self._http.url if self._http else None

    @property
    def store_path(self) -> Path | None:
        store = self.config.store
        if store == "memory":
            return None
        if store == "auto":
            return self.state_dir / (self._lock.path.stem + ".outbox.db")
        return Path(store).expanduser()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Service:
        """Lock, connect, announce ``online`` and become ready (see the module doc).
        Raises :class:`AlreadyRunning` when another instance holds the lock."""
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError(f"a Service can be started once; this one is {self._state}")
            self._lock.acquire()
            try:
                self._open()
            except BaseException:
                self._close_parts()
                self._lock.release()
                self._state = "stopped"
                raise
            self._state = "running"
        log.info("%s started as %s (pid %d); state in %s", self.app, self.client_id,
                 os.getpid(), self.state_dir)
        self._notifier.ready(f"running as {self.client_id}")
        return self

    def _open(self) -> None:
        cfg = self.config
        self._started_mono = time.monotonic()
        self._started_wall = time.time()
        self._offline_since = self._started_mono
        will = Will(topic=self.topics.online, payload=b"offline", qos=1, retain=True)
        try:
            self._client = Client(
                client_id=self.client_id, brokers=cfg.brokers, store=self.store_path,
                will=will, keepalive=cfg.keepalive, tls=cfg.tls(), protocol=5 if cfg.protocol == 5
                else 4, username=cfg.username, password=cfg.password, limits=cfg.limits(),
            )
        except (ValueError, TypeError, OSError) as exc:
            if isinstance(exc, FieldmqError):
                raise
            raise ConfigError(f"cannot create the client: {exc}", key="brokers",
                              source=cfg.source_of("brokers")) from exc
        self._client.publish(self.topics.online, b"online", qos=1, retain=True, priority=10)
        for name, callback in self._actions:
            self._subscribe_action(name, callback)
        if cfg.http.port is not None:
            if metrics_available():
                self._metrics = ServiceMetrics(
                    info={"app": self.app, "client_id": self.client_id,
                          "group": self.topics.group, "node": self.topics.device},
                    snapshot=self._metrics_snapshot,
                )
                self._ack_timer = AckTimer(self._metrics.ack_latency.observe,
                                           name=f"fieldmq-acktimer-{self.app}")
            else:
                log.warning("prometheus-client is not installed: /metrics is disabled "
                            "(pip install 'fieldmq[metrics]')")
            self._http = HealthServer(
                host=cfg.http.host, port=cfg.http.port, health=self._health_http,
                metrics=self._metrics.render if self._metrics else None,
                name=f"fieldmq-http-{self.app}",
            )
            log.info("serving /health and /metrics at %s", self._http.url)
        self._sample_board()
        self._write_status()
        self._thread = threading.Thread(target=self._loop, name=f"fieldmq-service-{self.app}",
                                        daemon=True)
        self._thread.start()
        if self._signals is not None:
            self._signals.install()

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the service to stop; ``wait()`` returns and ``run()`` stops it.
        Safe from signal handlers and other threads."""
        if not self._stop_requested.is_set():
            self.stop_reason = reason
            self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is requested (True) or ``timeout`` passes (False).
        A main loop reads ``while not svc.wait(5): ...``."""
        return self._stop_requested.wait(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop gracefully; True if every message was acknowledged within
        ``timeout`` (default ``drain_timeout``). Idempotent."""
        with self._state_lock:
            if self._state != "running":
                return self._state == "stopped"
            self._state = "stopping"
        self.request_stop(self.stop_reason or "stop()")
        log.info("%s stopping (%s)", self.app, self.stop_reason)
        self._notifier.stopping("stopping: delivering in-flight messages")
        timeout = self.config.drain_timeout if timeout is None else timeout
        drained = False
        client = self._client
        if client is not None:
            try:
                client.publish(self.topics.online, b"offline", qos=1, retain=True, priority=10)
                drained = client.drain(timeout)
                left = client.stats()
                if drained:
                    log.info("all messages acknowledged")
                else:
                    log.warning("%d messages not acknowledged within %.1fs stay in the store "
                                "for the next start", left["queued"] + left["inflight"], timeout)
            except Exception:
                log.exception("error while draining")
        self._thread_done.wait(5.0)
        self._close_parts()
        with self._state_lock:
            self._state = "stopped"
        self._write_status()
        self._lock.release()
        if self._signals is not None:
            self._signals.restore()
        log.info("%s stopped", self.app)
        return drained

    def _close_parts(self) -> None:
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join(10.0)
        for part in (self._http, self._ack_timer):
            if part is not None:
                part.close()
        if self._client is not None:
            try:
                self._client.close(timeout=1.0)
            except Exception:
                log.exception("error while closing the client")
        self._notifier.close()

    def run(self, main: Callable[[Service], Any] | None = None, *,
            configure_logging: bool = True) -> int:
        """Start, run ``main(self)`` (or wait for SIGTERM), stop; return an exit code:
        0 after a clean stop, 1 if ``main`` raised, :data:`EXIT_ALREADY_RUNNING` (75)
        when another instance holds the lock, :data:`EXIT_CONFIG` (78) for bad settings.
        """
        if configure_logging:
            configure_logs(self.config.log_level, json_lines=bool(self.config.log_json))
        try:
            self.start()
        except AlreadyRunning as exc:
            log.error("%s", exc)
            return EXIT_ALREADY_RUNNING
        except ConfigError as exc:
            log.error("invalid configuration: %s (key %s from %s)", exc, exc.key, exc.source)
            return EXIT_CONFIG
        except FieldmqError as exc:
            log.error("cannot start: %s", exc)
            return 1
        code = 0
        try:
            if main is None:
                self.wait()
            else:
                main(self)
        except KeyboardInterrupt:
            self.request_stop("KeyboardInterrupt")
        except Exception:
            log.exception("the service's main function failed")
            self.request_stop("main() raised")
            code = 1
        finally:
            self.stop()
        return code

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- messages ----------------------------------------------------------------------
    def publish(self, name: str, value: Any, *, kind: str = "data", qos: int = 1,
                retain: bool = False, priority: int = 5, ttl: float | None = None
                ) -> PublishHandle:
        """Publish ``value`` (encoded with :mod:`~fieldmq.runtime.codec`) to
        ``<group>/<node>/<kind>/<name>``. Raises ``RuntimeError`` once stopping."""
        if self._state != "running" or self._stop_requested.is_set():
            raise RuntimeError(f"the service is {self._state}; it accepts no new messages")
        topic = build_topic(self.topics.group, self.topics.device, kind, name)
        handle = self.client.publish(topic, codec.encode(value), qos=qos, retain=retain,
                                     priority=priority, ttl=ttl)
        if self._ack_timer is not None and qos > 0:
            self._ack_timer.track(handle)
        return handle

    def on_action(self, name: str, callback: ActionCallback | None = None) -> Any:
        """Call ``callback(value, message)`` for ``<group>/<node>/action/<name>``
        (``name`` may be ``#``). Usable as a decorator; works before and after start."""
        def register(cb: ActionCallback) -> ActionCallback:
            self._actions.append((name, cb))
            if self._client is not None and self._state == "running":
                self._subscribe_action(name, cb)
            return cb

        return register if callback is None else register(callback)

    def _subscribe_action(self, name: str, cb: ActionCallback) -> None:
        topic = self.topics.actions() if name == "#" else self.topics.action(name)
        self.client.subscribe(topic, lambda msg: cb(codec.decode(msg.payload), msg), qos=1)

    def beat(self) -> None:
        """Tell the watchdog the application's own loop is alive (used when
        ``watchdog.beat_timeout`` is set)."""
        self._last_beat = time.monotonic()

    # -- health --------------------------------------------------------------------------
    def _stats(self) -> dict[str, Any] | None:
        client = self._client
        if client is None or self._state not in ("running", "stopping"):
            return None
        try:
            return client.stats()
        except RuntimeError:
            return None

    def _loop_stall(self, stats: Mapping[str, Any] | None) -> float | None:
        age = None if stats is None else stats.get("loop_age")
        if age is not None and age > self.watchdog_policy.max_loop_age:
            return float(age)
        return None

    def health(self) -> HealthReport:
        """The current :class:`HealthReport`."""
        stats = self._stats()
        if stats is None:
            return HealthReport(status=UNHEALTHY, reasons=(
                Reason("service", UNHEALTHY, f"the service is {self._state}"),))
        now = time.monotonic()
        offline = None if self._offline_since is None else now - self._offline_since
        queued = int(stats.get("queued", 0)) + int(stats.get("inflight", 0))
        disk = self._board.get("disk")
        report = evaluate(HealthInputs(
            connected=bool(stats.get("connected")),
            offline_for=offline,
            queued=queued,
            max_messages=self.config.max_messages,
            store_bytes=stats.get("queued_bytes"),
            max_bytes=self.config.max_bytes,
            oldest_age=stats.get("oldest_age"),
            loop_stalled_for=self._loop_stall(stats),
            disk_free=disk.free if disk else None,
            disk_total=disk.total if disk else None,
            temperature_c=self._board.get("temperature_c"),
            throttled=self._board.get("throttled"),
            store_error=stats.get("store_error"),
        ), self.config.health)
        if self._state == "stopping":
            reasons = (*report.reasons, Reason("service", UNHEALTHY, "the service is stopping"))
            return HealthReport(status=UNHEALTHY, reasons=reasons, checks=report.checks)
        return report

    def _health_http(self) -> tuple[int, dict[str, Any]]:
        report = self.health()
        body = report.as_dict()
        body.update(app=self.app, client_id=self.client_id,
                    uptime=round(time.monotonic() - self._started_mono, 1))
        return report.http_status, body

    def _metrics_snapshot(self) -> dict[str, Any] | None:
        stats = self._stats()
        if stats is None:
            return None
        disk = self._board.get("disk")
        stats.update(uptime=time.monotonic() - self._started_mono, health=self.health(),
                     temperature_c=self._board.get("temperature_c"),
                     throttled=self._board.get("throttled"),
                     disk_free=disk.free if disk else None)
        return stats

    # -- the service thread ------------------------------------------------------------
    def _sample_board(self) -> None:
        self._board = {"disk": self._probe.disk(), "temperature_c": self._probe.temperature(),
                       "throttled": self._probe.throttled()}

    def _loop(self) -> None:
        cfg = self.config
        now = time.monotonic()
        feed_every = feed_period(self._watchdog_sec) if self._watchdog_sec else None
        next_feed = now
        next_heartbeat = now + cfg.heartbeat_interval if cfg.heartbeat_interval else None
        next_probe = now + cfg.probe_interval
        next_status = now + 1.0
        was_connected = False
        starving: str | None = None
        try:
            while not self._stop_requested.wait(0.1):
                now = time.monotonic()
                client = self._client
                if client is None:
                    break
                connected = client.connected
                if connected != was_connected:
                    was_connected = connected
                    self._on_connection_change(connected)
                if feed_every is not None and now >= next_feed:
                    next_feed = now + feed_every
                    starving = self._feed_watchdog(starving)
                if next_heartbeat is not None and now >= next_heartbeat:
                    next_heartbeat = now + cfg.heartbeat_interval
                    if connected:
                        self._heartbeat()
                if now >= next_probe:
                    next_probe = now + cfg.probe_interval
                    self._sample_board()
                if now >= next_status:
                    next_status = now + max(1.0, min(cfg.probe_interval, 5.0))
                    self._write_status()
        except Exception:
            log.exception("the service thread failed; the watchdog is no longer fed")
            self._last_error = "service thread failed"
        finally:
            self._thread_done.set()

    def _on_connection_change(self, connected: bool) -> None:
        stats = self._stats() or {}
        if connected:
            self._offline_since = None
            log.info("connected to %s", stats.get("broker"))
            self._notifier.status(f"connected to {stats.get('broker')}")
        else:
            self._offline_since = time.monotonic()
            self._last_error = stats.get("last_error") or self._last_error
            log.warning("disconnected from the broker: %s", stats.get("last_error"))
            self._notifier.status(f"offline: {stats.get('last_error') or 'connecting'}")
        self._write_status()

    def _feed_watchdog(self, starving: str | None) -> str | None:
        stats = self._stats()
        loop_age = None if stats is None else stats.get("loop_age")
        beat_age = None if self._last_beat is None else time.monotonic() - self._last_beat
        problem = self.watchdog_policy.problem(loop_age=loop_age, beat_age=beat_age)
        if problem is None:
            self._notifier.watchdog()
            if starving:
                log.info("progress again; feeding the watchdog")
            return None
        if problem != starving:
            log.error("not feeding the systemd watchdog: %s", problem)
            self._notifier.status(f"stalled: {problem}")
        return problem

    def _heartbeat(self) -> None:
        stats = self._stats()
        if stats is None:
            return
        beat = {
            "uptime": round(time.monotonic() - self._started_mono, 1),
            "queued": stats.get("queued", 0) + stats.get("inflight", 0),
            "reconnects": stats.get("reconnects", 0),
            "oldest_age": stats.get("oldest_age"),
            "health": self.health().status,
            "pid": os.getpid(),
            "ts": round(time.time(), 3),
        }
        try:
            self.client.publish(self.topics.heartbeat, codec.encode(beat), qos=0, priority=1)
        except Exception as exc:  # a heartbeat must never take the service down
            log.warning("heartbeat not published: %s", exc)

    def _write_status(self) -> None:
        stats = self._stats() or {}
        record = {
            "app": self.app, "worker": self.config.worker, "pid": os.getpid(),
            "client_id": self.client_id, "state": self._state,
            "running": self._state in ("running", "stopping"),
            "started": self._started_wall, "updated": time.time(),
            "connected": stats.get("connected"),
            "queued": (stats.get("queued", 0) + stats.get("inflight", 0)) if stats else None,
            "reconnects": stats.get("reconnects"),
            "health": self.health().status if stats else None,
            "last_error": stats.get("last_error") or stats.get("store_error") or self._last_error,
            "http": self.http_url,
        }
        try:
            write_status(status_path(self._lock.path), record)
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc)

    def __repr__(self) -> str:
        return f"Service(app={self.app!r}, client_id={self.client_id!r}, state={self._state!r})"
