"""fieldmq: move device data over MQTT without losing it."""

from __future__ import annotations

from .backoff import Backoff
from .bridge import Bridge, BridgeConfig, BridgeMapping
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
    SubscribeFailed,
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
from .router import (
    DeadLetterStore,
    InvalidMessage,
    KeyRateLimit,
    Middleware,
    Retries,
    RoutedMessage,
    RouteGroup,
    Router,
    RouterError,
    Skip,
    TimeLimit,
    Validate,
)
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
    "Bridge",
    "BridgeConfig",
    "BridgeMapping",
    "Client",
    "ConfigError",
    "ConnectionFailed",
    "DeadLetterStore",
    "Deduplicator",
    "DetectorConfig",
    "DeviceTopics",
    "EdgeRollup",
    "FieldmqError",
    "ForkError",
    "HealthThresholds",
    "IngestConfig",
    "Ingestor",
    "InvalidMessage",
    "KeyRateLimit",
    "Limits",
    "MemorySink",
    "Message",
    "Middleware",
    "PublishDropped",
    "PublishError",
    "PublishExpired",
    "PublishHandle",
    "RateLimit",
    "Retries",
    "RouteGroup",
    "RoutedMessage",
    "Router",
    "RouterError",
    "Service",
    "ServiceConfig",
    "SinkError",
    "SinkLocked",
    "Skip",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "SubscribeFailed",
    "TimeLimit",
    "Validate",
    "Will",
    "__version__",
    "open_sink",
    "unwrap",
]
