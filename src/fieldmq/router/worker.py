"""One worker process: a connection per route it serves, at-least-once processing.

Started by the supervisor with the ``spawn`` (or ``forkserver``) start method, so it
never inherits a connection, a thread or a store from its parent. For each route of
its slot it opens a :class:`fieldmq.Client` with a stable client id
``<prefix>-s<slot>-r<route>`` (a restarted worker takes over its session and gets its
unacknowledged messages again), ``ack="manual"``, ``persistent_session=True`` and
``receive_maximum`` (the prefetch bound), and subscribes to the route's filter
(``$share/<group>/...`` for shared routes).

A message is acknowledged only after :class:`~fieldmq.router.dispatch.Dispatcher`
handled, skipped or dead-lettered it. A message that matches a more specific route
(precedence) is acknowledged and left to that route's own subscription.

SIGTERM: stop taking messages (those already prefetched stay unacknowledged in the
session), let in-flight handlers finish for up to ``shutdown_timeout`` seconds, send
the acknowledgements, disconnect cleanly and exit. SIGINT is ignored: the supervisor
owns the shutdown (a Ctrl-C reaches the whole process group).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from ..client.client import Client
from ..client.message import Message
from .deadletter import DeadLetterStore
from .dispatch import Dispatcher, Outcome, Result
from .loader import load_router
from .message import RoutedMessage
from .metrics import WorkerStats
from .routes import Route, Router

__all__ = ["EXIT_CONFIG", "WorkerSpec", "worker_main"]

log = logging.getLogger("fieldmq.router")

EXIT_CONFIG = 78  # EX_CONFIG: the app or its routes differ from what the supervisor planned


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs; picklable (it crosses the spawn boundary)."""

    app: str
    slot: int
    routes: tuple[int, ...]
    patterns: tuple[str, ...]
    brokers: tuple[str, ...]
    client_prefix: str
    dead_letters: str
    receive_maximum: int = 100
    shutdown_timeout: float = 10.0
    username: str | None = None
    password: str | None = None
    dead_letter_topic: str | None = None
    stats_interval: float = 1.0
    sys_path: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_json: bool = False
    env: dict[str, str] = field(default_factory=dict)


