"""TTL against clock jumps, TLS and mutual TLS, fork safety."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme

from fieldmq import TLS, Client, PublishExpired
from fieldmq.testing import FakeClock, MosquittoBroker, free_port
from helpers import Collector, wait_until

YEAR = 365 * 86400.0


def test_ttl_ignores_wall_clock_steps(mosquitto: MosquittoBroker, tmp_path: Path,
                                      fake_clock: FakeClock) -> None:
    """Wall-clock steps of a year forward and back neither expire nor reorder the backlog."""
    mosquitto.stop()
    with Client(client_id="ttl", brokers=[mosquitto.url], store=tmp_path / "ttl.db",
                clock=fake_clock) as c:
        handles = [c.publish("t/ttl", str(i).encode(), ttl=3600) for i in range(20)]
        fake_clock.jump_wall(YEAR)
        fake_clock.jump_wall(-2 * YEAR)
        fake_clock.advance(60)
        mosquitto.start()
        for h in handles:
            h.wait(20)
        assert c.stats()["dropped"] == {}


def test_ttl_expires_on_elapsed_time(mosquitto: MosquittoBroker, tmp_path: Path,
                                     fake_clock: FakeClock) -> None:
    """A message whose TTL elapsed (monotonic time) is dropped as expired, not sent."""
    mosquitto.stop()
    with Client(client_id="ttl2", brokers=[mosquitto.url], store=tmp_path / "ttl2.db",
                clock=fake_clock) as c:
        short = c.publish("t/ttl", b"short", ttl=10)
        long = c.publish("t/ttl", b"long", ttl=1000)
        fake_clock.advance(11)
        mosquitto.start()
        long.wait(20)
        with pytest.raises(PublishExpired):
            short.wait(20)
        assert c.stats()["dropped"] == {"expired": 1}


def test_ttl_counts_time_while_closed_only_when_plausible(tmp_path: Path) -> None:
    """A store closed for an hour by the wall clock ages its messages by an hour; a
    wall-clock jump of a year while closed is not counted."""
    clock = FakeClock()
    port = free_port()
    store = tmp_path / "closed.db"
    c = Client(client_id="cl", brokers=[f"mqtt://127.0.0.1:{port}"], store=store, clock=clock)
    c.publish("t", b"x", ttl=7200)
    c.close(0)
    clock.jump_wall(3600)
    c = Client(client_id="cl", brokers=[f"mqtt://127.0.0.1:{port}"], store=store, clock=clock)
    age = c.stats()["oldest_age"]
    c.close(0)
    assert 3599 <= age < 3700
    clock.jump_wall(YEAR)
    c = Client(client_id="cl", brokers=[f"mqtt://127.0.0.1:{port}"], store=store, clock=clock)
    try:
        assert c.stats()["oldest_age"] < 3700
        assert c.stats()["queued"] == 1
    finally:
        c.close(0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("device-001")
    files = {
        "ca": d / "ca.pem", "server": d / "server.pem", "server_key": d / "server.key",
        "client": d / "client.pem", "client_key": d / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    other = trustme.CA()
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    out = {k: str(v) for k, v in files.items()}
    out["other_ca"] = str(d / "other-ca.pem")
    return out


def _tls_broker(tmp_path: Path, pki: dict[str, str], require_cert: bool) -> MosquittoBroker:
    port = free_port()
    conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki['ca']}\ncertfile {pki['server']}\n"
        f"keyfile {pki['server_key']}\nrequire_certificate {'true' if require_cert else 'false'}"
    )
    b = MosquittoBroker(workdir=tmp_path / "tlsbroker", extra_config=conf, listener=False)
    b.port = port
    return b.start()


def test_tls_with_private_ca(tmp_path: Path, pki: dict[str, str]) -> None:
    """mqtts:// with the broker's CA connects and delivers; a wrong CA never connects."""
    b = _tls_broker(tmp_path, pki, require_cert=False)
    try:
        url = f"mqtts://127.0.0.1:{b.port}"
        with Client(client_id="tls", brokers=[url], tls=TLS(ca_file=pki["ca"]),
                    store=tmp_path / "tls.db") as c:
            c.publish("t/tls", b"secret").wait(20)
        with Client(client_id="tls-bad", brokers=[url], tls=TLS(ca_file=pki["other_ca"])) as bad:
            bad.publish("t/tls", b"x")
            assert wait_until(lambda: bad.stats()["last_error"] is not None)
            assert not bad.connected
            assert "certificate" in str(bad.stats()["last_error"]).lower()
    finally:
        b.close()


