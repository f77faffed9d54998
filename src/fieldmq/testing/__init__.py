"""What fieldmq's users need to test their own code: a real mosquitto broker,
a NATS cluster with MQTT, a TCP fault proxy with a scripted timeline,
a fake clock, and pytest fixtures (``mosquitto``, ``mosquitto_factory``,
``fake_clock``) that are available once fieldmq is installed."""

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
    "free_port",
]
