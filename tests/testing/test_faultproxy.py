"""FaultProxy and FaultSchedule against real sockets: an echo server and a real mosquitto."""

from __future__ import annotations

import functools
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fieldmq.testing import FaultMode, FaultProxy, FaultSchedule, MosquittoBroker, free_port


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(0.005)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.resets = 0
        self.eofs = 0
        super().__init__(("127.0.0.1", 0), EchoHandler)


class EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
            self.server.eofs += 1
        except ConnectionResetError:
            self.server.resets += 1


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="test-echo", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=echo.server_address[:2]) as p:  # type: ignore[arg-type]
        yield p


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def assert_reset_on_connect(proxy: FaultProxy) -> None:
    # The RST may race the end of the handshake: connect() or recv() raises it.
    with pytest.raises(ConnectionResetError), connect(proxy) as sock:
        sock.recv(10)


def echoes(proxy: FaultProxy) -> bool:
    with connect(proxy) as sock:
        sock.sendall(b"ping")
        return recv_exactly(sock, 4) == b"ping"


def test_pass_forwards_both_ways_and_counts_bytes(proxy: FaultProxy) -> None:
    """In pass mode bytes flow both ways, are counted, and connections are tracked."""
    assert proxy.mode is FaultMode.PASS
    assert proxy.url == f"mqtt://127.0.0.1:{proxy.port}"
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
        assert proxy.connections == 1
        wait_until(lambda: proxy.bytes_to_client == 5)
        assert proxy.bytes_to_upstream == 5
    proxy.wait_for_connections(0)
    assert proxy.accepted == 1


def test_large_transfer_is_byte_exact(proxy: FaultProxy) -> None:
    """Megabytes through full socket buffers arrive complete and in order."""
    payload = bytes(range(256)) * 16384  # 4 MiB
    received = bytearray()
    with connect(proxy) as sock:
        reader = threading.Thread(
            target=lambda: received.extend(recv_exactly(sock, len(payload))), name="test-reader"
        )
        reader.start()
        sock.sendall(payload)
        reader.join(30)
    assert bytes(received) == payload
    assert proxy.bytes_to_upstream == len(payload)


def test_half_close_is_forwarded(proxy: FaultProxy, echo: EchoServer) -> None:
    """A client's FIN reaches the server, and the server's FIN comes back."""
    with connect(proxy) as sock:
        sock.sendall(b"bye")
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, 3) == b"bye"
        assert sock.recv(10) == b""
    wait_until(lambda: echo.eofs == 1)
    proxy.wait_for_connections(0)


def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    """latency(ms) holds each direction at least ms, so a round trip takes 2 x ms."""
    with connect(proxy) as sock:
        sock.sendall(b"warm")
        recv_exactly(sock, 4)
        proxy.latency(100)
        assert proxy.mode is FaultMode.LATENCY
        for i in range(3):
            t0 = time.monotonic()
            sock.sendall(b"a%d" % i + b"b%d" % i)
            assert recv_exactly(sock, 4) == b"a%db%d" % (i, i)
            assert time.monotonic() - t0 >= 0.2
        proxy.passthrough()
        sock.sendall(b"fast")
        assert recv_exactly(sock, 4) == b"fast"


def test_bandwidth_paces_bytes(proxy: FaultProxy) -> None:
    """bandwidth(rate) makes N bytes take at least N / rate seconds, in order."""
    rate, payload = 40_000, bytes(range(256)) * 80  # 20 480 bytes
    proxy.bandwidth(rate)
    with connect(proxy) as sock:
        t0 = time.monotonic()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        assert time.monotonic() - t0 >= len(payload) / rate
    proxy.passthrough()
    assert echoes(proxy)


def test_blackhole_holds_traffic_and_keeps_the_connection_open(proxy: FaultProxy) -> None:
    """blackhole passes nothing either way, keeps connections open, then resumes in order."""
    with connect(proxy) as old:
        old.sendall(b"1")
        recv_exactly(old, 1)
        wait_until(lambda: proxy.bytes_to_client == 1)
        before = (proxy.bytes_to_upstream, proxy.bytes_to_client)
        proxy.blackhole()
        old.sendall(b"held")
        with connect(proxy) as new:  # accepted, but goes nowhere
            new.sendall(b"late")
            for sock in (old, new):
                sock.settimeout(0.3)
                with pytest.raises(TimeoutError):  # nothing comes back, and no EOF either
                    sock.recv(10)
            assert (proxy.bytes_to_upstream, proxy.bytes_to_client) == before
            assert proxy.connections == 2
            proxy.passthrough()
            for sock, data in ((old, b"held"), (new, b"late")):
                sock.settimeout(5)
                assert recv_exactly(sock, 4) == data
    assert echoes(proxy)


