"""robmqtt 1.0's ``ProductionMQTTClient`` and ``Config``, implemented on :class:`fieldmq.Client`.

Migrate by changing one import::

    # from robmqtt import ProductionMQTTClient, Config
    from fieldmq.compat.robmqtt import ProductionMQTTClient, Config

The constructor parameters, the methods (``connect``, ``start``, ``publish``,
``subscribe``, ``unsubscribe``, ``get_statistics``, ``stop``, ``from_config``), the
subscription callback signature ``(topic, payload, qos, retain)`` and the keys of
``get_statistics()`` are robmqtt's. Underneath, every message goes through fieldmq's
durable store, so the differences are where robmqtt could lose or duplicate data;
``docs/migrating-from-robmqtt.md`` lists them. In short:

* ``publish()`` stores the message before it returns, connected or not (robmqtt handed
  it to paho's memory when connected); it returns a :class:`PublishInfo` (never ``None``).
* A full queue evicts the oldest message of the lowest priority, never one of a higher
  priority than the new message: then ``publish()`` raises :class:`fieldmq.StoreFull`
  (robmqtt evicted the oldest message of any priority, alarms included).
* Invalid topics, QoS or priorities raise ``ValueError`` at the call (robmqtt queued
  them and the drain thread failed on them later).
* A ``db_path`` written by robmqtt is taken over: messages its offline queue and
  inflight table still hold are moved into the fieldmq store on the first start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..backoff import Backoff
from ..client.client import Client
from ..client.config import TLS, Limits
from ..client.handle import PublishHandle
from ..client.message import Message
from ..errors import FieldmqError, PublishError, StoreFull

__all__ = ["Config", "MessageCallback", "ProductionMQTTClient", "PublishInfo"]

log = logging.getLogger("fieldmq.compat.robmqtt")

#: robmqtt's subscription callback: ``callback(topic, payload, qos, retain)``.
MessageCallback = Callable[[str, bytes, int, bool], None]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DEGRADED_PERCENT = 80.0
# Messages robmqtt had already sent once go out before its offline queue, as it did.
_INFLIGHT_IMPORT_PRIORITY = 10


class PublishInfo:
    """What ``publish()`` returns: paho's ``MQTTMessageInfo`` surface over a fieldmq
    :class:`~fieldmq.PublishHandle`.

    robmqtt returned paho's ``MQTTMessageInfo`` when connected and ``None`` when it
    queued the message offline; fieldmq stores every message first, so there is always
    a handle. ``mid`` is the store's sequence number (unique within the store, stable
    across reconnects), not an MQTT packet id, which changes on every resend.
    """

    __slots__ = ("handle",)

    rc: ClassVar[int] = 0  # paho's MQTT_ERR_SUCCESS: the message was accepted

    def __init__(self, handle: PublishHandle) -> None:
        self.handle = handle

    @property
    def mid(self) -> int:
        return self.handle.seq

    @property
    def message_id(self) -> str:
        """fieldmq's stable id, sent as the MQTT 5 user property ``fmq-id``."""
        return self.handle.message_id

    @property
    def status(self) -> str:
        """``queued``, ``sent``, ``acked``, ``dropped`` or ``expired``."""
        return self.handle.status

    def is_published(self) -> bool:
        """True once the broker acknowledged the message (QoS 0: once it was sent)."""
        return self.handle.status == "acked"

    def wait_for_publish(self, timeout: float | None = None) -> None:
        """Block until the broker acknowledged the message, or ``timeout`` passed (then
        return quietly, like paho). Raises :class:`fieldmq.PublishDropped` /
        :class:`fieldmq.PublishExpired` when the message will never be delivered."""
        with contextlib.suppress(TimeoutError):
            self.handle.wait(timeout)

    def __repr__(self) -> str:
        return f"PublishInfo(mid={self.mid}, status={self.status!r})"


