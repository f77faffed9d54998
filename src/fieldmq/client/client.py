"""``fieldmq.Client``: a durable MQTT publisher/subscriber.

See ``docs/client.md`` for the guarantees. In short: ``publish()`` writes the
message to the local store before it returns (it survives SIGKILL at once and a
power cut within ``fsync_interval``), the network thread sends it when a broker
is reachable, and it is deleted only when the broker acknowledged it.
"""

from __future__ import annotations

import logging
import os
import queue as _queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ..backoff import Backoff
from ..clock import Clock
from ..errors import ForkError, SubscribeFailed
from ..ratelimit import RateLimit
from ..store.base import Entry
from ..store.memory import MemoryBackend
from ..store.queue import Durability, DurableQueue
from ..store.sqlite import SQLiteBackend
from ..topics import matches, validate_filter
from .checks import (
    MAX_PAYLOAD,
    check_priority,
    check_qos,
    check_ttl,
    encode_props,
    plain_pairs,
    to_bytes,
    topic_bytes,
)
from .config import TLS, ConnectionSettings, Limits, Will, parse_broker_url
from .connection import NetLoop
from .handle import DROPPED, BatchHandle, PublishHandle
from .inbound import Unrouted
from .message import Message

__all__ = ["Client"]

log = logging.getLogger("fieldmq.client")

Payload = bytes | bytearray | memoryview | str
Callback = Callable[[Message], Any]
# Put in the inbox by subscribe() to have held messages looked at again.
_RELEASE = Message(topic="", payload=b"")

_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()
_ABANDONED: list[object] = []  # the parent's objects, kept alive (never closed) in a child


