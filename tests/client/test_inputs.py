"""Bad input raises a clear error at the call and never wedges the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fieldmq import TLS, Client, Limits, StoreFull, Will
from fieldmq.testing import MosquittoBroker, free_port


@pytest.fixture
def offline(tmp_path: Path) -> Any:
    c = Client(client_id="bad", brokers=[f"mqtt://127.0.0.1:{free_port()}"],
               store=tmp_path / "bad.db")
    yield c
    c.close(0)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "words"),
    [
        (("a/+/b", b"x"), {}, ValueError, "wildcards"),
        (("a/#", b"x"), {}, ValueError, "wildcards"),
        (("", b"x"), {}, ValueError, "empty"),
        (("a" * 65536, b"x"), {}, ValueError, "65535"),
        (("a\x00b", b"x"), {}, ValueError, "NUL"),
        ((b"bytes-topic", b"x"), {}, TypeError, "str"),
        (("t", 12.5), {}, TypeError, "payload"),
        (("t", {"a": 1}), {}, TypeError, "json.dumps"),
        (("t", b"x"), {"qos": 3}, ValueError, "qos"),
        (("t", b"x"), {"qos": True}, ValueError, "qos"),
        (("t", b"x"), {"priority": 0}, ValueError, "priority"),
        (("t", b"x"), {"priority": 11}, ValueError, "priority"),
        (("t", b"x"), {"priority": 5.0}, ValueError, "priority"),
        (("t", b"x"), {"ttl": 0}, ValueError, "ttl"),
        (("t", b"x"), {"ttl": -1}, ValueError, "ttl"),
        (("t", b"x"), {"user_properties": {"a": 1}}, TypeError, "user_properties"),
    ],
)
def test_bad_publish_arguments(offline: Client, args: tuple[Any, ...], kwargs: dict[str, Any],
                               exc: type[Exception], words: str) -> None:
    """Each bad publish argument raises its documented error naming the problem."""
    with pytest.raises(exc, match=words):
        offline.publish(*args, **kwargs)
    # The client still accepts a valid message afterwards.
    assert offline.publish("ok/topic", b"fine").status == "queued"
    assert offline.stats()["queued"] == 1


def test_oversized_payload_rejected(offline: Client) -> None:
    """A payload over MQTT's 256 MB packet limit is refused before it is stored."""
    big = memoryview(bytearray(268_435_456))
    with pytest.raises(ValueError, match="at most"):
        offline.publish("t", big)
    assert offline.stats()["queued"] == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"brokers": ["127.0.0.1:1883"]}, ValueError, "no scheme"),
        ({"brokers": ["http://host"]}, ValueError, "unknown scheme"),
        ({"brokers": ["mqtt://host:99999"]}, ValueError, "port"),
        ({"brokers": ["mqtt://:1883"]}, ValueError, "no host"),
        ({"brokers": []}, ValueError, "at least one"),
        ({"brokers": [1883]}, TypeError, "URL"),
        ({"client_id": ""}, ValueError, "client_id"),
        ({"protocol": 3}, ValueError, "protocol"),
        ({"window": 70000}, ValueError, "window"),
        ({"keepalive": 0}, ValueError, "keepalive"),
        ({"fork": "ignore"}, ValueError, "fork"),
        ({"durability": "maybe"}, ValueError, "durability"),
        ({"tls": "yes"}, TypeError, "TLS"),
    ],
)
def test_bad_constructor_arguments(tmp_path: Path, kwargs: dict[str, Any],
                                   exc: type[Exception], words: str) -> None:
    """Bad construction arguments raise at construction with a clear message."""
    base: dict[str, Any] = {"client_id": "c", "brokers": ["mqtt://127.0.0.1:1"],
                            "store": tmp_path / "c.db"}
    base.update(kwargs)
    with pytest.raises(exc, match=words):
        Client(**base)


