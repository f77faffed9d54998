"""Last will: published when the link dies, not on a clean close."""

from __future__ import annotations

from fieldmq import Client, Will
from fieldmq.testing import FaultProxy, MosquittoBroker
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


def test_username_password_authentication(tmp_path: object) -> None:
    """Credentials in the URL or as arguments authenticate; wrong ones never connect."""
    import subprocess
    from pathlib import Path

    work = Path(str(tmp_path))
    pwfile = work / "passwd"
    pwfile.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "device", "s3cret"], check=True,
                   capture_output=True)
    from fieldmq.testing import free_port

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
