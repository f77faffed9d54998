"""A TCP fault proxy for chaos tests, placed between a client and a broker, and a
timeline to script it. The mode is switched at run time, from any thread, and the
call returns once the proxy's I/O thread has applied it (after ``reset()`` the
peers have their RST; after ``refuse()`` a connect fails). One mode at a time:

* ``pass``: bytes are forwarded as they arrive.
* ``latency``: every chunk waits ``ms`` milliseconds, in each direction; order kept.
* ``bandwidth``: each direction is paced to ``bytes_per_s`` by a token bucket that
  starts empty and holds 10 ms of tokens, so N bytes take at least N / rate seconds.
* ``blackhole``: a half-open link, as on 4G. Connections stay open, nothing moves.
  Data is *held*, not discarded: the proxy stops reading and writing, so bytes wait
  in its queues and the kernel's buffers (the sender's writes block once its buffer
  is full) and a close by one end is not seen by the other. New connections are
  accepted but not connected upstream. ``passthrough()`` resumes everything in
  order, like a link that recovers before either end gave up; ``reset()`` kills it.
* ``reset``: every connection is closed with RST on both sides (``SO_LINGER`` 0);
  new connections are reset as soon as they are accepted.
* ``refuse``: the listening socket is closed (connects get ``ECONNREFUSED``); open
  connections keep working. Leaving the mode listens on the same port again.

A connection whose upstream refuses is reset, as is a connection whose one side
resets. The proxy is one thread (``fieldmq-faultproxy-<port>``) on :mod:`selectors`
using only the standard library; ``close()`` stops it and closes every socket.
:class:`FaultSchedule` (in :mod:`fieldmq.testing.schedule`) runs ``(at_seconds, action)``
steps on a named thread.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import logging
import selectors
import socket
import struct
import threading
import time
from types import TracebackType

__all__ = ["FaultMode", "FaultProxy", "FaultSchedule"]

from .schedule import FaultSchedule

log = logging.getLogger("fieldmq.testing.faultproxy")

_READ_SIZE = 65536
_HIGH_WATER = 256 * 1024  # bytes queued per direction before the proxy stops reading
_BUCKET_SECONDS = 0.01  # bandwidth mode sends at most this much of the rate at once
_RST_LINGER = struct.pack("ii", 1, 0)


class FaultMode(enum.StrEnum):
    """What the proxy does to the link."""

    PASS = "pass"
    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    REFUSE = "refuse"


class _Pipe:
    """One direction of a connection: bytes read from ``src`` waiting to be written to ``dst``."""

    __slots__ = ("blocked", "bucket_at", "eof", "last_due", "queue", "queued", "shut")

    def __init__(self) -> None:
        # (due time, data); b"" is the end-of-stream marker.
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.eof = False  # src reached end of stream
        self.shut = False  # end of stream forwarded to dst
        self.blocked = False  # dst's send buffer is full
        self.last_due = 0.0
        self.bucket_at = 0.0  # bandwidth: the link is busy until this time


class _Conn:
    __slots__ = ("client", "connecting", "down", "up", "upstream")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.connecting = False
        self.up = _Pipe()  # client -> upstream
        self.down = _Pipe()  # upstream -> client


def _rst_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    sock.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream``, with switchable faults.

    ``port=None`` listens on an ephemeral port. Use it as a context manager, or
    call ``start()`` and ``close()``; a closed proxy cannot be started again.
    """

    def __init__(
        self, upstream: tuple[str, int] = ("127.0.0.1", 1883), *, port: int | None = None
    ) -> None:
        host, up_port = upstream
        if not 0 < int(up_port) < 65536:
            raise ValueError(f"upstream port must be 1-65535, got {up_port!r}")
        self.upstream = (str(host), int(up_port))
        self._port = int(port or 0)
        self._mode = FaultMode.PASS
        self._latency_s = 0.0
        self._rate = 0.0
        self._state = "new"
        self._cond = threading.Condition()
        self._pending: tuple[FaultMode, float] | None = None
        self._requested = 0
        self._applied = 0
        self._failed: tuple[int, OSError] | None = None
        self._stopping = False
        self._listener: socket.socket | None = None
        self._sel: selectors.DefaultSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
        self._interest: dict[socket.socket, int] = {}
        self.accepted = 0
        self.bytes_to_upstream = 0
        self.bytes_to_client = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FaultProxy:
        """Listen and start the I/O thread. Returns ``self``."""
        if self._state == "running":
            return self
        if self._state == "closed":
            raise RuntimeError("this FaultProxy is closed; create a new one")
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            self._listen()
        except OSError:
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"fieldmq-faultproxy-{self._port}", daemon=True
        )
        self._state = "running"
        self._thread.start()
        log.debug("fault proxy 127.0.0.1:%d -> %s:%d started", self._port, *self.upstream)
        return self

    def close(self) -> None:
        """Stop the I/O thread and close every socket. Safe to call twice."""
        if self._state != "running":
            self._state = "closed"
            return
        with self._cond:
            self._stopping = True
        self._wake()
        assert self._thread is not None
        self._thread.join()
        self._state = "closed"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -------------------------------------------------------------- public state

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The listening port (fixed for the proxy's life, also across ``refuse()``)."""
        if not self._port:
            raise RuntimeError("the port is chosen by start(); call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def mode(self) -> FaultMode:
        return self._mode

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy (accepted, not yet closed)."""
        return len(self._conns)

    def wait_for_connections(self, count: int, *, timeout: float = 10.0) -> None:
        """Poll until exactly ``count`` connections are open, or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while self.connections != count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.connections} connections open through the proxy after "
                    f"{timeout}s, expected {count}"
                )
            time.sleep(0.01)

    # --------------------------------------------------------------- mode changes

    def set_mode(self, mode: FaultMode | str, value: float | None = None) -> None:
        """Switch to ``mode``; ``value`` is milliseconds for ``latency`` and bytes per
        second for ``bandwidth`` (required there, refused elsewhere). Returns once the
        I/O thread has applied it."""
        mode = FaultMode(mode)
        if mode in (FaultMode.LATENCY, FaultMode.BANDWIDTH):
            if value is None:
                raise ValueError(f"mode {mode.value!r} needs a value")
            if mode is FaultMode.LATENCY and not value >= 0:
                raise ValueError(f"latency must be >= 0 ms, got {value!r}")
            if mode is FaultMode.BANDWIDTH and not value > 0:
                raise ValueError(f"bandwidth must be > 0 bytes/s, got {value!r}")
        elif value is not None:
            raise ValueError(f"mode {mode.value!r} takes no value, got {value!r}")
        if self._state != "running":
            raise RuntimeError(f"the proxy is {self._state}; call start() first")
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._pending = (mode, float(value or 0.0))
        self._wake()
        with self._cond:
            if not self._cond.wait_for(lambda: self._applied >= ticket, timeout=10.0):
                raise RuntimeError("the fault proxy I/O thread did not apply the mode in 10 s")
            if self._failed is not None and self._failed[0] == ticket:
                raise self._failed[1]

    def passthrough(self) -> None:
        """Forward bytes normally (mode ``pass``)."""
        self.set_mode(FaultMode.PASS)

    def latency(self, ms: float) -> None:
        """Delay every chunk by ``ms`` milliseconds in each direction."""
        self.set_mode(FaultMode.LATENCY, ms)

    def bandwidth(self, bytes_per_s: float) -> None:
        """Cap each direction at ``bytes_per_s``."""
        self.set_mode(FaultMode.BANDWIDTH, bytes_per_s)

    def blackhole(self) -> None:
        """Hold all traffic; connections stay open (a half-open link)."""
        self.set_mode(FaultMode.BLACKHOLE)

    def reset(self) -> None:
        """RST every connection, and every new one while in this mode."""
        self.set_mode(FaultMode.RESET)

    def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones keep working."""
        self.set_mode(FaultMode.REFUSE)

    def __repr__(self) -> str:
        detail = {
            FaultMode.LATENCY: f" {self._latency_s * 1000:g}ms",
            FaultMode.BANDWIDTH: f" {self._rate:g}B/s",
        }.get(self._mode, "")
        return (
            f"FaultProxy(127.0.0.1:{self._port} -> {self.upstream[0]}:{self.upstream[1]}, "
            f"mode={self._mode.value}{detail}, connections={self.connections}, {self._state})"
        )

    # ------------------------------------------------------------- the I/O thread

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # buffer full: a wake-up is already pending
                self._wake_w.send(b"\0")

    def _listen(self) -> None:
        assert self._sel is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._listener = sock
        self._sel.register(sock, selectors.EVENT_READ, None)

    def _unlisten(self) -> None:
        if self._listener is not None:
            assert self._sel is not None
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _run(self) -> None:
        assert self._sel is not None
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        break
                    pending, ticket, self._pending = self._pending, self._requested, None
                if pending is not None:
                    self._apply(*pending, ticket=ticket)
                timeout = self._pump(time.monotonic())
                self._update_interest()
                for key, mask in self._sel.select(timeout):
                    self._dispatch(key, mask)
        except Exception:  # pragma: no cover - a bug here must not hang the tests
            log.exception("fault proxy I/O thread failed")
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for conn in list(self._conns):
            self._drop(conn, rst=False)
        self._unlisten()
        assert self._sel is not None and self._wake_r is not None and self._wake_w is not None
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._cond:
            self._stopping = True
            self._applied = self._requested
            self._cond.notify_all()

    def _apply(self, mode: FaultMode, value: float, *, ticket: int) -> None:
        failed: OSError | None = None
        self._mode = mode
        if mode is FaultMode.LATENCY:
            self._latency_s = value / 1000.0
        elif mode is FaultMode.BANDWIDTH:
            self._rate = value
            now = time.monotonic()
            for conn in self._conns:
                conn.up.bucket_at = conn.down.bucket_at = now
        if mode is FaultMode.RESET:
            for conn in list(self._conns):
                self._drop(conn, rst=True)
        if mode is FaultMode.REFUSE:
            self._unlisten()
        elif self._listener is None:
            try:
                self._listen()
            except OSError as exc:
                log.error("fault proxy cannot listen again on port %d: %s", self._port, exc)
                failed = exc
        if mode not in (FaultMode.BLACKHOLE, FaultMode.RESET):
            for conn in list(self._conns):
                if conn.upstream is None:
                    self._connect_upstream(conn)
        log.debug("fault proxy %d: mode %s %g", self._port, mode.value, value)
        with self._cond:
            self._applied = ticket
            if failed is not None:
                self._failed = (ticket, failed)
            self._cond.notify_all()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        sock = key.fileobj
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
            return
        if sock is self._listener:
            self._accept()
            return
        conn: _Conn = key.data
        if conn not in self._conns:
            return
        try:
            if sock is conn.upstream and conn.connecting:
                err = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    log.debug("fault proxy: upstream connect failed: %s", errno.errorcode.get(err))
                    self._drop(conn, rst=True)
                    return
                conn.connecting = False
                return
            if mask & selectors.EVENT_WRITE:
                (conn.up if sock is conn.upstream else conn.down).blocked = False
            if mask & selectors.EVENT_READ:
                if sock is conn.client:
                    self._read(conn.client, conn.up)
                else:
                    assert conn.upstream is not None
                    self._read(conn.upstream, conn.down)
        except OSError as exc:
            log.debug("fault proxy: connection error %s; resetting both sides", exc)
            self._drop(conn, rst=True)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("fault proxy: accept failed: %s", exc)
                return
            self.accepted += 1
            if self._mode is FaultMode.RESET:
                _rst_close(client)
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client)
            self._conns.add(conn)
            if self._mode is not FaultMode.BLACKHOLE:
                self._connect_upstream(conn)

    def _connect_upstream(self, conn: _Conn) -> None:
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.upstream = up
        conn.connecting = True
        err = up.connect_ex(self.upstream)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._drop(conn, rst=True)
        elif err == 0:
            conn.connecting = False

    def _read(self, src: socket.socket, pipe: _Pipe) -> None:
        try:
            data = src.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        now = time.monotonic()
        due = now + (self._latency_s if self._mode is FaultMode.LATENCY else 0.0)
        due = max(due, pipe.last_due)
        pipe.last_due = due
        if not pipe.queue:
            pipe.bucket_at = max(pipe.bucket_at, now)
        if data:
            pipe.queue.append((due, data))
            pipe.queued += len(data)
        else:
            pipe.eof = True
            pipe.queue.append((due, b""))

    def _pump(self, now: float) -> float | None:
        """Write what is due; return seconds until something else is due (or None)."""
        if self._mode is FaultMode.BLACKHOLE:
            return None
        next_due: float | None = None
        for conn in list(self._conns):
            if conn.upstream is None or conn.connecting:
                continue
            try:
                for pipe, dst, to_up in (
                    (conn.up, conn.upstream, True),
                    (conn.down, conn.client, False),
                ):
                    due = self._flush(pipe, dst, now, to_upstream=to_up)
                    if due is not None and (next_due is None or due < next_due):
                        next_due = due
            except OSError as exc:
                log.debug("fault proxy: write failed %s; resetting both sides", exc)
                self._drop(conn, rst=True)
                continue
            if conn.up.shut and conn.down.shut:
                self._drop(conn, rst=False)
        return None if next_due is None else max(0.0, next_due - now)

    def _flush(
        self, pipe: _Pipe, dst: socket.socket, now: float, *, to_upstream: bool
    ) -> float | None:
        while pipe.queue and not pipe.blocked:
            due, data = pipe.queue[0]
            if due > now:
                return due
            if not data:
                pipe.queue.popleft()
                dst.shutdown(socket.SHUT_WR)
                pipe.shut = True
                return None
            chunk = data
            if self._mode is FaultMode.BANDWIDTH:
                start = max(pipe.bucket_at, due)
                size = min(len(data), max(1, int(self._rate * _BUCKET_SECONDS)))
                ready = start + size / self._rate
                if ready > now:
                    return ready
                chunk = data[:size]
            try:
                sent = dst.send(chunk)
            except (BlockingIOError, InterruptedError):
                pipe.blocked = True
                return None
            if self._mode is FaultMode.BANDWIDTH:
                pipe.bucket_at = max(pipe.bucket_at, due) + sent / self._rate
            pipe.queued -= sent
            if to_upstream:
                self.bytes_to_upstream += sent
            else:
                self.bytes_to_client += sent
            if sent < len(data):
                pipe.queue[0] = (due, data[sent:])
            else:
                pipe.queue.popleft()
        return None

    def _update_interest(self) -> None:
        assert self._sel is not None
        flowing = self._mode is not FaultMode.BLACKHOLE
        for conn in self._conns:
            client_ev = upstream_ev = 0
            if conn.upstream is not None:
                if conn.connecting:
                    upstream_ev = selectors.EVENT_WRITE
                elif flowing:
                    if not conn.up.eof and conn.up.queued < _HIGH_WATER:
                        client_ev |= selectors.EVENT_READ
                    if not conn.down.eof and conn.down.queued < _HIGH_WATER:
                        upstream_ev |= selectors.EVENT_READ
                    if conn.down.blocked:
                        client_ev |= selectors.EVENT_WRITE
                    if conn.up.blocked:
                        upstream_ev |= selectors.EVENT_WRITE
                self._register(conn.upstream, upstream_ev, conn)
            self._register(conn.client, client_ev, conn)

    def _register(self, sock: socket.socket, events: int, conn: _Conn) -> None:
        assert self._sel is not None
        old = self._interest.get(sock, 0)
        if events == old:
            return
        if not events:
            self._sel.unregister(sock)
            del self._interest[sock]
        elif not old:
            self._sel.register(sock, events, conn)
            self._interest[sock] = events
        else:
            self._sel.modify(sock, events, conn)
            self._interest[sock] = events

    def _drop(self, conn: _Conn, *, rst: bool) -> None:
        self._conns.discard(conn)
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            if self._interest.pop(sock, 0):
                assert self._sel is not None
                self._sel.unregister(sock)
            if rst:
                _rst_close(sock)
            else:
                sock.close()