def test_missing_tls_files_raise_at_construction(tmp_path: Path) -> None:
    """A missing CA, certificate or key file is reported when TLS() is built."""
    with pytest.raises(FileNotFoundError, match="CA"):
        TLS(ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(FileNotFoundError, match="certificate"):
        TLS(cert_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match="cert_file"):
        (tmp_path / "k.pem").write_text("x")
        TLS(key_file=str(tmp_path / "k.pem"))


def test_bad_will_and_limits() -> None:
    """Will and Limits validate their fields."""
    with pytest.raises(ValueError, match="wildcards"):
        Will(topic="a/#")
    with pytest.raises(ValueError, match="qos"):
        Will(topic="a", qos=5)
    with pytest.raises(ValueError, match="max_messages"):
        Limits(max_messages=0)
    with pytest.raises(ValueError, match="qos0_offline"):
        Limits(qos0_offline="keep")  # type: ignore[arg-type]


def test_bad_subscribe_arguments(offline: Client) -> None:
    """Invalid filters, QoS and callbacks are refused by subscribe()."""
    with pytest.raises(ValueError, match="#"):
        offline.subscribe("a/#/b", print)
    with pytest.raises(ValueError, match=r"\+"):
        offline.subscribe("a/b+/c", print)
    with pytest.raises(TypeError, match="callable"):
        offline.subscribe("a/b", "not a function")  # type: ignore[arg-type]


def test_publish_many_validates_everything_first(offline: Client) -> None:
    """One bad item in a batch raises naming its index, and nothing of it is stored."""
    with pytest.raises(ValueError, match="item 2"):
        offline.publish_many([("a", b"1"), ("b", b"2"), ("c/#", b"3")])
    assert offline.stats()["queued"] == 0
    batch = offline.publish_many([("a", b"1"), {"topic": "b", "payload": "2", "priority": 9}])
    assert batch.size == 2 and offline.stats()["queued"] == 2


def test_closed_client_refuses_use(tmp_path: Path) -> None:
    """Using a closed client raises RuntimeError telling to create a new one."""
    c = Client(client_id="closed", brokers=["mqtt://127.0.0.1:1"], store=tmp_path / "x.db")
    c.close(0)
    with pytest.raises(RuntimeError, match="closed"):
        c.publish("t", b"x")
    c.close()  # idempotent


def test_limits_evict_lowest_priority_oldest(tmp_path: Path) -> None:
    """A full store evicts the lowest-priority oldest message and never a higher one."""
    c = Client(client_id="lim", brokers=[f"mqtt://127.0.0.1:{free_port()}"],
               store=tmp_path / "lim.db", limits=Limits(max_messages=3))
    try:
        low_old = c.publish("t", b"1", priority=2)
        low_new = c.publish("t", b"2", priority=2)
        high = c.publish("t", b"3", priority=8)
        c.publish("t", b"4", priority=5)  # evicts low_old
        assert low_old.status == "dropped" and low_old.reason == "evicted"
        assert low_new.status == "queued" and high.status == "queued"
        c.publish("t", b"5", priority=8)  # evicts low_new
        c.publish("t", b"6", priority=8)  # evicts the priority-5 message
        with pytest.raises(StoreFull, match="priority <= 1"):
            c.publish("t", b"7", priority=1)
        stats = c.stats()
        assert stats["dropped"] == {"evicted": 3, "rejected": 1}
        assert stats["queued"] == 3 and high.status == "queued"
    finally:
        c.close(0)


def test_qos0_offline_drop_policy_is_counted(tmp_path: Path) -> None:
    """With qos0_offline='drop', offline QoS 0 messages are dropped visibly, not silently."""
    c = Client(client_id="q0", brokers=[f"mqtt://127.0.0.1:{free_port()}"],
               store=tmp_path / "q0.db", limits=Limits(qos0_offline="drop"))
    try:
        h = c.publish("t", b"x", qos=0)
        assert h.status == "dropped" and h.reason == "offline"
        assert c.stats()["dropped"] == {"offline": 1}
        assert c.publish("t", b"y", qos=1).status == "queued"
    finally:
        c.close(0)


def test_qos0_offline_default_is_stored(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """By default offline QoS 0 messages are stored and sent once connected."""
    mosquitto.stop()
    with Client(client_id="q0s", brokers=[mosquitto.url], store=tmp_path / "q.db") as c:
        h = c.publish("t/q0", b"x", qos=0)
        assert h.status == "queued"
        mosquitto.start()
        h.wait(20)
        assert h.status == "acked"


def test_topics_seen_before_are_still_exact(offline: Client) -> None:
    """A topic published before is not checked again (a cache), yet a str subclass, a
    similar bad topic and bytes are still refused, and the stored topic is exact."""

    class Topic(str):
        pass

    for _ in range(2):
        offline.publish("plant/dev/täglich", b"x")
        offline.publish_many([("plant/dev/täglich", b"y")])
    with pytest.raises(ValueError, match="wildcards"):
        offline.publish("plant/dev/+", b"x")
    with pytest.raises(TypeError):
        offline.publish(b"plant/dev/t\xc3\xa4glich", b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wildcards"):
        offline.publish(Topic("plant/#"), b"x")
    assert offline.publish(Topic("plant/dev/täglich"), b"z").seq > 0
    assert offline.stats()["queued_bytes"] == 5 * (len("plant/dev/täglich".encode()) + 1)