def test_mutual_tls(tmp_path: Path, pki: dict[str, str], collector: Collector) -> None:
    """With require_certificate, a client certificate is needed; with one, delivery works."""
    b = _tls_broker(tmp_path, pki, require_cert=True)
    try:
        url = f"mqtts://127.0.0.1:{b.port}"
        tls = TLS(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client_key"])
        with Client(client_id="mtls", brokers=[url], tls=tls, store=tmp_path / "m.db") as c:
            c.publish("t/mtls", b"ok").wait(20)
        with Client(client_id="no-cert", brokers=[url], tls=TLS(ca_file=pki["ca"])) as nc:
            assert not nc.wait_connected(2)
            assert nc.stats()["last_error"] is not None
    finally:
        b.close()


def test_tls_context_rejects_garbage_cert(tmp_path: Path) -> None:
    """A certificate file that is not PEM raises ValueError when the client is built."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="TLS files"):
        Client(client_id="x", brokers=["mqtts://127.0.0.1:1"],
               tls=TLS(cert_file=str(bad), key_file=str(bad)))
    assert ssl.OPENSSL_VERSION


def test_fork_children_get_their_own_store_and_connection(
    mosquitto: MosquittoBroker, tmp_path: Path, collector: Collector
) -> None:
    """Four forked children publish through their own store and connection while the
    parent keeps publishing; every message from every process arrives."""
    store = tmp_path / "parent.db"
    with Client(client_id="sub-fork", brokers=[mosquitto.url]) as sub:
        sub.subscribe("fork/#", collector)
        assert sub.wait_connected(10)
        with Client(client_id="parent", brokers=[mosquitto.url], store=store) as parent:
            assert wait_until(
                lambda: parent.publish("fork/probe", b"p").wait(10) is None
                and collector.wait_count(1, timeout=0.5)
            )
            pids = []
            for k in range(4):
                pid = os.fork()
                if pid == 0:  # child
                    code = 1
                    try:
                        for i in range(50):
                            parent.publish(f"fork/child{k}", str(i).encode())
                        code = 0 if parent.drain(30) else 2
                        parent.close(1)
                    finally:
                        os._exit(code)
                pids.append(pid)
                for i in range(25):
                    parent.publish("fork/parent", f"{k}-{i}".encode())
            codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
            assert codes == [0, 0, 0, 0]
            assert parent.drain(30)
        assert collector.wait_for(lambda ms: len(ms) >= 1 + 100 + 200, timeout=30)
    by_topic: dict[str, int] = {}
    for m in collector.messages:
        by_topic[m.topic] = by_topic.get(m.topic, 0) + 1
    assert by_topic["fork/parent"] == 100
    assert all(by_topic[f"fork/child{k}"] == 50 for k in range(4))
    assert sorted(p.name for p in tmp_path.glob("parent.fork-*.db")) == sorted(
        f"parent.fork-{p}.db" for p in pids
    )


def test_fork_policy_error(tmp_path: Path) -> None:
    """With fork='error', using the client in a child raises ForkError with advice."""
    c = Client(client_id="fe", brokers=["mqtt://127.0.0.1:1"], store=tmp_path / "fe.db",
               fork="error")
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            msg = b"no error"
            try:
                c.publish("t", b"x")
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}".encode()
            os.write(w, msg)
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        with os.fdopen(r, "rb") as f:
            text = f.read().decode()
        assert text.startswith("ForkError") and "create the client in the child" in text
        assert c.publish("t", b"parent still works").status == "queued"
    finally:
        c.close(0)
