"""fieldmq: move device data over MQTT without losing it."""

from __future__ import annotations

from .backoff import Backoff
from .client.client import Client
from .client.config import TLS, Limits, Will
from .client.handle import BatchHandle, PublishHandle
from .client.identity import Deduplicator, unwrap
from .client.message import Message
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
from .ingest import (
    BatchPolicy,
    DetectorConfig,
    EdgeRollup,
    IngestConfig,
    Ingestor,
    MemorySink,
    SinkError,
    SinkLocked,
    open_sink,
)
from .ratelimit import RateLimit
from .runtime import (
    AlreadyRunning,
    DeviceTopics,
    HealthThresholds,
    Service,
    ServiceConfig,
)

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "AlreadyRunning",
    "Backoff",
    "BatchHandle",
    "BatchPolicy",
    "Client",
    "ConfigError",
    "ConnectionFailed",
    "Deduplicator",
    "DetectorConfig",
    "DeviceTopics",
    "EdgeRollup",
    "FieldmqError",
    "ForkError",
    "HealthThresholds",
    "IngestConfig",
    "Ingestor",
    "Limits",
    "MemorySink",
    "Message",
    "PublishDropped",
    "PublishError",
    "PublishExpired",
    "PublishHandle",
    "RateLimit",
    "Service",
    "ServiceConfig",
    "SinkError",
    "SinkLocked",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "Will",
    "__version__",
    "open_sink",
    "unwrap",
]
