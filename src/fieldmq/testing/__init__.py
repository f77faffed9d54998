"""What fieldmq's users need to test their own code: a real mosquitto broker,
a NATS cluster with MQTT, a TCP fault proxy with a scripted timeline,
a fake clock, an in-memory ``StubBroker`` for router code, and pytest fixtures
(``mosquitto``, ``mosquitto_factory``, ``fake_clock``) available once fieldmq is installed."""

from __future__ import annotations

from .broker import MosquittoBroker, MosquittoNotFound, free_port
from .clock import FakeClock
from .faultproxy import FaultMode, FaultProxy, FaultSchedule
from .nats import NatsCluster, NatsNotFound

__all__ = [
    "FakeClock",
    "FaultMode",
    "FaultProxy",
    "FaultSchedule",
    "MosquittoBroker",
    "MosquittoNotFound",
    "NatsCluster",
    "NatsNotFound",
    "StubBroker",
    "free_port",
]


def __getattr__(name: str) -> object:
    # StubBroker (routes without a broker) lives with the router; import it on demand.
    if name == "StubBroker":
        from ..router.testing import StubBroker

        return StubBroker
    raise AttributeError(name)
