"""pytest fixtures shipped with fieldmq (registered through the ``pytest11`` entry point).

* ``mosquitto``: a :class:`MosquittoBroker` started for the test, removed after it.
* ``mosquitto_factory``: call it to start more brokers (failover tests); all are removed.
* ``fake_clock``: a :class:`FakeClock`.

When mosquitto is not installed the fixtures fail with the command that installs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .broker import MosquittoBroker
from .clock import FakeClock


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A running mosquitto on an ephemeral 127.0.0.1 port, private to this test."""
    broker = MosquittoBroker(workdir=tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., MosquittoBroker]]:
    """Start extra brokers: ``mosquitto_factory(**MosquittoBroker kwargs)``."""
    made: list[MosquittoBroker] = []

    def make(**kwargs: Any) -> MosquittoBroker:
        kwargs.setdefault("workdir", tmp_path_factory.mktemp("mosquitto"))
        broker = MosquittoBroker(**kwargs)
        made.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in made:
            broker.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()