class Config:
    """robmqtt's configuration object: ``DEFAULTS`` overlaid with a dict, validated.

    ``Config.from_file()`` reads JSON (``.json``) or ``key=value`` lines,
    ``Config.from_env()`` reads ``MQTT_<KEY>`` variables; ``from_config()`` builds the
    client. Keys robmqtt itself ignored (``keepalive``, ``queue_batch_size``, ...) are kept
    and ignored here too.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "broker_host": "localhost",
        "broker_port": 1883,
        "client_id": None,
        "keepalive": 60,
        "clean_session": False,
        "username": None,
        "password": None,
        "use_tls": False,
        "ca_certs": None,
        "certfile": None,
        "keyfile": None,
        "max_queue_size": 1000,
        "queue_batch_size": 10,
        "queue_drain_interval": 1.0,
        "min_backoff": 1,
        "max_backoff": 60,
        "reconnect_on_failure": True,
        "log_dir": "./logs",
        "log_level": "INFO",
        "log_max_bytes": 10485760,
        "log_backup_count": 5,
        "db_path": "./mqtt_client.db",
        "db_timeout": 30.0,
        "message_rate_limit": 100,
        "max_inflight_messages": 20,
        "health_check_port": 8080,
        "enable_health_check": False,
    }
    REQUIRED: ClassVar[tuple[str, ...]] = ("client_id",)

    def __init__(self, config_dict: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(self.DEFAULTS)
        if config_dict:
            self.config.update(config_dict)
        self._validate()

    def _validate(self) -> None:
        c = self.config
        for key in self.REQUIRED:
            if not c.get(key):
                raise ValueError(f"Required configuration field missing: {key}")
        port = c["broker_port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"broker_port must be an integer from 1 to 65535, got {port!r}")
        size = c["max_queue_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_queue_size must be a positive integer, got {size!r}")
        level = c["log_level"]
        if level not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {list(_LOG_LEVELS)}, got {level!r}")
        if c.get("keyfile") and not c.get("certfile"):
            raise ValueError("keyfile given without certfile; mutual TLS needs both")
        # robmqtt warned here that use_tls without ca_certs skips verification. It does
        # not (the system's CA store is used), and it does not in fieldmq either.

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set one value and validate again (raises ``ValueError``)."""
        old = self.config.get(key, _MISSING)
        self.config[key] = value
        try:
            self._validate()
        except ValueError:
            if old is _MISSING:
                del self.config[key]
            else:
                self.config[key] = old
            raise

    def to_dict(self) -> dict[str, Any]:
        return dict(self.config)

    @classmethod
    def from_file(cls, file_path: str | os.PathLike[str]) -> Config:
        """JSON for a ``.json`` file, else ``key=value`` lines (``#`` comments; ``true``,
        ``false``, integers and decimals are converted)."""
        path = Path(file_path)
        if not path.exists():
            raise FileNotFoundError(f"Configuration file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            loaded = json.loads(text)
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: the JSON must be an object")
            return cls(loaded)
        values: dict[str, Any] = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            values[key.strip()] = _parse_scalar(value.strip())
        return cls(values)

    @classmethod
    def from_env(cls, prefix: str = "MQTT_") -> Config:
        """``<prefix><KEY>`` for each key of ``DEFAULTS``, converted to the default's type."""
        values: dict[str, Any] = {}
        for key, default in cls.DEFAULTS.items():
            raw = os.environ.get(prefix + key.upper())
            if raw is None:
                continue
            value: Any = raw
            if isinstance(default, bool):
                value = raw.strip().lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            values[key] = value
        return cls(values)

    def save_to_file(self, file_path: str | os.PathLike[str]) -> None:
        path = Path(file_path)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        else:
            lines = [f"{k}={v}\n" for k, v in sorted(self.config.items())]
            path.write_text("".join(lines), encoding="utf-8")

    def __str__(self) -> str:
        safe = dict(self.config)
        for secret in ("password", "keyfile"):
            if safe.get(secret):
                safe[secret] = "***REDACTED***"
        return json.dumps(safe, indent=2)


_MISSING = object()


def _parse_scalar(text: str) -> Any:
    low = text.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class ProductionMQTTClient:
    """robmqtt 1.0's client on fieldmq's durable store. See the module docstring.

    The robmqtt parameters keep their names, order and defaults. Keyword-only extras:
    ``protocol`` (4 = MQTT 3.1.1, robmqtt's; 5 adds fieldmq's message ids),
    ``keepalive`` (robmqtt's fixed 60 s) and ``health_check_host`` (robmqtt listened on
    every interface).
    """

    def __init__(
        self,
        client_id: str,
        broker_host: str = "localhost",
        broker_port: int = 1883,
        max_queue_size: int = 1000,
        db_path: str = "./mqtt_client.db",
        min_backoff: float = 1,
        max_backoff: float = 60,
        log_dir: str = "./logs",
        log_level: str = "INFO",
        use_tls: bool = False,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        username: str | None = None,
        password: str | None = None,
        enable_health_check: bool = False,
        health_check_port: int = 8080,
        *,
        protocol: Literal[4, 5] = 4,
        keepalive: float = 60.0,
        health_check_host: str = "0.0.0.0",
    ) -> None:
        if not isinstance(broker_host, str) or not broker_host:
            raise ValueError(f"broker_host must be a non-empty str, got {broker_host!r}")
        if isinstance(broker_port, bool) or not isinstance(broker_port, int) or not (
            1 <= broker_port <= 65535
        ):
            raise ValueError(f"broker_port must be an int from 1 to 65535, got {broker_port!r}")
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int) or (
            max_queue_size < 1
        ):
            raise ValueError(f"max_queue_size must be a positive int, got {max_queue_size!r}")
        level = log_level.upper() if isinstance(log_level, str) else log_level
        if level not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {list(_LOG_LEVELS)}, got {log_level!r}")
        self.client_id = client_id
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.max_queue_size = max_queue_size
        self.db_path = db_path
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.log_dir = log_dir
        self.use_tls = use_tls
        self.ca_certs = ca_certs
        self.certfile = certfile
        self.keyfile = keyfile
        self.username = username
        self.password = password
        self._enable_health_check = enable_health_check
        self._health_check_port = health_check_port
        self._health_check_host = health_check_host
        self._health: Any = None  # fieldmq.runtime.httpserver.HealthServer once started
        log.setLevel(level)

        host = f"[{broker_host}]" if ":" in broker_host else broker_host
        url = f"{'mqtts' if use_tls else 'mqtt'}://{host}:{broker_port}"
        tls = TLS(ca_file=ca_certs, cert_file=certfile, key_file=keyfile) if use_tls else None
        backoff = Backoff(
            initial=float(min_backoff), maximum=float(max_backoff), factor=2.0
        )

        self._subs: dict[str, tuple[MessageCallback, int]] = {}
        self._subs_lock = threading.Lock()
        self._stopped = False

        self._client = Client(
            client_id=client_id,
            brokers=[url],
            store=db_path,
            protocol=protocol,
            keepalive=keepalive,
            tls=tls,
            username=username,
            password=password,
            limits=Limits(max_messages=max_queue_size),
            backoff=backoff,
            persistent_session=True,  # robmqtt's clean_session=False
        )
        try:
            self.imported_from_robmqtt = _import_robmqtt_tables(self._client, db_path)
        except BaseException:
            self._client.close(0)
            raise
        log.info("client %s: store %s, broker %s", client_id, db_path, url)

    # -- robmqtt's factory ---------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Config) -> ProductionMQTTClient:
        """Build the client from a :class:`Config` (robmqtt's recommended path)."""
        keys = (
            "client_id", "broker_host", "broker_port", "max_queue_size", "db_path",
            "min_backoff", "max_backoff", "log_dir", "log_level", "use_tls", "ca_certs",
            "certfile", "keyfile", "username", "password", "enable_health_check",
            "health_check_port",
        )
        return cls(**{k: config.get(k) for k in keys})

    # -- properties robmqtt exposed as attributes ------------------------------------------
    @property
    def is_connected(self) -> bool:
        """True while connected to the broker (robmqtt's ``is_connected`` attribute)."""
        return not self._stopped and self._client.connected

    @property
    def current_backoff(self) -> float:
        """robmqtt's backoff attribute: ``min_backoff`` while connected, else the cap
        ``max_backoff`` (fieldmq's delays are jittered below a growing bound)."""
        return self.min_backoff if self.is_connected else self.max_backoff

    @property
    def fieldmq_client(self) -> Client:
        """The underlying :class:`fieldmq.Client`, for what robmqtt did not have
        (``drain()``, ``flush()``, ``stats()``, ``dead_letters()``)."""
        return self._client

    # -- lifecycle --------------------------------------------------------------------------
    def connect(self) -> None:
        """Kept for robmqtt code. The fieldmq client connects, and reconnects with
        backoff, from construction on; like robmqtt's, this never raises for an
        unreachable broker."""
        self._check_running()

    def start(self) -> None:
        """Start the health check server when ``enable_health_check`` was set (the
        network thread already runs). Raises :class:`fieldmq.FieldmqError` when the
        port is taken (robmqtt logged it and ran without the endpoint)."""
        self._check_running()
        if self._enable_health_check and self._health is None:
            from ..runtime.httpserver import HealthServer

            self._health = HealthServer(
                host=self._health_check_host,
                port=self._health_check_port,
                health=self._health_report,
                name=f"fieldmq-health-{self.client_id}",
            )
            log.info("health check at %s/health", self._health.url)

    def stop(self) -> None:
        """Give in-flight messages up to 2 s to be acknowledged, send a clean DISCONNECT,
        stop the threads and the health server, and close the store. Unacknowledged
        messages stay in the store for the next start. Terminal; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._health is not None:
            self._health.close()
            self._health = None
        self._client.close()

    def _check_running(self) -> None:
        if self._stopped:
            raise RuntimeError("this ProductionMQTTClient was stopped; create a new one")

    # -- publishing ---------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: str | bytes,
        qos: int = 0,
        retain: bool = False,
        priority: int = 1,
        *,
        ttl: float | None = None,
    ) -> PublishInfo:
        """Store the message durably, then send it when connected (backlog by priority).

        Raises ``ValueError``/``TypeError`` for a bad topic, payload, QoS or priority
        (1-10), :class:`fieldmq.StoreFull` when ``max_queue_size`` is reached and only
        messages of a higher priority could be evicted, ``RuntimeError`` after ``stop()``.
        ``ttl`` (fieldmq's) drops the message if unacknowledged after that many seconds.
        """
        self._check_running()
        try:
            handle = self._client.publish(
                topic, payload, qos=qos, retain=retain, priority=priority, ttl=ttl
            )
        except StoreFull:
            log.error("message rejected, queue full: topic=%s priority=%s", topic, priority)
            raise
        return PublishInfo(handle)

    # -- subscriptions ------------------------------------------------------------------------
    def subscribe(self, topic: str, callback: MessageCallback, qos: int = 1) -> None:
        """Call ``callback(topic, payload, qos, retain)`` for each matching message.

        Works before the connection is up and is restored after every reconnect.
        Subscribing to the same filter again replaces its callback (as in robmqtt).
        Callbacks run on fieldmq's callback thread, not the network thread.
        """
        self._check_running()
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")

        def deliver(msg: Message) -> None:
            callback(msg.topic, msg.payload, msg.qos, msg.retain)

        with self._subs_lock:
            self._client.subscribe(topic, deliver, qos=qos, replace=True)
            self._subs[topic] = (callback, qos)

    def unsubscribe(self, topic: str) -> None:
        """Send UNSUBSCRIBE for ``topic``; it is no longer restored after reconnects."""
        self._check_running()
        with self._subs_lock:
            removed = self._subs.pop(topic, None)
            self._client.unsubscribe(topic)
        if removed is None:
            log.warning("unsubscribe() for a topic that was not subscribed: %s", topic)

    # -- statistics ---------------------------------------------------------------------------
    def get_statistics(self) -> dict[str, Any]:
        """robmqtt 1.0's statistics, the keys its fleet simulator reads, and fieldmq's.

        ``offline_queue.total_messages`` / ``offline_queue_size``: stored, not yet sent;
        ``inflight_messages`` / ``inflight_count``: sent, awaiting the broker's ack;
        ``capacity_used_percent``: both together against ``max_queue_size`` (the limit
        covers both); ``reconnect_count``: connection drops since start;
        ``dropped``: ``{reason: count}``; ``fieldmq``: :meth:`fieldmq.Client.stats`.
        """
        self._check_running()
        s = self._client.stats()
        queued = int(s["queued"])
        inflight = int(s["inflight"])
        connected = bool(s["connected"])
        with self._subs_lock:
            n_subs = len(self._subs)
        return {
            "connected": connected,
            "current_backoff_seconds": self.min_backoff if connected else self.max_backoff,
            "offline_queue": {
                "total_messages": queued,
                # fieldmq.Client.stats() has no per-priority counts (yet).
                "by_priority": {},
                "oldest_message_age_seconds": s["oldest_age"],
                "capacity_used_percent": (queued + inflight) / self.max_queue_size * 100.0,
            },
            "inflight_messages": inflight,
            "tls_enabled": self.use_tls,
            "active_subscriptions": n_subs,
            "is_connected": connected,
            "offline_queue_size": queued,
            "inflight_count": inflight,
            "reconnect_count": int(s["reconnects"]),
            "dropped": dict(s["dropped"]),
            "fieldmq": s,
        }

    def _health_report(self) -> tuple[int, dict[str, Any]]:
        stats = self.get_statistics()
        if not stats["connected"]:
            status, code = "unhealthy", 503
        elif stats["offline_queue"]["capacity_used_percent"] >= _DEGRADED_PERCENT:
            status, code = "degraded", 200
        else:
            status, code = "healthy", 200
        return code, {"status": status, "client_id": self.client_id, "statistics": stats}

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else (
            "connected" if self._client.connected else "disconnected")
        return (f"ProductionMQTTClient(client_id={self.client_id!r}, "
                f"broker={self.broker_host}:{self.broker_port}, {state})")


def _import_robmqtt_tables(client: Client, db_path: str) -> int:
    """Move the messages robmqtt left in ``db_path`` into the fieldmq store.

    robmqtt's ``inflight_messages`` (sent, unacknowledged) go first at priority 10, then
    its ``offline_queue`` by priority and age. Rows are deleted from robmqtt's tables
    only after the fieldmq store fsync'd them, so a crash in between duplicates (at
    least once), never loses. A row fieldmq refuses (bad topic) is left where it is and
    logged. Returns the number moved.
    """
    if not os.path.exists(db_path):
        return 0
    with contextlib.closing(sqlite3.connect(db_path, timeout=30.0)) as db:
        tables = {
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        rows: list[tuple[str, Any, str, bytes | str, int, int, int]] = []
        if "inflight_messages" in tables:
            rows += [
                ("inflight_messages", pid, t, p, q, r, _INFLIGHT_IMPORT_PRIORITY)
                for pid, t, p, q, r in db.execute(
                    "SELECT packet_id, topic, payload, qos, retain FROM inflight_messages "
                    "ORDER BY timestamp, rowid"
                )
            ]
        if "offline_queue" in tables:
            rows += [
                ("offline_queue", i, t, p, q, r, max(1, min(10, int(pr or 1))))
                for i, t, p, q, r, pr in db.execute(
                    "SELECT id, topic, payload, qos, retain, priority FROM offline_queue "
                    "ORDER BY priority DESC, timestamp ASC, id ASC"
                )
            ]
        if not rows:
            return 0
        moved: list[tuple[str, Any]] = []
        for table, key, topic, payload, qos, retain, priority in rows:
            try:
                client.publish(topic, payload, qos=int(qos), retain=bool(retain),
                               priority=priority)
            except (ValueError, TypeError, PublishError, StoreFull) as exc:
                log.error("robmqtt row %s/%s (topic %r) not imported: %s",
                          table, key, topic, exc)
                if isinstance(exc, StoreFull):
                    break
                continue
            moved.append((table, key))
        if not client.flush(30.0):
            raise FieldmqError(f"{db_path}: the imported robmqtt messages could not be synced")
        with db:
            for table, key in moved:
                column = "packet_id" if table == "inflight_messages" else "id"
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))
        log.warning("moved %d message(s) left by robmqtt in %s into the fieldmq store",
                    len(moved), db_path)
        return len(moved)
