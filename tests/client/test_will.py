"""Last will: published when the link dies, not on a clean close."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fieldmq import Client, RateLimit, Will
from fieldmq.testing import FaultProxy, MosquittoBroker, free_port
from helpers import Collector, wait_until


def test_will_published_on_dead_link_not_on_clean_close(
    mosquitto: MosquittoBroker, topic: str, collector: Collector
) -> None:
    """A reset link makes the broker publish the will; close() sends DISCONNECT, no will."""
    will = Will(topic=f"{topic}/status", payload=b"offline", retain=False)
    with Client(client_id="will-sub", brokers=[mosquitto.url]) as sub:
        sub.subscribe(f"{topic}/#", collector)
        assert sub.wait_connected(10)
        with FaultProxy(upstream=("127.0.0.1", mosquitto.port)) as proxy:
            clean = Client(client_id="will-clean", brokers=[proxy.url], will=will)
            assert clean.wait_connected(10)
            clean.close()
            dying = Client(client_id="will-dying", brokers=[proxy.url], will=will)
            assert dying.wait_connected(10)
            assert wait_until(
                lambda: dying.publish(f"{topic}/probe", b"p").wait(10) is None
                and collector.wait_for(lambda ms: any(m.payload == b"p" for m in ms), 0.5)
            )
            proxy.reset()
            assert collector.wait_for(lambda ms: any(m.payload == b"offline" for m in ms))
            dying.close(0)
    wills = [m for m in collector.messages if m.payload == b"offline"]
    assert len(wills) == 1


def test_username_password_authentication(tmp_path: Path) -> None:
    """Credentials in the URL or as arguments authenticate; wrong ones never connect."""
    work = tmp_path
    pwfile = work / "passwd"
    pwfile.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "device", "s3cret"], check=True,
                   capture_output=True)
    port = free_port()
    conf = f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}"
    broker = MosquittoBroker(workdir=work / "b", extra_config=conf, listener=False)
    broker.port = port
    broker.start()
    try:
        with Client(client_id="auth", brokers=[f"mqtt://device:s3cret@127.0.0.1:{port}"]) as c:
            c.publish("t/auth", b"x").wait(10)
        with Client(client_id="auth2", brokers=[f"mqtt://127.0.0.1:{port}"],
                    username="device", password="s3cret") as c:
            c.publish("t/auth", b"x").wait(10)
        with Client(client_id="bad", brokers=[f"mqtt://127.0.0.1:{port}"],
                    username="device", password="wrong") as c:
            assert not c.wait_connected(1.5)
            assert "refused" in str(c.stats()["last_error"])
    finally:
        broker.close()


def test_unclean_close_publishes_the_will_and_keeps_messages(
    mosquitto: MosquittoBroker, topic: str, collector: Collector, tmp_path: Path
) -> None:
    """close(clean=False) vanishes like a crash: the broker publishes the last will, and a
    message still waiting in the store is there for the next run."""
    store = tmp_path / "crash.db"
    will = Will(topic=f"{topic}/status", payload=b"crashed", retain=False)
    with Client(client_id="crash-sub", brokers=[mosquitto.url]) as sub:
        sub.subscribe(f"{topic}/#", collector, timeout=10)
        c = Client(client_id="crashing", brokers=[mosquitto.url], will=will, store=store,
                   rate_limit=RateLimit(100, burst=100))  # the second message must wait
        assert c.wait_connected(10)
        c.publish(f"{topic}/data", b"x" * 200)
        c.publish(f"{topic}/data", b"waiting")
        c.close(0, clean=False)
        assert collector.wait_for(lambda ms: any(m.payload == b"crashed" for m in ms))
    again = Client(client_id="crashing", brokers=[mosquitto.url], store=store)
    try:
        s = again.stats()  # one snapshot
        assert s["queued"] + s["inflight"] >= 1
    finally:
        again.close(0)
