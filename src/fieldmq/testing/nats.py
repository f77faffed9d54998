"""A real clustered MQTT broker for failover tests: an N-node ``nats-server``
cluster on 127.0.0.1 with JetStream and an MQTT listener on every node.

Each node gets a ``server_name``, its own JetStream store directory, a
``cluster`` block with routes to every other node, a monitoring port (``http``)
and an ``mqtt`` listener, all on ephemeral ports that stay the same when a node
is killed and started again. ``start()`` returns once the cluster is formed *and*
every node answers an MQTT CONNECT with a CONNACK.

What NATS's MQTT support (checked against Debian's nats-server 2.9.10) does that
an MQTT user may not expect:

* **MQTT 3.1.1 with QoS 0 and 1 only**; no MQTT 5, no shared subscriptions. A
  SUBSCRIBE asking QoS 2 is granted QoS 1, but a QoS 2 PUBLISH makes the server
  close the connection ("publish QoS=2 not supported"), and so does a PUBLISH to
  a topic containing ``.`` or a space (MQTT ``/`` maps to NATS ``.``); a client
  that replays the message after reconnecting is closed again, forever. A
  SUBSCRIBE to such a filter gets SUBACK 0x80. ``$share/group/...`` is granted
  QoS 1 without error, as a plain filter: no load balancing.
* **All MQTT state lives in JetStream** (streams ``$MQTT_sess``, ``$MQTT_msgs``,
  ``$MQTT_rmsgs``...), created on the first MQTT CONNECT. A persistent session
  needs ``clean_session=False`` *and* a fixed client id; it is then stored in the
  cluster, so a subscriber's session and its QoS 1 backlog survive the loss of the
  node it was connected to, and the client can resume it on any other node.
* **The MQTT streams' replica count is not the cluster size.** Unless
  ``mqtt.stream_replicas`` is set, the server counts the routes in its own
  configuration (N-1, clamped to 1..3): a 3-node cluster gets R2 streams, and an R2
  stream has no quorum once either of its two nodes dies, so MQTT stops on the
  survivors ("JetStream cluster stream '$G > $MQTT_sess' has NO quorum, stalled").
  This class sets ``stream_replicas`` to min(N, 3).
* **A broker that cannot serve does not say so in MQTT terms.** Until the
  JetStream meta leader is elected, and for several seconds after a node is
  killed (until the streams and consumers elect new leaders: about 5-8 s here),
  a CONNECT to a *surviving* node gets no CONNACK: the server holds it 4 s, logs
  ``unable to connect: ... JetStream system temporarily unavailable (10008)``
  and closes the TCP connection. Clients must treat a missing CONNACK like a
  refused connection and retry; ``wait_ready()`` polls until CONNECT works.
* Per the NATS docs (not tested here): retained messages are best effort across
  nodes, and a client id connected twice (on two nodes) is detected later than
  on a single broker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from .broker import free_port

__all__ = ["NatsCluster", "NatsNotFound"]

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NatsNotFound(RuntimeError):
    """The ``nats-server`` binary is not installed."""


def find_nats_server() -> str:
    """Path of ``nats-server``, or raise :class:`NatsNotFound` with install help."""
    found = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if os.path.exists(p)),
        None,
    )
    if not found:
        raise NatsNotFound(
            "nats-server is not installed; install it with 'sudo apt-get install -y nats-server' "
            "(Debian/Ubuntu) or 'brew install nats-server' (macOS)"
        )
    return found


def mqtt_connack(port: int, *, host: str = "127.0.0.1", timeout: float = 6.0) -> int | None:
    """Send a clean-session MQTT 3.1.1 CONNECT; return the CONNACK return code
    (0 is accepted), or None when the broker closed or stayed silent instead."""
    client_id = f"fieldmq-probe-{uuid.uuid4().hex[:12]}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return None
                reply += chunk
            if reply[0] != 0x20:
                return None
            if reply[3] == 0:
                sock.sendall(b"\xe0\x00")  # DISCONNECT: the probe's session is removed
            return reply[3]
    except OSError:
        return None


class _Node:
    def __init__(self, index: int, workdir: Path) -> None:
        self.index = index
        self.name = f"n{index}"
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.cluster_port = free_port(), free_port()
        self.http_port, self.mqtt_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.dir / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / "nats.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def monitor(self, endpoint: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/{endpoint}"
        with _HTTP.open(url, timeout=2) as resp:
            data: dict[str, Any] = json.load(resp)
            return data


class NatsCluster:
    """``nodes`` nats-server processes forming one cluster, each with an MQTT listener.

    ``kill(i)`` SIGKILLs node ``i`` (its JetStream store stays), ``start_node(i)``
    brings it back on the same ports, ``wait_ready()`` waits until every running
    node accepts MQTT again. ``extra_config`` is appended to every node's
    configuration. Use it as a context manager or call ``start()`` / ``close()``.
    """

    def __init__(
        self,
        *,
        nodes: int = 3,
        workdir: str | os.PathLike[str] | None = None,
        name: str = "fieldmq",
        extra_config: str = "",
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least 1 node, got {nodes!r}")
        self._binary = find_nats_server()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fieldmq-nats-"))
        self.name = name
        self.extra_config = extra_config
        self.stream_replicas = min(nodes, 3)
        self._nodes = [_Node(i, self.workdir) for i in range(nodes)]
        self._closed = False

    # ------------------------------------------------------------------ addresses

    @property
    def mqtt_ports(self) -> list[int]:
        return [node.mqtt_port for node in self._nodes]

    @property
    def mqtt_urls(self) -> list[str]:
        """``mqtt://127.0.0.1:<port>`` of every node, in node order."""
        return [f"mqtt://127.0.0.1:{node.mqtt_port}" for node in self._nodes]

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self._nodes]

    def running(self, index: int) -> bool:
        return self._nodes[index].running

    def pid(self, index: int) -> int | None:
        proc = self._nodes[index].proc
        return proc.pid if proc is not None and self._nodes[index].running else None

    def log_tail(self, index: int, chars: int = 1500) -> str:
        """The end of node ``index``'s log (stdout and stderr of nats-server)."""
        return self._nodes[index].log_tail(chars)

    # ------------------------------------------------------------------ lifecycle

    def _config(self, node: _Node) -> str:
        store = node.dir / "jetstream"
        lines = [
            f"server_name: {node.name}",
            f"listen: 127.0.0.1:{node.client_port}",
            f"http: 127.0.0.1:{node.http_port}",
            f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 1GB }}',
        ]
        mqtt = f"mqtt {{ listen: 127.0.0.1:{node.mqtt_port}"
        if len(self._nodes) > 1:
            routes = ", ".join(
                f"nats://127.0.0.1:{other.cluster_port}"
                for other in self._nodes
                if other is not node
            )
            lines.append(
                f"cluster {{ name: {self.name}, listen: 127.0.0.1:{node.cluster_port}, "
                f"routes: [ {routes} ] }}"
            )
            mqtt += f", stream_replicas: {self.stream_replicas}"
        lines.append(mqtt + " }")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _launch(self, node: _Node) -> None:
        if self._closed:
            raise RuntimeError("this NatsCluster is closed; create a new one")
        if node.running:
            return
        node.config_path.write_text(self._config(node))
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                [self._binary, "-c", str(node.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Start every node that is not running and wait until the cluster serves MQTT."""
        for node in self._nodes:
            self._launch(node)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, index: int, *, wait: bool = True, timeout: float = 60.0) -> None:
        """Start node ``index`` again (same ports and store); by default wait for readiness."""
        self._launch(self._nodes[index])
        if wait:
            self.wait_ready(timeout)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``, as in a crash or power cut."""
        self._signal(self._nodes[index], signal.SIGKILL)

    def stop(self, index: int) -> None:
        """SIGTERM node ``index``: a clean shutdown."""
        self._signal(self._nodes[index], signal.SIGTERM)

    def _signal(self, node: _Node, sig: signal.Signals) -> None:
        proc = node.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)
        node.proc = None

    def close(self) -> None:
        """Kill every node and remove the working directory if this object made it."""
        for node in self._nodes:
            self._signal(node, signal.SIGKILL)
        self._closed = True
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ readiness

    def formed(self) -> bool:
        """Every running node has routes to all other running nodes and knows the
        JetStream meta leader."""
        running = [node for node in self._nodes if node.running]
        if not running:
            return False
        try:
            for node in running:
                if node.monitor("routez").get("num_routes", 0) < len(running) - 1:
                    return False
                if len(self._nodes) > 1:
                    meta = node.monitor("jsz").get("meta_cluster") or {}
                    if not meta.get("leader"):
                        return False
        except (OSError, ValueError):
            return False
        return True

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll until the cluster is formed and every running node answers an MQTT
        CONNECT with CONNACK 0; raise ``TimeoutError`` with the logs otherwise."""
        deadline = time.monotonic() + timeout
        pending = [node for node in self._nodes if node.running]
        while time.monotonic() < deadline:
            for node in self._nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    code, node.proc = node.proc.returncode, None
                    raise RuntimeError(
                        f"nats-server {node.name} exited with code {code}: {node.log_tail(800)}"
                    )
            if self.formed():
                pending = [n for n in pending if mqtt_connack(n.mqtt_port) != 0]
                if not pending:
                    return
            time.sleep(0.1)
        tails = "\n".join(f"--- {n.name}:\n{n.log_tail(600)}" for n in self._nodes)
        raise TimeoutError(f"NATS cluster not ready for MQTT after {timeout}s\n{tails}")

    def __repr__(self) -> str:
        states = ", ".join(
            f"{n.name}:{n.mqtt_port}{'' if n.running else '(down)'}" for n in self._nodes
        )
        return f"NatsCluster({states})"
