"""Shared fixtures. Broker fixtures come from fieldmq.testing (the pytest plugin)."""

from __future__ import annotations

import itertools

import pytest

from helpers import Collector

_counter = itertools.count()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to this test."""
    return f"test/{request.node.name[:40]}/{next(_counter)}"


@pytest.fixture
def collector() -> Collector:
    return Collector()
