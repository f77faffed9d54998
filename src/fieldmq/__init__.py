"""fieldmq: move device data over MQTT without losing it."""

from __future__ import annotations

from .backoff import Backoff
from .client.config import TLS, Limits, Will
from .errors import (
    ConfigError,
    ConnectionFailed,
    FieldmqError,
    ForkError,
    PublishDropped,
    PublishError,
    PublishExpired,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
)

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "Backoff",
    "ConfigError",
    "ConnectionFailed",
    "FieldmqError",
    "ForkError",
    "Limits",
    "PublishDropped",
    "PublishError",
    "PublishExpired",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "Will",
    "__version__",
]
