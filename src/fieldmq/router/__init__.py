"""The router: topics to handlers, middleware, and supervised worker processes.

::

    from fieldmq.router import Router

    router = Router(name="plant")

    @router.route("sensors/{device_id}/data", shared=True, workers=3)
    def on_data(message, device_id):
        store(device_id, message.json())

Run it with ``fieldmq run myapp:router``; test it with
:class:`fieldmq.router.testing.StubBroker`. See ``docs/router.md``.
"""

from __future__ import annotations

from .deadletter import DeadLetter, DeadLetterStore
from .dispatch import Outcome
from .errors import (
    CrashLoop,
    DeadLetterError,
    HandlingError,
    InvalidMessage,
    RouterError,
    Skip,
    TimeLimitExceeded,
)
from .keyratelimit import KeyRateLimit
from .message import RoutedMessage
from .middleware import Middleware
from .patterns import Pattern, compile_pattern
from .restarts import RestartPolicy
from .retries import Retries
from .routes import Route, RouteGroup, Router
from .scaling import ScalingPolicy
from .supervisor import RunSettings, Supervisor
from .timelimit import TimeLimit
from .validation import Validate

__all__ = [
    "CrashLoop",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterStore",
    "HandlingError",
    "InvalidMessage",
    "KeyRateLimit",
    "Middleware",
    "Outcome",
    "Pattern",
    "RestartPolicy",
    "Retries",
    "Route",
    "RouteGroup",
    "RoutedMessage",
    "Router",
    "RouterError",
    "RunSettings",
    "ScalingPolicy",
    "Skip",
    "Supervisor",
    "TimeLimit",
    "TimeLimitExceeded",
    "Validate",
    "compile_pattern",
]
