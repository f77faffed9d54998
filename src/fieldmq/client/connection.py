"""The network thread: connects through paho-mqtt, fails over between brokers,
keeps the send window full, turns acks into store deletions, and hands received
messages to the callback thread.

paho-mqtt is used for the wire protocol only: we drive its socket with our own
``select`` loop (``loop_read``/``loop_write``/``loop_misc``), keep paho's inflight
limit at 0 (its table walk is slow) and bound what is outstanding with our own
window, so paho's 16-bit packet ids never run out and nothing is ever queued
inside paho's unbounded memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..errors import ConnectionFailed
from ..ratelimit import TokenBucket
from .config import TLS, BrokerURL, ConnectionSettings
from .fastpath import FastReceiver, install
from .inbound import Inbound
from .message import Message
from .poison import POISON_REASON, PoisonDetector
from .wire import (
    ReadProbe,
    close_socket,
    make_paho,
    new_props,
    outgoing,
    poll_serve,
    send_disconnect,
    to_message,
)

if TYPE_CHECKING:
    from ..store.base import Entry
    from ..store.queue import DurableQueue

__all__ = ["NetLoop"]

log = logging.getLogger("fieldmq.client")
# Packets read in one go before the loop looks at acks and sends again.
_READ_BURST = 64



class NetLoop:
    """Owns the paho client and the network thread. All paho calls happen on it."""

    def __init__(
        self,
        settings: ConnectionSettings,
        queue: DurableQueue,
        dispatch: Callable[[list[Message]], None],
        subscriptions: Callable[[], list[tuple[str, int]]],
        name: str,
    ) -> None:
        self.s = settings
        self.queue = queue
        self._dispatch = dispatch
        self._received: list[Message] = []  # handed to the callback thread per read
        self._fast: FastReceiver | None = None  # the receiving fast path of this paho
        self._subscriptions = subscriptions
        self._name = name
        self._stop = threading.Event()
        self._draining = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sleeping = False
        self._io = threading.Lock()
        self._paho: mqtt.Client | None = None
        self._by_mid: dict[int, Entry] = {}
        self._early: set[int] = set()
        self._acked: list[Entry] = []
        self._rejected: list[tuple[Entry, str]] = []
        self._connected = False
        self._conn_error: str | None = None
        self.inbound = Inbound(name)
        self._abort = False
        self._acks_on_conn = 0
        self._poison: PoisonDetector[Entry] = PoisonDetector()
        self._tick = 1.0
        self._bucket = (
            TokenBucket(settings.rate_limit, time.monotonic()) if settings.rate_limit else None
        )
        self.broker: BrokerURL | None = None
        self.reconnects = 0
        self.connects = 0
        self.internal_errors = 0
        self.last_error: str | None = None
        self.loop_tick = time.monotonic()
        self._rng = random.Random()
        self._tls_context = settings.tls.context() if settings.tls is not None else None
        self._thread = threading.Thread(target=self._run, name=f"fieldmq-net-{name}", daemon=True)
        self._connected_event = threading.Event()

    # -- control from other threads -----------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout: float | None) -> bool:
        return self._connected_event.wait(timeout)

    def wake(self, force: bool = False) -> None:
        if self._sleeping or force:
            self._sleeping = True
            with contextlib.suppress(OSError):  # a full pipe wakes the loop just as well
                os.write(self._wake_w, b"x")

    def add_subscription(self, flt: str, qos: int) -> None:
        self.inbound.subscribe(flt, qos)
        self.wake(force=True)

    def remove_subscription(self, flt: str) -> None:
        self.inbound.unsubscribe(flt)
        self.wake(force=True)

    def wait_subscribed(self, filters: list[str], timeout: float | None) -> dict[str, str]:
        return self.inbound.wait_subscribed(filters, timeout, self._connected)

    def stop(self, drain_timeout: float, *, clean: bool = True) -> None:
        """Let in-flight messages be acknowledged for up to ``drain_timeout`` seconds,
        send DISCONNECT (unless ``clean`` is False: the link is just cut, as in a crash,
        and the broker publishes the last will), and end the thread."""
        self._abort = not clean
        self._draining = True
        deadline = time.monotonic() + max(0.0, drain_timeout)
        while (
            (self._by_mid or self.inbound.pending_acks) and self._connected
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        self._stop.set()
        self.wake(force=True)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(max(5.0, drain_timeout + 5.0))
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def abandon(self) -> None:
        """In a forked child: never touch the parent's socket or pipe again."""
        self._stop.set()
        self._paho = None

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        """The thread's body: never dies of an unexpected error (a dead network thread
        would leave the client silently offline); it logs, reports and starts over."""
        while not self._stop.is_set():
            try:
                self._run_loop()
                return
            except Exception as exc:
                log.exception("%s: the network loop failed; reconnecting", self._name)
                self.last_error = f"internal error: {exc!r}"
                self.internal_errors += 1
                try:
                    with self._io:
                        self._after_disconnect()
                except Exception:  # pragma: no cover - keep the thread alive regardless
                    log.exception("%s: cleanup after a failure failed", self._name)
                    self._paho = None
                    self._connected = False
                self._sleep(min(5.0, 0.5 * self.internal_errors))

    def _sleep(self, seconds: float) -> None:
        """Wait (interruptibly), keeping ``loop_tick`` fresh: an offline client that is
        backing off is alive, not wedged."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            self.loop_tick = time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.5))

    def _run_loop(self) -> None:
        attempt = 0
        n = len(self.s.brokers)
        index = 0
        failures_in_cycle = 0
        while not self._stop.is_set():
            broker = self.s.brokers[index]
            try:
                with self._io:
                    self._connect(broker)
            except ConnectionFailed as exc:
                self.last_error = str(exc)
                log.warning("%s: %s", self._name, exc)
                with self._io:
                    self._close_paho()
                index = (index + 1) % n
                failures_in_cycle += 1
                if failures_in_cycle >= n:
                    failures_in_cycle = 0
                    self._sleep(self.s.backoff.delay(attempt, self._rng))
                    attempt += 1
                continue
            failures_in_cycle = 0
            up_since = time.monotonic()
            self._serve()
            was_up = time.monotonic() - up_since
            with self._io:
                if self._stop.is_set() and self._connected and not self._abort:
                    if self._paho is not None and self.inbound.pending_acks:
                        self._send_acks(self._paho)
                    self._send_disconnect()
                self._after_disconnect()
            if self._stop.is_set():
                break
            self.reconnects += 1
            if was_up >= self.s.backoff.stable_after:
                attempt = 0
            delay = self.s.backoff.delay(attempt, self._rng)
            attempt += 1
            log.info("%s: reconnecting to %s in %.2f s", self._name, broker, delay)
            self._sleep(delay)
        with self._io:
            self._close_paho()

    def _make_paho(self) -> mqtt.Client:
        c = make_paho(self.s, self._tls_context)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        self._fast = install(
            c, self.s.protocol == 5, self._received.append,
            None if self.s.ack_mode == "auto"
            else lambda mid, qos: partial(self.ack, mid, qos, self.inbound.generation),
            self._settled,
        )
        return c

    def _connect(self, broker: BrokerURL) -> None:
        c = self._make_paho()
        user = broker.username or self.s.username
        password = broker.password if broker.username else self.s.password
        if user is not None:
            c.username_pw_set(user, password)
        if broker.tls and self._tls_context is None:
            self._tls_context = TLS().context()
            c.tls_set_context(self._tls_context)
        self._paho = c
        self._conn_error = None
        # paho pings after `keepalive` of silence and gives up one keepalive later;
        # pinging at 0.7x (rounded down: paho takes whole seconds) makes a dead link
        # noticed within ~1.4x the configured value. The idle loop wakes often enough
        # for paho's keepalive check to stay on time.
        keepalive = max(1, int(self.s.keepalive * 0.7))
        self._tick = min(1.0, keepalive / 10)
        props = None
        kwargs: dict[str, Any] = {}
        if self.s.protocol == 5:
            props = new_props(PacketTypes.CONNECT)
            if self.s.persistent_session:
                props.SessionExpiryInterval = self.s.session_expiry
            if self.s.receive_maximum:
                props.ReceiveMaximum = self.s.receive_maximum
            kwargs["clean_start"] = not self.s.persistent_session
            kwargs["properties"] = props
        try:
            c.connect(broker.host, broker.port, keepalive, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConnectionFailed(f"cannot connect to {broker}: {exc}") from exc
        sock = c.socket()
        if sock is not None:
            try:
                cast(socket.socket, sock).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not a TCP socket
                pass
        deadline = time.monotonic() + self.s.connect_timeout
        while not self._connected and not self._stop.is_set():
            if self._conn_error is not None:
                raise ConnectionFailed(f"{broker} refused the connection: {self._conn_error}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionFailed(
                    f"no CONNACK from {broker} within {self.s.connect_timeout} s"
                )
            sock = c.socket()
            if sock is None:
                raise ConnectionFailed(f"connection to {broker} closed during CONNECT")
            readable, _, _ = poll_serve(cast(socket.socket, sock).fileno(), -1, False,
                                      min(remaining, 0.25))
            self.loop_tick = time.monotonic()
            rc = c.loop_read() if readable else c.loop_misc()
            self._hand_over()
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN) and not self._connected:
                if self._conn_error is not None:
                    raise ConnectionFailed(f"{broker} refused the connection: {self._conn_error}")
                raise ConnectionFailed(f"connection to {broker} failed: {mqtt.error_string(rc)}")
        if self._stop.is_set() and not self._connected:
            raise ConnectionFailed("client is closing")
        self.broker = broker
        self.connects += 1
        self.inbound.new_connection()
        self._acks_on_conn = 0
        log.info("%s: connected to %s", self._name, broker)
        subs = self._subscriptions()
        if subs:
            self._send_subscriptions(subs)
        self.queue.set_online(True)
        self._connected_event.set()

    def _send_subscriptions(self, subs: list[tuple[str, int]]) -> None:
        c = self._paho
        if c is None:
            return
        if self.s.protocol == 5:
            _, mid = c.subscribe([(f, SubscribeOptions(qos=q)) for f, q in subs])
        else:
            _, mid = c.subscribe([(f, q) for f, q in subs])
        self.inbound.sent(mid, [f for f, _ in subs])

    def on_ready(self) -> None:
        """A message was stored: send it from the caller's thread when the link is
        free (like a plain paho publish), otherwise wake the network thread."""
        if self._connected and not self._draining and self._io.acquire(blocking=False):
            try:
                c = self._paho
                if c is None or not self._connected:
                    return
                room = self._poison.window(self.s.window, self._acks_on_conn) - len(self._by_mid)
                if room > 0:
                    self._fill(c, room)
                self._flush_results()
                pending_write = c.want_write()
            finally:
                self._io.release()
            if pending_write:
                self.wake()
        else:
            self.wake()

    def _serve(self) -> None:
        c = self._paho
        assert c is not None
        queue = self.queue
        wake_r = self._wake_r
        io = self._io
        first = c.socket()
        probe: Callable[[], bool] = ReadProbe(cast(socket.socket, first)) if first else bool
        buffered = self._fast.buffer if self._fast is not None else None
        waiting: Callable[[], bool] = buffered.pending if buffered is not None else bool

        def more() -> bool:  # read bytes already buffered (poll cannot see them) or waiting
            return waiting() or probe()

        while self._connected and not self._stop.is_set():
            window = self._poison.window(self.s.window, self._acks_on_conn)
            with io:
                inbound = self.inbound
                if inbound.has_work():
                    self._send_acks(c)
                    subs = inbound.take_subscriptions()
                    if subs:
                        self._send_subscriptions(subs)
                    unsubs = inbound.take_unsubscriptions()
                    if unsubs:
                        c.unsubscribe(unsubs)
                if not self._draining and len(self._by_mid) < window and queue.sendable() > 0:
                    self._fill(c, window - len(self._by_mid))
                self._flush_results()
                psock = c.socket()
                if psock is None or not self._connected:
                    break
                sock = cast(socket.socket, psock)
                # Announce the sleep before checking for work: a publisher that finds
                # the lock taken after this point writes to the wake pipe.
                self._sleeping = True
                idle = self._draining or len(self._by_mid) >= window or queue.sendable() <= 0
                busy = inbound.has_work()
                timeout = self._tick if idle and not busy and not waiting() else 0.0
                if not idle and not busy:
                    held = self._throttled()
                    if held > 0:
                        timeout = min(held, self._tick)
                want_write = c.want_write()
            try:
                readable, woken, writable = poll_serve(sock.fileno(), wake_r, want_write,
                                                        timeout)
            except (OSError, ValueError):
                break
            self._sleeping = False
            readable = readable or waiting()
            if woken:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
            with io:
                if readable and self._connected:
                    c.loop_read()
                    n = 1  # then what is already waiting, a bounded burst
                    while n < _READ_BURST and self._connected and more():
                        c.loop_read()
                        n += 1
                    self._hand_over()
                if self._connected and (writable or c.want_write()):
                    c.loop_write()
                if self._connected:
                    c.loop_misc()
            self.loop_tick = time.monotonic()
        with io:
            self._flush_results()

    def _fill(self, c: mqtt.Client, room: int) -> None:
        bucket = self._bucket
        if bucket is None:
            self._send(c, self.queue.take(room))
            return
        # Bandwidth cap: one message at a time while the bucket allows, so the highest
        # priority always goes next however large the backlog.
        while room > 0 and bucket.ready(time.monotonic()):
            entries = self.queue.take(1)
            if not entries:
                return
            self._send(c, entries)
            for e in entries:
                bucket.spend(e.size + 16)  # topic + payload + MQTT framing, approximately
            room -= 1

    def _throttled(self) -> float:
        """Seconds the bandwidth cap holds sending back (0 when not throttled)."""
        bucket = self._bucket
        return 0.0 if bucket is None else bucket.wait_time(time.monotonic())

    def _send(self, c: mqtt.Client, entries: list[Entry]) -> None:
        by_mid = self._by_mid
        uid = self.queue.uid
        for i, e in enumerate(entries):
            payload, props = outgoing(e, uid, self.s)
            try:
                info = c.publish(e.topic, payload, e.qos, e.retain, props)
            except (ValueError, TypeError) as exc:
                self.queue.reject(e, f"invalid:{exc}")
                continue
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # Connection lost while writing: keep this and the rest for later.
                self.queue.requeue(entries[i:])
                return
            mid = info.mid
            if mid in self._early:
                self._early.discard(mid)
                self._acked.append(e)
            else:
                by_mid[mid] = e
            h = e.handle
            if h is not None:
                h.mark_sent()

    def _flush_results(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self.queue.acked(acked)
        if self._rejected:
            rejected, self._rejected = self._rejected, []
            for e, reason in rejected:
                self.queue.reject(e, reason)

    def ack(self, mid: int, qos: int, generation: int) -> None:
        """Acknowledge a received message (manual ack modes). Thread-safe; the ack is
        sent by the network thread. Acks for a connection that is gone are dropped: the
        broker redelivers those messages on the new connection."""
        if self.inbound.ack(mid, qos, generation):
            self.wake()  # writes to the pipe only if the loop sleeps (see _serve)

    def _send_acks(self, c: mqtt.Client) -> None:
        acks = self.inbound.take_acks()
        if acks and self._connected:
            for mid, qos in acks if self._fast is None else self._fast.write_acks(acks):
                c.ack(mid, qos)

    def _send_disconnect(self) -> None:
        """A clean DISCONNECT: the broker then discards the last will."""
        c = self._paho
        if c is None:
            return
        send_disconnect(c, self._name)

    def _after_disconnect(self) -> None:
        self._connected = False
        self.queue.set_online(False)
        self._connected_event.clear()
        self._flush_results()
        self._check_poison()
        back = self.queue.requeue_all()
        self._by_mid.clear()
        self._early.clear()
        if back:
            log.info("%s: %d in-flight messages will be sent first after reconnect",
                     self._name, back)
        self._close_paho()

    def _check_poison(self) -> None:
        """Called when a connection is lost: dead-letter a message the broker closes the
        connection on (see :mod:`.poison`), so it cannot block the rest."""
        if self._stop.is_set():
            return
        e = self._poison.connection_lost(self._acks_on_conn, list(self._by_mid.values()))
        if e is not None:
            log.error("%s: %s closed the connection %d times in a row with only message %d "
                      "(topic %r) in flight; moving it to the dead letters",
                      self._name, self.broker, self._poison.after, e.seq, e.topic)
            self.queue.reject(e, POISON_REASON)

    def _close_paho(self) -> None:
        c = self._paho
        if c is None:
            return
        if self._connected and self._stop.is_set() and not self._abort:
            with contextlib.suppress(Exception):  # best effort
                c.disconnect()
                c.loop_write()
        self._connected = False
        close_socket(c)
        self._paho = None

    # -- paho callbacks (run on this thread) ---------------------------------------------
    def _on_connect(self, c: mqtt.Client, _u: Any, _flags: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self._conn_error = str(rc)
        else:
            self._connected = True

    def _on_disconnect(self, c: mqtt.Client, _u: Any, _flags: Any, rc: ReasonCode, _p: Any) -> None:
        if self._connected and not self._stop.is_set():
            log.warning("%s: connection to %s lost (%s)", self._name, self.broker, rc)
            self.last_error = f"disconnected: {rc}"
        self._connected = False

    def _on_publish(self, c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        self._settled(mid, f"broker:{rc}" if rc.is_failure else None)

    def _settled(self, mid: int, refused: str | None = None) -> None:
        """The broker acknowledged ``mid`` (or refused it with reason ``refused``)."""
        self._acks_on_conn += 1
        self._poison.acked()
        e = self._by_mid.pop(mid, None)
        if e is None:
            self._early.add(mid)
        elif refused:
            self._rejected.append((e, refused))
        else:
            self._acked.append(e)

    def _on_subscribe(
        self, c: mqtt.Client, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any
    ) -> None:
        self.inbound.suback(mid, rcs)

    def _on_unsubscribe(self, c: mqtt.Client, _u: Any, mid: int, *_rest: Any) -> None:
        """Nothing to track: an unsubscribed filter is simply no longer restored."""

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        acker = (partial(self.ack, msg.mid, msg.qos, self.inbound.generation)
                 if self.s.ack_mode != "auto" and msg.qos > 0 else None)
        self._received.append(to_message(msg, acker))

    def _hand_over(self) -> None:
        # One hand-over per read burst: the callback thread wakes once, not per message,
        # and the burst's automatic PUBACKs go out in one write.
        fast = self._fast
        if fast is not None and self._connected:
            fast.flush_acks()
        if self._received:  # the list stays: the fast path appends to it
            batch = self._received.copy()
            self._received.clear()
            self._dispatch(batch)
