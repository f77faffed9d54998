"""The exception tree of fieldmq.

Operational failures (the network, the disk, the broker) raise a subclass of
:class:`FieldmqError`. Misuse of the API (a wildcard in a publish topic, a
priority out of range, a closed client) raises ``ValueError``, ``TypeError``
or ``RuntimeError`` with a message saying what to do instead.

::

    FieldmqError
    ├── ConnectionFailed          could not reach any broker / the link failed
    │   └── SubscribeFailed       the broker refused a subscription
    ├── StoreError                the local durable store
    │   ├── StoreFull             limits reached and the message was rejected
    │   ├── StoreCorrupt          the store file could not be read
    │   └── StoreLocked           another process holds this store
    ├── PublishError              one message did not make it
    │   ├── PublishDropped        dropped by policy (evicted, rejected by the broker...)
    │   └── PublishExpired        its TTL elapsed before the broker acknowledged it
    ├── ForkError                 a client was used in a forked child against its policy
    ├── AlreadyRunning            another instance of this service holds its lock
    │                             (fieldmq.runtime.lock; exit status 75)
    └── ConfigError               a configuration value is invalid (names key and source)

Lower-layer errors (``sqlite3.Error``, ``OSError``, paho return codes) are
translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectionFailed",
    "FieldmqError",
    "ForkError",
    "PublishDropped",
    "PublishError",
    "PublishExpired",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "SubscribeFailed",
]


class FieldmqError(Exception):
    """Base class of every operational failure raised by fieldmq."""


class ConnectionFailed(FieldmqError):
    """No broker could be reached, or the connection failed."""


class SubscribeFailed(ConnectionFailed):
    """The broker refused a subscription (e.g. not authorised for that filter)."""


class StoreError(FieldmqError):
    """The local durable store failed."""


class StoreFull(StoreError):
    """The store's limits are reached and the new message was rejected."""


class StoreCorrupt(StoreError):
    """The store file could not be read as a fieldmq store."""


class StoreLocked(StoreError):
    """Another process has this store open."""


class PublishError(FieldmqError):
    """A message was not delivered. ``reason`` says why, ``message_id`` which one."""

    def __init__(self, message: str, *, reason: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message_id = message_id


class PublishDropped(PublishError):
    """The message was dropped by policy (eviction, broker rejection, offline QoS 0...)."""


class PublishExpired(PublishError):
    """The message's TTL elapsed before the broker acknowledged it."""


class ForkError(FieldmqError, RuntimeError):
    """A client created before ``fork()`` was used in the child against its fork policy."""


class ConfigError(FieldmqError, ValueError):
    """A configuration value is invalid. ``key`` and ``source`` say which and where from."""

    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.source = source