def _after_fork_in_child() -> None:
    for client in list(_LIVE):
        client._forked_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A durable MQTT client. Keyword-only; see ``docs/client.md`` for every setting.

    ``store`` is a file path (created if missing) or ``None`` for an in-memory
    store that survives nothing. The client starts connecting at construction;
    ``publish()`` works at once, connected or not.
    """

    def __init__(
        self,
        *,
        client_id: str,
        brokers: Sequence[str] | str = ("mqtt://127.0.0.1:1883",),
        store: str | os.PathLike[str] | None = None,
        protocol: Literal[4, 5] = 5,
        keepalive: float = 30.0,
        tls: TLS | None = None,
        username: str | None = None,
        password: str | None = None,
        will: Will | None = None,
        limits: Limits | None = None,
        backoff: Backoff | None = None,
        durability: Durability = "batched",
        fsync_interval: float = 0.005,
        fsync_helper: bool = True,
        persistent_session: bool = False,
        session_expiry: int = 86400,
        window: int = 1000,
        connect_timeout: float = 10.0,
        envelope: bool = False,
        message_ids: bool = True,
        fork: Literal["reopen", "error"] = "reopen",
        ack: Literal["auto", "after_callback", "manual"] = "auto",
        receive_maximum: int | None = None,
        rate_limit: RateLimit | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ValueError(f"client_id must be a non-empty str, got {client_id!r}")
        if len(client_id.encode()) > 65535:
            raise ValueError("client_id is longer than 65535 bytes")
        if isinstance(brokers, str):
            brokers = [brokers]
        parsed = tuple(parse_broker_url(b) for b in brokers)
        if not parsed:
            raise ValueError("brokers must list at least one broker URL")
        if protocol not in (4, 5):
            raise ValueError(f"protocol must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got {protocol!r}")
        if not 0 < keepalive <= 65535:
            raise ValueError(f"keepalive must be in (0, 65535] seconds, got {keepalive!r}")
        if not 1 <= window <= 65000:
            raise ValueError(f"window must be between 1 and 65000, got {window!r}")
        if fork not in ("reopen", "error"):
            raise ValueError(f"fork must be 'reopen' or 'error', got {fork!r}")
        if ack not in ("auto", "after_callback", "manual"):
            raise ValueError(f"ack must be 'auto', 'after_callback' or 'manual', got {ack!r}")
        if receive_maximum is not None and not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be in 1..65535, got {receive_maximum!r}")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(f"rate_limit must be a fieldmq.RateLimit, got {rate_limit!r}")
        if tls is not None and not isinstance(tls, TLS):
            raise TypeError(f"tls must be a fieldmq.TLS, got {type(tls).__name__}")
        if will is not None and not isinstance(will, Will):
            raise TypeError(f"will must be a fieldmq.Will, got {type(will).__name__}")
        self.client_id = client_id
        self._store_path = Path(store) if store is not None else None
        self._limits = limits or Limits()
        self._fork_policy = fork
        self._clock = clock
        self._durability: Durability = durability
        self._fsync_interval = fsync_interval
        self._fsync_helper = bool(fsync_helper)
        self._settings = ConnectionSettings(
            client_id=client_id,
            brokers=parsed,
            keepalive=float(keepalive),
            protocol=protocol,
            tls=tls,
            username=username,
            password=password,
            will=will,
            persistent_session=persistent_session,
            session_expiry=int(session_expiry),
            backoff=backoff or Backoff(),
            window=window,
            connect_timeout=connect_timeout,
            envelope=envelope,
            message_ids=message_ids,
            ack_mode=ack,
            receive_maximum=receive_maximum,
            rate_limit=rate_limit,
        )
        self._subs: dict[str, tuple[int, list[Callback]]] = {}
        self._subs_lock = threading.Lock()
        # Messages that arrived before a subscription with a callback for them (a
        # persistent session's backlog arrives right after CONNACK): held, not dropped.
        self._unrouted: Unrouted[Message] = Unrouted(lambda m: m.topic)
        self._dropped: Counter[str] = Counter()
        self._state = "open"
        self._forked_from: int | None = None
        self._start(self._store_path, client_id)
        _LIVE.add(self)

    # -- lifecycle ---------------------------------------------------------------------
    def _start(self, store_path: Path | None, client_id: str) -> None:
        backend: SQLiteBackend | MemoryBackend
        backend = SQLiteBackend(store_path) if store_path is not None else MemoryBackend()
        self._queue = DurableQueue(
            backend,
            clock=self._clock,
            max_messages=self._limits.max_messages,
            max_bytes=self._limits.max_bytes,
            durability=self._durability,
            fsync_interval=self._fsync_interval,
            fsync_helper=self._fsync_helper,
            name=client_id,
        ).open()
        if self._queue.corrupt_moved_to:
            log.error("client %s: the store was corrupt and was moved aside to %s",
                      client_id, self._queue.corrupt_moved_to)
        self._inbox: _queue.SimpleQueue[list[Message] | None] = _queue.SimpleQueue()
        self._net = NetLoop(
            self._settings if client_id == self._settings.client_id else _with_id(
                self._settings, client_id),
            self._queue,
            self._inbox.put,
            self._subscription_list,
            client_id,
        )
        self._queue.on_ready = self._net.on_ready
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name=f"fieldmq-callbacks-{client_id}", daemon=True
        )
        self._dispatcher.start()
        self._net.start()

    def start(self) -> Client:
        """The client starts at construction; kept for symmetry, returns ``self``."""
        self._check_open()
        return self

    def close(self, timeout: float = 2.0, *, clean: bool = True) -> None:
        """Give in-flight messages up to ``timeout`` seconds to be acknowledged, send a
        clean DISCONNECT (no last will), stop the threads and close the store.
        Unacknowledged messages stay in the store for the next run. Idempotent.

        ``clean=False`` vanishes as a crash would (for simulations and tests): no
        DISCONNECT, so the broker publishes the last will; stored messages are kept."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._forked_from is not None and not hasattr(self, "_queue"):
            return
        self._net.stop(timeout, clean=clean)
        self._inbox.put(None)
        if self._dispatcher is not threading.current_thread():
            self._dispatcher.join(5.0)
        self._queue.close()

    def __enter__(self) -> Client:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError("this Client is closed; create a new one")
        if self._forked_from is not None and not hasattr(self, "_queue"):
            self._reopen_in_child()

    # -- fork --------------------------------------------------------------------------------
    def _forked_child(self) -> None:
        """Runs in the child right after fork(): forget the parent's resources."""
        if self._state != "open":
            return
        self._forked_from = self._forked_from or 0
        _ABANDONED.extend([self._queue, self._net, self._inbox, self._dispatcher])
        self._queue.abandon()
        self._net.abandon()
        del self._queue

    def _reopen_in_child(self) -> None:
        pid = os.getpid()
        if self._fork_policy == "error":
            raise ForkError(
                f"Client {self.client_id!r} was created before fork() and cannot be used in "
                "the child process; create the client in the child (e.g. in Celery's "
                "worker_process_init) or pass fork='reopen'"
            )
        path = self._store_path
        child_path = path.with_name(f"{path.stem}.fork-{pid}{path.suffix}") if path else None
        child_id = f"{self.client_id}-{pid}"
        log.info("client %s: forked into %d; reopening as %s with store %s",
                 self.client_id, pid, child_id, child_path)
        self._forked_from = pid
        self._start(child_path, child_id)

    # -- publishing --------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: Payload | None = b"",
        *,
        qos: int = 1,
        retain: bool = False,
        priority: int = 5,
        ttl: float | None = None,
        user_properties: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> PublishHandle:
        """Store the message durably and return its handle. Never drops silently.

        Raises ``ValueError``/``TypeError`` for bad arguments, :class:`~fieldmq.StoreFull`
        when the limits are reached and nothing of lower or equal priority can be
        evicted, :class:`~fieldmq.StoreError` when the disk fails.
        """
        if self._state != "open" or self._forked_from is not None:
            self._check_open()
        topic_b = topic_bytes(topic)
        data = payload if type(payload) is bytes else to_bytes(payload)
        if len(data) > MAX_PAYLOAD:
            raise ValueError(f"payload is {len(data)} bytes; MQTT allows at most {MAX_PAYLOAD}")
        check_qos(qos)
        check_priority(priority)
        ttl_s = check_ttl(ttl)
        props = encode_props(user_properties)
        q = self._queue
        handle = PublishHandle(q, "")
        if qos == 0 and not self._net.connected and self._limits.qos0_offline == "drop":
            self._dropped["offline"] += 1
            handle.settle(DROPPED, "offline")
            return handle
        e = q.put(topic, topic_b, data, qos, bool(retain), priority, ttl_s, props, handle)
        handle.seq = e.seq
        handle.message_id = f"{q.uid}-{e.seq}"
        return handle

    def publish_many(
        self,
        messages: Iterable[tuple[str, Payload]] | Iterable[Mapping[str, Any]],
        *,
        qos: int = 1,
        retain: bool = False,
        priority: int = 5,
        ttl: float | None = None,
    ) -> BatchHandle:
        """Store many messages with one write; returns one :class:`BatchHandle`.

        Items are ``(topic, payload)`` pairs or mappings with ``topic``, ``payload`` and
        optionally ``qos``, ``retain``, ``priority``, ``ttl``. Every item is validated
        before any is stored: a bad item raises and nothing of the batch is kept.
        """
        self._check_open()
        check_qos(qos)
        check_priority(priority)
        ttl_d = check_ttl(ttl)
        q = self._queue
        msgs = messages if type(messages) is list else list(messages)
        plain = plain_pairs(msgs) if msgs else None
        if plain is not None:  # (topic, payload) pairs that need no conversion
            topics, payloads, total = plain
            batch = BatchHandle(q, "", q.next_seq, len(topics))
            entries = q.put_batch(topics, payloads, total, qos, bool(retain), priority, ttl_d,
                                  batch)
            return self._batch_done(batch, entries)
        items: list[tuple[str, bytes, bytes, int, bool, int, float | None, bytes | None]] = []
        for n, item in enumerate(msgs):
            try:
                if type(item) is not tuple and isinstance(item, Mapping):
                    topic = item["topic"]
                    payload = item.get("payload", b"")
                    i_qos = check_qos(item.get("qos", qos))
                    i_retain = bool(item.get("retain", retain))
                    i_prio = check_priority(item.get("priority", priority))
                    i_ttl = check_ttl(item.get("ttl", ttl_d))
                else:
                    topic, payload = item
                    i_qos, i_retain, i_prio, i_ttl = qos, retain, priority, ttl_d
                topic_b = topic_bytes(topic)
                data = payload if type(payload) is bytes else to_bytes(payload)
                if len(data) > MAX_PAYLOAD:
                    raise ValueError(f"payload is {len(data)} bytes; MQTT allows {MAX_PAYLOAD}")
            except (KeyError, ValueError, TypeError) as exc:
                raise type(exc)(f"publish_many item {n}: {exc}") from exc
            items.append((topic, topic_b, data, i_qos, i_retain, i_prio, i_ttl, None))
        batch = BatchHandle(q, "", q.next_seq, len(items))
        if not items:
            batch.settle_empty()
            return batch
        return self._batch_done(batch, q.put_many(items, batch))

    def _batch_done(self, batch: BatchHandle, entries: Sequence[Entry]) -> BatchHandle:
        q = self._queue
        batch.seq = entries[-1].seq
        batch.first_seq = entries[0].seq
        batch.message_id = f"{q.uid}-{entries[0].seq}..{entries[-1].seq}"
        return batch

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message accepted so far survives a power cut (fsync'd)."""
        self._check_open()
        return self._queue.flush(timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or in flight; False if ``timeout`` passed first."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.pending_count() > 0:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    # -- subscribing -----------------------------------------------------------------------
    def subscribe(
        self,
        topic_filter: str,
        callback: Callback,
        *,
        qos: int = 1,
        replace: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Call ``callback(message)`` for each message matching ``topic_filter``.

        Callbacks run on the client's callback thread, never on the network thread,
        so a slow callback does not delay acknowledgements. Subscriptions are restored
        after every reconnect. ``$share/<group>/<filter>`` subscribes to a shared group.
        ``replace=True`` replaces the filter's callbacks (and QoS) instead of adding one.
        With ``timeout``, block until the broker confirmed the subscription (SUBACK):
        ``TimeoutError`` when it did not in time, :class:`~fieldmq.SubscribeFailed`
        when it refused.
        """
        self._check_open()
        validate_filter(topic_filter)
        check_qos(qos)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._subs_lock:
            old = None if replace else self._subs.get(topic_filter)
            callbacks = ([*old[1], callback]) if old else [callback]
            self._subs[topic_filter] = (max(qos, old[0]) if old else qos, callbacks)
            held = len(self._unrouted) > 0
            if held:
                self._unrouted.subscriptions_changed()
        if held:
            self._inbox.put([_RELEASE])  # wake the callback thread for the held messages
        self._net.add_subscription(topic_filter, self._subs[topic_filter][0])
        if timeout is not None:
            self.wait_subscribed(timeout, [topic_filter])

    def unsubscribe(self, topic_filter: str) -> bool:
        """Stop the subscription: the broker is sent UNSUBSCRIBE (now, or once connected)
        and the filter is no longer restored after reconnects. False if it was unknown."""
        self._check_open()
        with self._subs_lock:
            known = self._subs.pop(topic_filter, None) is not None
        if known:
            self._net.remove_subscription(topic_filter)
        return known

    def wait_subscribed(self, timeout: float | None = None,
                        filters: Sequence[str] | None = None) -> None:
        """Block until the broker confirmed ``filters`` (default: every subscription) on
        the current connection. ``TimeoutError`` if it did not within ``timeout``;
        :class:`~fieldmq.SubscribeFailed` naming the filters it refused."""
        self._check_open()
        wanted = list(filters) if filters is not None else [f for f, _ in
                                                            self._subscription_list()]
        refused = self._net.wait_subscribed(wanted, timeout)
        if refused:
            raise SubscribeFailed(
                "the broker refused: " + ", ".join(f"{f!r} ({r})" for f, r in refused.items())
            )

    def _subscription_list(self) -> list[tuple[str, int]]:
        with self._subs_lock:
            return [(f, q) for f, (q, _) in self._subs.items()]

    def _callbacks_for(self, topic: str) -> list[Callback]:
        # Called with _subs_lock held.
        return [cb for flt, (_, cbs) in self._subs.items() if matches(flt, topic) for cb in cbs]

    def _dispatch_loop(self) -> None:
        inbox = self._inbox
        unrouted = self._unrouted
        while True:
            batch = inbox.get()
            if batch is None:
                return
            given_up: list[Message] = []
            with self._subs_lock:
                # Held messages arrived before these: they go first, in order.
                work = unrouted.release(self._callbacks_for) if len(unrouted) else []
                for msg in batch:
                    if msg is _RELEASE:
                        continue
                    targets = self._callbacks_for(msg.topic)
                    if targets:
                        work.append((msg, targets))
                    else:
                        old = unrouted.hold(msg)
                        if old is not None:
                            given_up.append(old)
            for old in given_up:  # logged on the first and every 1,000th
                self._dropped["unrouted"] += 1
                if self._dropped["unrouted"] % 1000 == 1:
                    log.warning("client %s: over %d received messages match no subscription; "
                                "gave up %s (%d so far)", self._net.s.client_id,
                                unrouted.limit, old.topic, self._dropped["unrouted"])
                old.ack()
            for m, cbs in work:
                self._run_callbacks(m, cbs)

    def _run_callbacks(self, msg: Message, callbacks: list[Callback]) -> None:
        for cb in callbacks:
            try:
                cb(msg)
            except Exception:
                log.exception("subscription callback %r failed on %s", cb, msg.topic)
        if self._settings.ack_mode == "after_callback":
            msg.ack()

    # -- introspection -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._state == "open" and self._net.connected

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected to a broker; False if ``timeout`` passed first."""
        self._check_open()
        return self._net.wait_connected(timeout)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the client's state. Keys are documented in ``docs/client.md``."""
        self._check_open()
        s = self._queue.stats()
        dropped = Counter(s["dropped"])
        dropped.update(self._dropped)
        net = self._net
        s.update(
            client_id=net.s.client_id,
            connected=net.connected,
            broker=str(net.broker) if net.broker and net.connected else None,
            reconnects=net.reconnects,
            dropped=dict(dropped),
            last_error=net.last_error,
            loop_age=max(0.0, time.monotonic() - net.loop_tick),
            internal_errors=net.internal_errors,
        )
        return s

    def dead_letters(self, limit: int = 100) -> list[dict[str, object]]:
        """Messages the broker refused for good, with the reason."""
        self._check_open()
        return self._queue.dead_letters(limit)

    def __repr__(self) -> str:
        state = "connected" if self._state == "open" and self._net.connected else self._state
        return f"Client(client_id={self.client_id!r}, store={self._store_path!r}, {state})"


def _with_id(s: ConnectionSettings, client_id: str) -> ConnectionSettings:
    from dataclasses import replace

    return replace(s, client_id=client_id)