def test_reset_sends_rst_to_both_sides(proxy: FaultProxy, echo: EchoServer) -> None:
    """reset() closes open connections with RST on both sides and resets new ones."""
    with connect(proxy) as sock:
        sock.sendall(b"x")
        recv_exactly(sock, 1)
        proxy.reset()
        assert proxy.connections == 0
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    wait_until(lambda: echo.resets == 1)
    assert_reset_on_connect(proxy)
    proxy.passthrough()
    assert echoes(proxy)


def test_refuse_rejects_new_connections_only(proxy: FaultProxy) -> None:
    """refuse() makes connect fail while open connections keep working; pass listens again."""
    port = proxy.port
    with connect(proxy) as sock:
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"still")
        assert recv_exactly(sock, 5) == b"still"
        proxy.passthrough()
        assert proxy.port == port
        assert echoes(proxy)


def test_unreachable_upstream_resets_the_client() -> None:
    """When the upstream refuses, the client sees a reset rather than a hang."""
    with FaultProxy(upstream=("127.0.0.1", free_port())) as proxy:
        assert_reset_on_connect(proxy)
        proxy.wait_for_connections(0)


def test_mode_arguments_are_validated(proxy: FaultProxy) -> None:
    """Bad mode values raise ValueError naming the problem; a closed proxy cannot restart."""
    with pytest.raises(ValueError, match="latency"):
        proxy.latency(-1)
    with pytest.raises(ValueError, match="bandwidth"):
        proxy.bandwidth(0)
    with pytest.raises(ValueError, match="takes no value"):
        proxy.set_mode("blackhole", 5)
    with pytest.raises(ValueError):
        proxy.set_mode("flaky")
    proxy.set_mode("latency", 10)
    assert "10ms" in repr(proxy)
    proxy.close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.start()
    with pytest.raises(RuntimeError, match="start"):
        proxy.passthrough()


def test_close_stops_its_named_thread_and_connections(echo: EchoServer) -> None:
    """close() stops the I/O thread and closes open connections."""
    proxy = FaultProxy(upstream=echo.server_address[:2]).start()  # type: ignore[arg-type]
    name = f"fieldmq-faultproxy-{proxy.port}"
    assert name in {t.name for t in threading.enumerate()}
    with connect(proxy) as sock:
        sock.sendall(b"x")
        recv_exactly(sock, 1)
        proxy.close()
        assert sock.recv(10) == b""
    assert name not in {t.name for t in threading.enumerate()}
    proxy.close()


def test_paho_client_through_proxy(mosquitto: MosquittoBroker) -> None:
    """A paho QoS1 publish through the proxy is held by a blackhole and acked after it."""
    topic = f"test/faultproxy/{uuid.uuid4().hex}"
    with FaultProxy(upstream=("127.0.0.1", mosquitto.port)) as proxy:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex, protocol=mqtt.MQTTv311
        )
        connected = threading.Event()
        client.on_connect = lambda *args: connected.set()
        client.connect("127.0.0.1", proxy.port, keepalive=60)
        client.loop_start()
        try:
            assert connected.wait(5)
            proxy.blackhole()
            info = client.publish(topic, b"payload", qos=1)
            info.wait_for_publish(0.3)
            assert not info.is_published()
            proxy.passthrough()
            info.wait_for_publish(5)
            assert info.is_published()
        finally:
            client.disconnect()
            client.loop_stop()
            client.reinitialise()  # closes the socket pair loop_start() made
        proxy.wait_for_connections(0)


def test_schedule_runs_steps_in_time_order(proxy: FaultProxy) -> None:
    """FaultSchedule runs its steps in time order on a named thread and records them."""
    modes: list[FaultMode] = []
    steps = [
        (0.10, proxy.passthrough),
        (0.0, proxy.blackhole),
        (0.05, functools.partial(proxy.latency, 20)),
        (0.07, lambda: modes.append(proxy.mode)),
    ]
    with FaultSchedule(steps, name="test-schedule") as schedule:
        assert schedule.wait(5)
    assert [label for _, label in schedule.history] == [
        "blackhole",
        "latency(20)",
        "<lambda>",
        "passthrough",
    ]
    assert [at for at, _ in schedule.history] == sorted(at for at, _ in schedule.history)
    assert schedule.history[-1][0] >= 0.10
    assert modes == [FaultMode.LATENCY]
    assert proxy.mode is FaultMode.PASS
    assert schedule.done and schedule.duration == 0.10


def test_schedule_reraises_a_failed_step_and_can_be_cut_short() -> None:
    """A step's exception is re-raised by close(); later steps still run; close skips the rest."""
    ran: list[int] = []

    def boom() -> None:
        raise OSError("step failed")

    schedule = FaultSchedule([(0, boom), (0, lambda: ran.append(1)), (60, lambda: ran.append(2))])
    schedule.start()
    wait_until(lambda: ran == [1])
    with pytest.raises(OSError, match="step failed"):
        schedule.close()
    assert ran == [1] and schedule.done
    with pytest.raises(ValueError):
        FaultSchedule([(-1, boom)])
    with pytest.raises(RuntimeError):
        schedule.start()
