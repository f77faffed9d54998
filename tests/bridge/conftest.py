"""Fixtures for the bridge tests: two brokers and a bridge between them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fieldmq import Client
from fieldmq.bridge import Bridge, BridgeConfig, parse_config
from fieldmq.testing import MosquittoBroker

_ids = itertools.count()


@pytest.fixture
def brokers(
    mosquitto_factory: Callable[..., MosquittoBroker],
) -> tuple[MosquittoBroker, MosquittoBroker]:
    """A local and an upstream mosquitto that log subscriptions (see ``subscribed``)."""
    return (mosquitto_factory(extra_config="log_type subscribe"),
            mosquitto_factory(extra_config="log_type subscribe"))


@pytest.fixture
def make_bridge(
    brokers: tuple[MosquittoBroker, MosquittoBroker], tmp_path: Path
) -> Iterator[Callable[..., Bridge]]:
    """``make_bridge(table)``: a started bridge from a TOML-like dict (URLs filled in)."""
    made: list[Bridge] = []
    local, upstream = brokers

    def make(table: dict[str, Any], *, start: bool = True, state: str | None = None,
             urls: tuple[str, str] | None = None) -> Bridge:
        table = dict(table)
        table.setdefault("id", f"br{next(_ids)}")
        cfg: BridgeConfig = parse_config(table, source="test.toml").with_urls(
            *(urls or (local.url, upstream.url)))
        bridge = Bridge(cfg, state_dir=tmp_path / (state or cfg.id))
        made.append(bridge)
        return bridge.start() if start else bridge

    yield make
    for b in made:
        b.close(timeout=0.2)


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """``make_client(url, **kwargs)``: a fieldmq client closed after the test."""
    made: list[Client] = []

    def make(url: str, **kwargs: Any) -> Client:
        kwargs.setdefault("client_id", f"t{next(_ids)}")
        c = Client(brokers=[url], **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close(timeout=0.2)
