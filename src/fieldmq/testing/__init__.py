"""What fieldmq's users need to test their own code: a real mosquitto broker,
a fake clock, and pytest fixtures (``mosquitto``, ``mosquitto_factory``,
``fake_clock``) that are available once fieldmq is installed."""

from __future__ import annotations

from .broker import MosquittoBroker, MosquittoNotFound, free_port
from .clock import FakeClock

__all__ = ["FakeClock", "MosquittoBroker", "MosquittoNotFound", "free_port"]
