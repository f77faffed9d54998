"""Subscription confirmation, unsubscribe, replacing callbacks, many descriptors, and
messages that arrive before their subscription's callback exists."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from fieldmq import Client, SubscribeFailed
from fieldmq.client.inbound import Unrouted
from fieldmq.testing import MosquittoBroker, free_port
from helpers import Collector, wait_until


def test_subscribe_with_timeout_returns_once_the_broker_confirmed(
    mosquitto: MosquittoBroker, topic: str, collector: Collector
) -> None:
    """subscribe(timeout=...) returns after SUBACK: a publish right after is received."""
    with Client(client_id="conf-sub", brokers=[mosquitto.url]) as sub, \
            Client(client_id="conf-pub", brokers=[mosquitto.url]) as pub:
        sub.subscribe(f"{topic}/#", collector, timeout=10)
        pub.publish(f"{topic}/a", b"first").wait(10)
        assert collector.wait_count(1)
        assert collector.messages[0].payload == b"first"


def test_wait_subscribed_times_out_while_offline(tmp_path: Path) -> None:
    """With no broker, waiting for a confirmation raises TimeoutError naming the filter."""
    with Client(client_id="off-sub", brokers=[f"mqtt://127.0.0.1:{free_port()}"]) as c:
        c.subscribe("a/#", print)
        with pytest.raises(TimeoutError, match="a/#"):
            c.wait_subscribed(0.3)


@pytest.mark.timeout(120)
def test_refused_subscription_raises(tmp_path: Path) -> None:
    """A filter the broker refuses (NATS refuses '.' in MQTT filters) raises
    SubscribeFailed naming it; the others stay confirmed."""
    from fieldmq.testing import NatsCluster

    with NatsCluster(nodes=1, workdir=tmp_path / "nats") as nats, Client(
        client_id="refused", brokers=[nats.mqtt_urls[0]], protocol=4, connect_timeout=15
    ) as c:
        c.subscribe("allowed/#", print, timeout=30)
        with pytest.raises(SubscribeFailed, match=r"v1\.0/#"):
            c.subscribe("v1.0/#", print, timeout=30)


def test_unsubscribe_stops_delivery_and_is_not_restored(
    mosquitto: MosquittoBroker, topic: str, collector: Collector
) -> None:
    """After unsubscribe() nothing more arrives, also not after a reconnect."""
    with Client(client_id="unsub", brokers=[mosquitto.url], persistent_session=True) as sub, \
            Client(client_id="unsub-pub", brokers=[mosquitto.url]) as pub:
        sub.subscribe(f"{topic}/x", collector, timeout=10)
        sub.subscribe(f"{topic}/probe", collector, timeout=10)
        pub.publish(f"{topic}/x", b"1").wait(10)
        assert collector.wait_count(1)
        assert sub.unsubscribe(f"{topic}/x") is True
        assert sub.unsubscribe(f"{topic}/never") is False
        mosquitto.stop()
        mosquitto.start()
        assert wait_until(lambda: sub.connected, timeout=30)
        sub.wait_subscribed(10)
        pub.publish(f"{topic}/x", b"2").wait(20)
        pub.publish(f"{topic}/probe", b"p").wait(10)
        assert collector.wait_for(lambda ms: any(m.payload == b"p" for m in ms))
    assert [m.payload for m in collector.messages if m.topic.endswith("/x")] == [b"1"]


def test_replace_swaps_the_callback(mosquitto: MosquittoBroker, topic: str) -> None:
    """replace=True leaves only the new callback on the filter."""
    old, new = Collector(), Collector()
    with Client(client_id="repl", brokers=[mosquitto.url]) as c:
        c.subscribe(f"{topic}/#", old, timeout=10)
        c.subscribe(f"{topic}/#", new, replace=True, timeout=10)
        c.publish(f"{topic}/m", b"x").wait(10)
        assert new.wait_count(1)
    assert old.messages == []


def test_works_with_descriptors_above_1024(mosquitto: MosquittoBroker, tmp_path: Path,
                                           topic: str) -> None:
    """A process that already holds over 1,024 descriptors still connects and delivers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard descriptor limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with Client(client_id="many-fds", brokers=[mosquitto.url],
                    store=tmp_path / "f.db") as c:
            c.publish(f"{topic}/fd", b"x").wait(10)
            assert c.stats()["internal_errors"] == 0
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_loop_age_stays_fresh_while_offline() -> None:
    """An offline client backing off is alive: its loop age stays small (watchdog)."""
    with Client(client_id="age", brokers=[f"mqtt://127.0.0.1:{free_port()}"]) as c:
        assert wait_until(lambda: c.stats()["reconnects"] >= 0 and c.stats()["last_error"]
                          is not None)
        ages = []
        for _ in range(5):
            ages.append(c.stats()["loop_age"])
            wait_until(lambda: False, timeout=0.3)
        assert max(ages) < 2.0