class Worker:
    """The in-process part of a worker, separate from signals and process exit so it
    can be driven directly."""

    def __init__(self, spec: WorkerSpec, router: Router, events: Any) -> None:
        self.spec = spec
        self.router = router
        self.events = events
        self.stats = WorkerStats()
        self.stop = threading.Event()
        # One flag per route connection, each written only by that connection's callback
        # thread (no lock per message); drain() waits on _idle, notified once stopping.
        self._busy: dict[int, bool] = {}
        self._idle = threading.Condition()
        self._clients: list[Client] = []
        self._dlq = DeadLetterStore(spec.dead_letters)
        self._dlq_client: Client | None = None
        self.dispatcher = Dispatcher(
            dead_letter=self._dead_letter,
            wait=lambda s: not self.stop.wait(s),
            observe=lambda route, res: self.stats.record(
                route.pattern.source, res.outcome._value_, res.seconds),
        )
        self.name = f"{spec.client_prefix}-s{spec.slot}"

    def _dead_letter(self, message: RoutedMessage, exc: BaseException, text: str) -> None:
        self._dlq.put(
            topic=message.topic, payload=message.payload, qos=message.qos,
            retain=message.retain, message_id=message.message_id, route=message.route,
            params=dict(message.params), attempts=message.attempt, error=text, worker=self.name,
        )
        if self._dlq_client is not None and self.spec.dead_letter_topic:
            self._dlq_client.publish(
                f"{self.spec.dead_letter_topic}/{message.topic}", message.payload, qos=1,
                user_properties={"route": message.route, "error": f"{type(exc).__name__}: {exc}",
                                 "attempts": str(message.attempt)},
            )

    def _on_message(self, route: Route, msg: Message) -> None:
        busy, key, stop = self._busy, route.index, self.stop
        busy[key] = True  # before looking at stop: drain() sees this message or it sees stop
        try:
            if stop.is_set():
                return  # not acknowledged: stays in the session, redelivered at the next start
            found = self.router.lookup(msg.topic)
            if found is None or found[0] is not route:
                msg.ack()  # a more specific route's own subscription receives this message
                return
            rm = RoutedMessage(
                topic=msg.topic, payload=msg.payload, qos=msg.qos, retain=msg.retain,
                message_id=msg.message_id, duplicate=msg.duplicate, params=found[1],
                user_properties=msg.user_properties,
            )
            result: Result = self.dispatcher.process(route, rm)
            if result.outcome is not Outcome.ABANDONED:
                msg.ack()
        finally:
            busy[key] = False
            if stop.is_set():
                with self._idle:
                    self._idle.notify_all()

    def start(self) -> None:
        s = self.spec
        routes = self.router.routes
        for m in self.router.middleware:
            m.before_worker_boot(self)
        if s.dead_letter_topic:
            self._dlq_client = Client(
                client_id=f"{self.name}-dlq", brokers=s.brokers, username=s.username,
                password=s.password,
            )
        for index in s.routes:
            route = routes[index]
            client = Client(
                client_id=f"{self.name}-r{index}", brokers=s.brokers, ack="manual",
                persistent_session=True, receive_maximum=s.receive_maximum,
                username=s.username, password=s.password,
            )
            self._clients.append(client)
            self._busy[index] = False  # every key exists before messages flow

            def callback(msg: Message, route: Route = route) -> None:
                self._on_message(route, msg)

            client.subscribe(route.subscription, callback, qos=route.qos)
        for client in self._clients:
            while not client.wait_connected(1.0):
                if self.stop.is_set():
                    return
                log.warning("worker %s: waiting for the broker (%s)", self.name,
                            client.stats().get("last_error"))
            # Ready means subscribed: a message published after the supervisor reports
            # ready reaches the group (SubscribeFailed, a refusal, ends the worker).
            while True:
                try:
                    client.wait_subscribed(1.0)
                    break
                except TimeoutError:
                    if self.stop.is_set():
                        return
                    log.warning("worker %s: waiting for the broker to confirm the "
                                "subscriptions", self.name)

    def drain(self) -> bool:
        """Wait for in-flight handlers (up to the shutdown timeout); True if all ended."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(self._busy.values()),
                                       self.spec.shutdown_timeout)

    def close(self) -> None:
        for client in self._clients:
            client.close(timeout=2.0)
        if self._dlq_client is not None:
            self._dlq_client.close(timeout=self.spec.shutdown_timeout)
        for m in self.router.middleware:
            try:
                m.after_worker_shutdown(self)
            except Exception:
                log.exception("middleware %r after_worker_shutdown failed", m)
        self.dispatcher.close()
        self._dlq.close()


def _configure_logging(spec: WorkerSpec) -> None:
    from ..runtime.logs import configure

    configure(spec.log_level, json_lines=spec.log_json)


def worker_main(spec: WorkerSpec, events: Any) -> None:
    """Entry point of the worker process (``multiprocessing`` target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for path in reversed(spec.sys_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.update(spec.env)
    os.environ["FIELDMQ_ROUTER_WORKER"] = str(spec.slot)
    _configure_logging(spec)
    router = load_router(spec.app)
    patterns = tuple(r.pattern.source for r in router.routes)
    if patterns != spec.patterns:
        log.error("worker %d: the routes of %s changed since the supervisor loaded them; "
                  "restart the router", spec.slot, spec.app)
        sys.exit(EXIT_CONFIG)
    worker = Worker(spec, router, events)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    pid = os.getpid()
    worker.start()
    events.put(("ready", spec.slot, pid, None))
    log.info("worker %s (pid %d) serving %s", worker.name, pid,
             ", ".join(router.routes[i].subscription for i in spec.routes))
    while not worker.stop.wait(spec.stats_interval):
        events.put(("stats", spec.slot, pid, worker.stats.snapshot()))
    finished = worker.drain()
    if not finished:
        log.warning("worker %s: in-flight handlers did not finish within %.1f s; their "
                    "messages stay unacknowledged and will be redelivered", worker.name,
                    spec.shutdown_timeout)
    events.put(("stats", spec.slot, pid, worker.stats.snapshot()))
    if finished:
        worker.close()
    try:
        events.close()
        events.join_thread()
    except (AttributeError, OSError, ValueError):
        pass
    logging.shutdown()
    os._exit(0)

