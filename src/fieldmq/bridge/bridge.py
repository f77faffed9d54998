"""``Bridge``: durable forwarding between a local broker and an upstream broker.

Two :class:`fieldmq.Client` objects, each with its own store in the state directory:

* ``local`` (``<id>-local``, ``local.db``) subscribes to the forward mappings'
  filters with a persistent session, QoS 1 and ``ack="manual"``, and publishes the
  reverse direction (commands from upstream) durably;
* ``upstream`` (``<id>-up``, ``upstream.db``) publishes the forward direction
  durably, with the mapping's priority, under the bandwidth cap, and subscribes to
  the reverse mappings' filters the same way.

A received message is acknowledged to its broker only after ``publish()`` on the
other client returned, i.e. after it is in that client's durable store (rollup
mappings: after the summary state including it is committed, see
:mod:`.rollups`). A bridge killed at any point therefore loses nothing: what it
acknowledged is in a store, what it did not is redelivered by the broker.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..client.client import Client
from ..client.config import Limits, parse_broker_url
from ..client.identity import ID_PROPERTY, wrap
from ..client.message import Message
from ..errors import FieldmqError, StoreError, StoreFull
from .config import BridgeConfig, BridgeMapping, Direction, Link
from .loops import PATH_PROPERTY, extend_path, is_loop, read_path
from .mapping import minimal_filters
from .rollups import RollupEngine, RollupStore

__all__ = ["Bridge"]

log = logging.getLogger("fieldmq.bridge")

_RETRY_AFTER = 0.1
_REFRESH = 0.02


class _Room:
    """Keeps a client's store below its limits, so the store never has to evict.

    ``count``/``nbytes`` are an upper bound of what the store holds: the last
    ``stats()`` plus everything published since (acknowledgements only lower it)."""

    def __init__(self, client: Client, link: Link) -> None:
        self.client = client
        self.max_messages = link.max_messages
        self.max_bytes = link.max_bytes
        self.count = 0
        self.nbytes = 0
        self.refreshed = 0.0
        self.lock = threading.Lock()

    def _refresh(self) -> None:
        s = self.client.stats()
        self.count = int(s["queued"]) + int(s["inflight"])
        self.nbytes = int(s["queued_bytes"])
        self.refreshed = time.monotonic()

    def reserve(self, size: int) -> bool:
        """True (and counted) if a message of ``size`` bytes fits; False when full."""
        with self.lock:
            for attempt in (0, 1):
                if self.count + 1 <= self.max_messages and self.nbytes + size <= self.max_bytes:
                    self.count += 1
                    self.nbytes += size
                    return True
                if attempt or time.monotonic() - self.refreshed < _REFRESH:
                    return False
                self._refresh()
            return False

    def release(self, size: int) -> None:
        """A reserved message was not stored after all."""
        with self.lock:
            self.count -= 1
            self.nbytes -= size


class Bridge:
    """Forward messages between ``config.local`` and ``config.upstream``.

    ``start()`` opens both clients and subscribes; ``close()`` stops forwarding,
    commits what is pending and closes the clients (unsent messages stay in the
    stores). Use it as a context manager. ``state_dir`` overrides the config's.
    """

    def __init__(self, config: BridgeConfig, *, state_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(config, BridgeConfig):
            raise TypeError(f"config must be a BridgeConfig, got {type(config).__name__}")
        self.config = config.checked()
        sd = state_dir if state_dir is not None else config.state_dir
        if sd is None:
            raise ValueError("the bridge needs a state directory (state_dir) for its stores")
        self.state_dir = Path(sd)
        self._clock = clock
        self._state = "new"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local: Client | None = None
        self._upstream: Client | None = None
        self._rollups: RollupEngine | None = None
        self._ticker: threading.Thread | None = None
        self._room: dict[int, _Room] = {}
        self._ticker_logged = 0.0
        self._last: dict[Direction, Message | None] = {"forward": None, "reverse": None}
        self._retry: collections.deque[tuple[Direction, Message]] = collections.deque()
        self._retry_at = 0.0
        self.counters: Counter[tuple[str, str]] = Counter()  # (mapping or "-", event)
        self.started = 0.0
        self.last_tick = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Bridge:
        if self._state != "new":
            raise RuntimeError(f"a Bridge can be started once; this one is {self._state}")
        cfg = self.config
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {self.state_dir}: "
                             f"{exc.strerror}") from exc
        self._state = "starting"
        try:
            rollup_maps = [m for m in cfg.forward if m.rollup is not None]
            if rollup_maps:
                self._rollups = RollupEngine(
                    RollupStore(self.state_dir / "rollups.db"), rollup_maps,
                    self._publish_summary, bridge_id=cfg.id, clock=self._clock)
            # A client connects in its constructor, and the broker sends the persistent
            # session's backlog (what a killed bridge left unacknowledged) right after:
            # everything the callbacks use exists before, and they subscribe right after.
            self._upstream = self._client(cfg.upstream, "up", "upstream.db", rate=True)
            self._local = self._client(cfg.local, "local", "local.db", rate=False)
            if cfg.when_full == "wait":
                for client, link in ((self._upstream, cfg.upstream), (self._local, cfg.local)):
                    self._room[id(client)] = _Room(client, link)
            for flt in minimal_filters([m.source for m in cfg.forward]):
                self._local.subscribe(flt, self._on_local, qos=_sub_qos(cfg.forward, flt))
            for flt in minimal_filters([m.source for m in cfg.reverse]):
                self._upstream.subscribe(flt, self._on_upstream, qos=_sub_qos(cfg.reverse, flt))
        except BaseException:
            self._close_parts()
            self._state = "closed"
            raise
        self.started = time.monotonic()
        self._ticker = threading.Thread(target=self._tick_loop, name=f"fieldmq-bridge-{cfg.id}",
                                        daemon=True)
        self._ticker.start()
        self._state = "running"
        log.info("bridge %s: %s (%s) -> %s (%s), %d forward and %d reverse mappings%s; "
                 "state in %s", cfg.id, _safe(cfg.local.url), cfg.local.broker_name,
                 _safe(cfg.upstream.url),
                 cfg.upstream.broker_name, len(cfg.forward), len(cfg.reverse),
                 f", cap {cfg.rate_limit.bytes_per_second:g} B/s" if cfg.rate_limit else "",
                 self.state_dir)
        return self

    def _client(self, link: Link, suffix: str, store: str, *, rate: bool) -> Client:
        assert link.url is not None
        return Client(
            client_id=f"{self.config.id}-{suffix}",
            brokers=[link.url],
            store=self.state_dir / store,
            protocol=link.protocol,
            keepalive=link.keepalive,
            tls=link.tls,
            username=link.username,
            password=link.password,
            limits=Limits(max_messages=link.max_messages, max_bytes=link.max_bytes),
            durability=link.durability,
            persistent_session=True,
            session_expiry=link.session_expiry,
            ack="manual",
            receive_maximum=link.receive_maximum,
            message_ids=False,  # the bridge sets fmq-id itself: the original id passes through
            rate_limit=self.config.rate_limit if rate else None,
        )

    def close(self, timeout: float = 2.0) -> None:
        """Stop forwarding and close both clients; nothing accepted is lost. Idempotent."""
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closing"
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(10.0)
        self._close_parts(timeout)
        self._state = "closed"
        log.info("bridge %s stopped", self.config.id)

    def _close_parts(self, timeout: float = 2.0) -> None:
        # Commit rollup state and queue its acks while the local connection can send them;
        # then close the local side, so nothing new arrives while the upstream drains.
        if self._rollups is not None:
            try:
                self._rollups.flush()
            except FieldmqError as exc:
                log.error("bridge %s: %s", self.config.id, exc)
        if self._local is not None:
            self._local.close(timeout=0.5)
        if self._rollups is not None:
            try:
                self._rollups.close()  # anything that arrived meanwhile: committed, redelivered
            except FieldmqError as exc:
                log.error("bridge %s: %s", self.config.id, exc)
        if self._upstream is not None:
            self._upstream.close(timeout=timeout)

    def __enter__(self) -> Bridge:
        return self.start() if self._state == "new" else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def state(self) -> str:
        return self._state

    @property
    def local(self) -> Client:
        if self._local is None:
            raise RuntimeError("the bridge is not started")
        return self._local

    @property
    def upstream(self) -> Client:
        if self._upstream is None:
            raise RuntimeError("the bridge is not started")
        return self._upstream

    # -- forwarding ---------------------------------------------------------------------
    def _on_local(self, msg: Message) -> None:
        self._receive("forward", msg)

    def _on_upstream(self, msg: Message) -> None:
        self._receive("reverse", msg)

    def _receive(self, direction: Direction, msg: Message) -> None:
        # One message matching several subscribed filters reaches this callback once per
        # filter, as the same object: handle it once.
        if self._last[direction] is msg:
            return
        self._last[direction] = msg
        if self._retry:
            self._retry.append((direction, msg))  # keep the order behind earlier ones
            return
        if not self._handle(direction, msg):
            self._retry.append((direction, msg))

    def _handle(self, direction: Direction, msg: Message) -> bool:
        """Forward or roll up ``msg``; False when the target store refused it (retry)."""
        cfg = self.config
        mapping = _first_match(cfg.forward if direction == "forward" else cfg.reverse, msg.topic)
        if mapping is None:
            self.counters[("-", "unmatched")] += 1
            log.warning("bridge %s: %s message on %s matches no mapping; acknowledged without "
                        "forwarding", cfg.id, direction, msg.topic)
            msg.ack()
            return True
        source, target = (cfg.local, cfg.upstream) if direction == "forward" else (
            cfg.upstream, cfg.local)
        path = read_path(msg.user_properties)
        if is_loop(path, target.broker_name):
            self.counters[(mapping.name, "loops")] += 1
            if self.counters[(mapping.name, "loops")] == 1:
                log.info("bridge %s: %s already passed through %s (path %s); not forwarded "
                         "back (counted as loops)", cfg.id, msg.topic, target.broker_name,
                         ",".join(path))
            msg.ack()
            return True
        try:
            if mapping.rollup is not None:
                assert self._rollups is not None
                self._rollups.add(mapping, msg)
                self.counters[(mapping.name, "rolled_up")] += 1
                return True
            client = self.upstream if direction == "forward" else self.local
            self._publish(client, target, mapping, mapping.target_topic(msg.topic), msg.payload,
                          msg.message_id, extend_path(path, source.broker_name,
                                                      target.broker_name),
                          msg.user_properties)
        except StoreError as exc:
            self._refused(mapping, msg, exc)
            return False
        except ValueError as exc:  # e.g. the rewritten topic is over 65,535 bytes
            self.counters[(mapping.name, "invalid")] += 1
            log.error("bridge %s: mapping %r cannot forward %s: %s; acknowledged and counted "
                      "as invalid", cfg.id, mapping.name, msg.topic[:200], exc)
            msg.ack()
            return True
        msg.ack()
        self.counters[(mapping.name, "forwarded")] += 1
        return True

    def _publish(self, client: Client, target: Link, mapping: BridgeMapping, topic: str,
                 payload: bytes, message_id: str | None, path: str,
                 props: Sequence[tuple[str, str]] = ()) -> None:
        mid = message_id or f"{self.config.id}-{uuid.uuid4().hex[:16]}"
        user: list[tuple[str, str]] | None = None
        if target.protocol == 5:
            user = [(ID_PROPERTY, mid), (PATH_PROPERTY, path)]
            user += [p for p in props if p[0] not in (ID_PROPERTY, PATH_PROPERTY)]
        elif target.envelope:
            payload = wrap(mid, payload)
        room = self._room.get(id(client))
        size = len(topic.encode()) + len(payload)
        if room is not None and not room.reserve(size):
            raise StoreFull(f"the {'upstream' if client is self._upstream else 'local'} store "
                            f"holds its limit ({room.max_messages} messages / {room.max_bytes} "
                            "bytes); waiting for the broker to take some")
        try:
            client.publish(topic, payload, qos=mapping.qos, retain=mapping.retain,
                           priority=mapping.priority, ttl=mapping.ttl, user_properties=user)
        except BaseException:
            if room is not None:
                room.release(size)
            raise

    def _publish_summary(self, mapping: BridgeMapping, topic: str, payload: bytes,
                         summary_id: str) -> None:
        cfg = self.config
        self._publish(self.upstream, cfg.upstream, mapping, mapping.target_topic(topic),
                      payload, summary_id,
                      extend_path((), cfg.local.broker_name, cfg.upstream.broker_name))

    def _refused(self, mapping: BridgeMapping, msg: Message, exc: Exception) -> None:
        self.counters[(mapping.name, "retries")] += 1
        if self.counters[(mapping.name, "retries")] == 1:
            log.error("bridge %s: cannot store %s for mapping %r (%s); the message stays "
                      "unacknowledged and is retried", self.config.id, msg.topic, mapping.name,
                      exc)

    def _retry_pending(self) -> None:
        while self._retry:
            direction, msg = self._retry[0]
            if not self._handle(direction, msg):
                return
            self._retry.popleft()

    # -- the ticker thread --------------------------------------------------------------
    def _tick_loop(self) -> None:
        tick = self.config.tick
        while not self._stop.wait(tick):
            self.last_tick = time.monotonic()
            try:
                if self._rollups is not None:
                    self._rollups.flush()
                    self._rollups.close_due()
                if self._retry and time.monotonic() >= self._retry_at:
                    self._retry_at = time.monotonic() + _RETRY_AFTER
                    self._retry_pending()
            except FieldmqError as exc:
                if time.monotonic() - self._ticker_logged > 10.0:
                    self._ticker_logged = time.monotonic()
                    log.error("bridge %s: %s; retrying", self.config.id, exc)
            except Exception:
                log.exception("bridge %s: unexpected error in the ticker", self.config.id)

    # -- introspection ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters per mapping plus both clients' statistics."""
        per: dict[str, dict[str, int]] = {}
        for (name, event), n in self.counters.items():
            per.setdefault(name, {})[event] = n
        out: dict[str, Any] = {
            "id": self.config.id,
            "state": self._state,
            "mappings": per,
            "retry_backlog": len(self._retry),
            "tick_age": time.monotonic() - self.last_tick,
        }
        if self._rollups is not None:
            out["rollups"] = dict(self._rollups.counts, open=self._rollups.open_intervals)
        if self._state == "running":
            out["local"] = self.local.stats()
            out["upstream"] = self.upstream.stats()
        return out

    def __repr__(self) -> str:
        return f"Bridge(id={self.config.id!r}, {self._state})"


def _safe(url: str | None) -> str:
    """A broker URL for logs: no password."""
    return str(parse_broker_url(url)) if url else "?"


def _first_match(mappings: Sequence[BridgeMapping], topic: str) -> BridgeMapping | None:
    for m in mappings:
        if m.rewrite.applies_to(topic):
            return m
    return None


def _sub_qos(mappings: Sequence[BridgeMapping], flt: str) -> int:
    """Subscribe at QoS 2 if a mapping under this filter forwards at QoS 2, else 1."""
    from .mapping import filter_covers

    return max([1] + [m.qos for m in mappings if filter_covers(flt, m.source)])