def test_unrouted_holds_in_order_until_a_subscription_matches() -> None:
    """Held messages come out once a subscription change finds callbacks for them, in
    arrival order, with those callbacks; the others stay held."""
    held: Unrouted[tuple[str, int]] = Unrouted(lambda m: m[0])
    for i, t in enumerate(["a/1", "b/1", "a/2", "c/1"]):
        assert held.hold((t, i)) is None
    subs: dict[str, list[str]] = {}

    def route(topic: str) -> list[str]:
        return subs.get(topic.split("/")[0], [])

    assert held.release(route) == []  # no subscription change yet
    subs["a"] = ["cb-a"]
    assert held.release(route) == []  # a change not announced is not looked at
    held.subscriptions_changed()
    assert held.release(route) == [(("a/1", 0), ["cb-a"]), (("a/2", 2), ["cb-a"])]
    assert len(held) == 2 and held.release(route) == []
    subs["c"], subs["b"] = ["cb-c"], ["cb-b"]
    held.subscriptions_changed()
    assert held.release(route) == [(("b/1", 1), ["cb-b"]), (("c/1", 3), ["cb-c"])]
    assert len(held) == 0


def test_unrouted_gives_up_the_oldest_past_its_limit() -> None:
    """Bounded memory: past ``limit`` the oldest message is handed back to be acknowledged."""
    held: Unrouted[str] = Unrouted(lambda m: m, limit=2)
    assert held.hold("x/1") is None and held.hold("x/2") is None
    assert held.hold("x/3") == "x/1"
    assert len(held) == 2
    with pytest.raises(ValueError, match="limit"):
        Unrouted(lambda m: m, limit=0)


@pytest.mark.parametrize("ack", ["auto", "after_callback", "manual"])
def test_a_persistent_sessions_backlog_waits_for_the_subscribe_call(
    mosquitto: MosquittoBroker, topic: str, ack: str
) -> None:
    """The broker sends a persistent session's backlog right after CONNACK, before the
    application's subscribe() call: those messages reach the callback once it is
    subscribed, in order, none lost (they were dropped, issue 8's rollup loss)."""
    url = mosquitto.url
    data, marker = Collector(), Collector()
    with Client(client_id="backlog", brokers=[url], persistent_session=True) as s:
        s.subscribe(f"{topic}/data/#", data, timeout=10)
    with Client(client_id="backlog-pub", brokers=[url]) as pub:
        for h in [pub.publish(f"{topic}/data/{i}", str(i)) for i in range(10)]:
            h.wait(10)
        with Client(client_id="backlog", brokers=[url], persistent_session=True,
                    ack=ack) as s:  # type: ignore[arg-type]
            s.subscribe(f"{topic}/marker", marker, timeout=10)
            pub.publish(f"{topic}/marker", b"m").wait(10)
            # The broker sent the backlog before the marker and the client hands messages
            # to callbacks in arrival order: the backlog arrived with no callback for it.
            assert marker.wait_count(1)
            assert data.messages == []
            s.subscribe(f"{topic}/data/#", lambda m: (data(m), m.ack()))
            assert data.wait_count(10, 10)
            assert [m.payload for m in data.messages] == [str(i).encode() for i in range(10)]
