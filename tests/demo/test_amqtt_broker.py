"""The demo's fallback broker (amqtt in a process) and the broker choice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fieldmq import Client
from fieldmq.demo.broker import AmqttBroker, choose_broker
from fieldmq.testing import MosquittoBroker, free_port
from helpers import Collector


def test_amqtt_keeps_messages_for_a_named_persistent_session(tmp_path: Path) -> None:
    """With a user name, amqtt queues QoS1 messages for an absent persistent subscriber,
    and the fieldmq envelope carries message ids over MQTT 3.1.1."""
    broker = AmqttBroker(port=free_port(), workdir=tmp_path).start()
    try:
        got = Collector()
        sub = Client(client_id="am-sub", brokers=[broker.url], protocol=4,
                     persistent_session=True)
        sub.subscribe("demo/#", got)
        assert sub.wait_connected(10)
        with Client(client_id="am-probe", brokers=[broker.url], protocol=4) as probe:
            probe.publish("demo/probe", b"p").wait(10)
        assert got.wait_count(1)
        sub.close()
        with Client(client_id="am-pub", brokers=[broker.url], protocol=4, envelope=True,
                    store=tmp_path / "p.db") as pub:
            handles = [pub.publish("demo/x", str(i).encode()) for i in range(20)]
            for h in handles:
                h.wait(10)
        again = Client(client_id="am-sub", brokers=[broker.url], protocol=4,
                       persistent_session=True)
        again.subscribe("demo/#", got)
        try:
            assert got.wait_count(21)
        finally:
            again.close()
        ids = {m.message_id for m in got.messages if m.topic == "demo/x"}
        assert ids == {h.message_id for h in handles}
    finally:
        broker.close()


def test_amqtt_stop_and_start_again(tmp_path: Path) -> None:
    """The fallback broker stops and starts on the same port, as the outage needs."""
    broker = AmqttBroker(port=free_port(), workdir=tmp_path).start()
    try:
        broker.stop()
        assert not broker.running
        broker.start()
        with Client(client_id="am-restart", brokers=[broker.url], protocol=4) as c:
            c.publish("demo/y", b"1").wait(10)
    finally:
        broker.close()


def test_choose_broker(tmp_path: Path) -> None:
    """mosquitto is preferred when installed; amqtt can be asked for; bad names are refused."""
    auto = choose_broker(port=free_port(), workdir=tmp_path)
    assert isinstance(auto, MosquittoBroker) or os.environ.get("FIELDMQ_NO_MOSQUITTO")
    assert isinstance(choose_broker(port=1, workdir=tmp_path, prefer="amqtt"), AmqttBroker)
    with pytest.raises(ValueError, match="auto, mosquitto or amqtt"):
        choose_broker(port=1, workdir=tmp_path, prefer="hivemq")
