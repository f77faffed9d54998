"""Fixtures for the robmqtt compatibility tests: clients that are stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq import Message
from fieldmq.compat.robmqtt import MessageCallback, ProductionMQTTClient
from fieldmq.testing import MosquittoBroker
from helpers import Collector

RobFactory = Callable[..., ProductionMQTTClient]
SubscriberFactory = Callable[[str, Collector, str], ProductionMQTTClient]


@pytest.fixture
def rob(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[RobFactory]:
    """``rob(name, **kw)``: a connected-and-started ProductionMQTTClient on the test's
    mosquitto, store ``<tmp>/<name>.db``, fast reconnects; stopped after the test."""
    made: list[ProductionMQTTClient] = []

    def make(name: str, **kw: Any) -> ProductionMQTTClient:
        kw.setdefault("db_path", str(tmp_path / f"{name}.db"))
        kw.setdefault("min_backoff", 0.05)
        kw.setdefault("max_backoff", 0.5)
        client = ProductionMQTTClient(name, mosquitto.host, mosquitto.port, **kw)
        made.append(client)
        client.connect()
        client.start()
        return client

    try:
        yield make
    finally:
        for client in made:
            client.stop()


def as_callback(collector: Collector) -> MessageCallback:
    """robmqtt's ``(topic, payload, qos, retain)`` callback feeding a Collector."""

    def callback(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        collector(Message(topic=topic, payload=payload, qos=qos, retain=retain))

    return callback


@pytest.fixture
def rob_subscriber(rob: RobFactory) -> SubscriberFactory:
    """``rob_subscriber(filter, collector, name)``: a subscriber proven live by probes."""

    def make(flt: str, collector: Collector, name: str) -> ProductionMQTTClient:
        sub = rob(name)
        sub.subscribe(flt, as_callback(collector), qos=1)
        probe = flt.rstrip("#") + "probe"
        prober = rob(name + "-probe")
        for _ in range(200):
            prober.publish(probe, b"p", qos=1).wait_for_publish(10)
            if collector.wait_for(lambda ms: any(m.topic == probe for m in ms), 0.2):
                prober.stop()
                return sub
        raise AssertionError(f"subscription {flt} never became live")

    return make
