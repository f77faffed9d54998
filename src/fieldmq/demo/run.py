"""``fieldmq demo``: the whole pipeline on one machine.

A broker, a simulated fleet of durable clients, ingest into DuckDB with streaming anomaly
detection, the live dashboard, and a scripted outage (the broker stops ``--outage-at``
seconds in for ``--outage-for`` seconds) so device queues fill and drain. At the end
(``--duration`` or Ctrl-C) it prints the loss audit, the anomaly score and where the data
and the dashboard are.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from ..errors import ConfigError

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

log = logging.getLogger("fieldmq.demo")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    data_dir: Path
    devices: int = 20
    seed: int = 42
    duration: float | None = None  # None: until Ctrl-C
    outage_at: float = 30.0
    outage_for: float = 20.0
    port: int = 8050
    host: str = "127.0.0.1"
    broker: str = "auto"
    dashboard: bool = True
    keep_dashboard: bool = False
    # Devices report `rate` times as often as their profiles say, and no anomaly starts in
    # the first `warmup` seconds: the detectors need about 30 readings of a metric before
    # they score it, which at the profiles' own rates (2-10 s) would outlast a short demo.
    rate: float = 5.0
    warmup: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 1000:
            raise ConfigError(f"--devices must be 1-1000, got {self.devices}", key="devices")
        if self.duration is not None and self.duration < self.outage_at + self.outage_for + 5:
            raise ConfigError(
                f"--duration {self.duration:g} s ends before the outage is over "
                f"({self.outage_at:g} s + {self.outage_for:g} s); give at least "
                f"{self.outage_at + self.outage_for + 5:g} s or move the outage",
                key="duration",
            )
        if self.outage_at < 0 or self.outage_for <= 0:
            raise ConfigError("--outage-at must be >= 0 and --outage-for > 0", key="outage")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port must be 1-65535, got {self.port}", key="port")
        if not 0.1 <= self.rate <= 100:
            raise ConfigError(f"--rate must be 0.1-100, got {self.rate:g}", key="rate")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup:g}", key="warmup")


@dataclass(slots=True)
class DemoResult:
    audit: dict[str, Any]
    score: dict[str, Any] | None
    ingest: dict[str, Any]
    data_dir: Path
    dashboard_url: str | None

    @property
    def lost(self) -> int:
        return int(self.audit.get("lost", 0))


def _scenario(cfg: DemoConfig, protocol: int) -> Any:
    """mosquitto: the broker is stopped (it saves its sessions, so nothing is lost).
    amqtt keeps sessions only in memory and would lose them in a restart, so with it the
    devices' network is cut instead (every connection reset, new ones refused): the same
    story for the devices, an honest one for the broker."""
    from ..sim.scenario import Scenario, Step

    end = cfg.outage_at + cfg.outage_for
    if protocol == 5:
        return Scenario(
            name="demo-outage",
            description=f"broker stopped at {cfg.outage_at:g} s for {cfg.outage_for:g} s",
            steps=(Step(at=cfg.outage_at, action="broker-stop"),
                   Step(at=end, action="broker-start")),
        )
    return Scenario(
        name="demo-network-outage",
        description=f"devices cut off at {cfg.outage_at:g} s for {cfg.outage_for:g} s",
        steps=(Step(at=cfg.outage_at, action="reset", group="all"),
               Step(at=end, action="pass", group="all")),
    )


def run_demo(cfg: DemoConfig, out: TextIO = sys.stdout) -> DemoResult:
    """Run the demo; returns the audit and the figures. Raises ConfigError on bad setup."""
    from ..dashboard import Hub
    from ..ingest import IngestConfig, Ingestor, open_sink
    from ..ingest.scoring import load_labels, score
    from ..sim.simulation import Simulation, SimulationConfig
    from .broker import choose_broker

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    data = cfg.data_dir
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    server = None
    if cfg.dashboard:
        from ..dashboard.server import check_port

        check_port(cfg.host, cfg.port)  # a clear error before anything starts
    run_length = cfg.duration if cfg.duration is not None else 7 * 86400.0
    protocol: Literal[4, 5] = 5 if _protocol(cfg) == 5 else 4
    from ..backoff import Backoff
    from ..client.client import Client

    db = data / "fleet.duckdb"
    sink = open_sink(f"duckdb:{db}")
    hub = Hub().start()
    parts: dict[str, Any] = {}

    def start_consumers(url: str) -> None:
        """Before the first device boots: ingest and the dashboard subscribe."""
        # back within a second of the broker (the default backoff may wait up to 30 s
        # after a 20 s outage: the ingest then trailed the fleet at the end of a short run)
        client = Client(client_id="demo-ingest", brokers=[url], protocol=protocol,
                        ack="manual", persistent_session=True, receive_maximum=1000,
                        backoff=Backoff(initial=0.2, maximum=1.0))
        parts["client"] = client
        ingestor = Ingestor(sink=sink, client=client, config=IngestConfig(group="fleet"))
        parts["ingestor"] = ingestor
        ingestor.start()
        _confirm_subscriptions(client, "demo-ingest")
        thread = threading.Thread(target=ingestor.run, name="fieldmq-demo-ingest",
                                  daemon=True)
        thread.start()
        parts["thread"] = thread
        hub.connect(url, group="fleet", protocol=protocol)
        parts["url"] = url

    sim = Simulation(SimulationConfig(
        state_dir=data / "fleet", devices=cfg.devices, seed=cfg.seed, duration=run_length,
        scenario=_scenario(cfg, protocol), broker_factory=_broker_factory(cfg, choose_broker),
        protocol=protocol, drain_timeout=60.0, keep_broker=True, rate=cfg.rate,
        warmup=min(cfg.warmup, run_length / 2),  # a short --duration still gets anomalies
        on_broker_ready=start_consumers,
    ))
    result_box: dict[str, Any] = {}

    def progress(st: Any) -> None:
        result_box["st"] = st
        # Device queues are known here even while the broker is down (devices cannot
        # report then): the dashboard shows them filling and draining live.
        for device, d in sim.device_states().items():
            hub.local_status(device, "fleet", queued=d.queued, inflight=d.inflight,
                             connected=d.connected, reconnects=d.reconnects)

    def simulate() -> None:
        try:
            result_box["result"] = sim.run(progress=progress)
        except BaseException as exc:  # reported by the main thread
            result_box["error"] = exc

    runner = threading.Thread(target=simulate, name="fieldmq-demo-sim", daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while "url" not in parts:
        if "error" in result_box:
            raise result_box["error"]
        if time.monotonic() > deadline:
            sim.stop()
            raise ConfigError("the demo's broker and consumers did not start within 60 s")
        time.sleep(0.05)
    assert sim.broker is not None
    say(f"broker      {parts['url']} ({getattr(sim.broker, 'kind', 'mosquitto')})")
    say(f"ingest      DuckDB {db}")
    ingestor = parts["ingestor"]
    ingest_client = parts["client"]
    ingest_thread = parts["thread"]
    if cfg.dashboard:
        from ..dashboard.server import DashboardServer

        server = DashboardServer(hub, host=cfg.host, port=cfg.port,
                                 title=f"fieldmq demo: {cfg.devices} devices").start()
        say(f"dashboard   {server.url}")
    say(f"fleet       {cfg.devices} devices; broker outage at {cfg.outage_at:g} s for "
        f"{cfg.outage_for:g} s; " + (f"{cfg.duration:g} s in all" if cfg.duration
                                     else "Ctrl-C to finish"))

    stop_requests = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requests
        stop_requests += 1
        if stop_requests == 1:
            say("\nfinishing: draining device queues, then the loss audit (Ctrl-C again to abort)")
            sim.stop()
        else:
            raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is threading.main_thread():
        for s in previous:
            signal.signal(s, on_signal)
    try:
        last = 0.0
        while runner.is_alive():
            runner.join(0.5)
            st = result_box.get("st")
            if st is not None and time.monotonic() - last >= 5.0:
                last = time.monotonic()
                faults = ", ".join(st.faults) or "none"
                say(f"[{st.elapsed:5.0f} s] {st.phase:8s} connected {st.connected}/{st.devices}"
                    f"  published {st.published}  queued {st.queued}  reconnects "
                    f"{st.reconnects}  fault: {faults}")
        if "error" in result_box:
            raise result_box["error"]
        result = result_box["result"]
        audit = result.audit.as_dict()
        totals = audit.get("total", audit)
        hub.set_audit({k: totals[k] for k in ("sent", "received", "lost", "duplicated",
                                              "out_of_order") if k in totals})
        # Let ingest take what the devices delivered (it shares the broker), then stop it.
        want = int(totals.get("received", 0))
        deadline = time.monotonic() + 60.0
        last_seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            st_i = ingestor.stats
            seen = st_i.inserted + st_i.duplicates + st_i.rejected
            if seen != last_seen:
                last_seen, quiet_since = seen, time.monotonic()
            elif st_i.inserted >= want or time.monotonic() - quiet_since > 5.0:
                break
            time.sleep(0.2)
        ingestor.stop()
        ingest_thread.join(30)
        ingest_client.close(1.0)
        stats = ingestor.stats.as_dict()
        labels_path = result.state_dir / "labels.jsonl"
        scored: dict[str, Any] | None = None
        if labels_path.exists():
            labels = load_labels(labels_path)
            alerts = sink.query("select device, metric, ts from alerts").rows
            scored = _score_dict(score([(str(d), str(m), float(t)) for d, m, t in alerts],
                                       labels))
        sink.close()
        _report(say, totals, stats, scored, data, server)
        if server is not None and cfg.keep_dashboard and stop_requests < 2:
            say(f"the dashboard stays up at {server.url}: Ctrl-C to quit")
            stopper = threading.Event()
            if threading.current_thread() is threading.main_thread():
                for s in previous:
                    signal.signal(s, lambda *_: stopper.set())
            stopper.wait()
        return DemoResult(audit=totals, score=scored, ingest=stats, data_dir=data,
                          dashboard_url=server.url if server else None)
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, h in previous.items():
                signal.signal(s, h)
        sim.stop()
        ingestor.stop()
        if server is not None:
            server.stop()
        hub.close()
        try:
            ingest_client.close(0)
        except RuntimeError:
            pass
        if sim.broker is not None:
            sim.broker.close()


def _broker_factory(cfg: DemoConfig, choose: Any) -> Any:
    from ..testing.broker import free_port

    def make(workdir: Path) -> Any:
        return choose(port=free_port(), workdir=workdir, prefer=cfg.broker)

    return make


def _confirm_subscriptions(client: Any, name: str, timeout: float = 15.0) -> None:
    """Subscriptions are sent in order on one connection: once a probe subscription made
    after them delivers, the earlier ones are active at the broker."""
    import uuid

    topic = f"fieldmq-demo/probe/{name}/{uuid.uuid4().hex}"
    got = threading.Event()

    def on_probe(msg: Any) -> None:
        msg.ack()
        got.set()

    client.subscribe(topic, on_probe, qos=1)
    if not client.wait_connected(timeout):
        raise ConfigError(f"{name} could not connect to the demo's broker")
    deadline = time.monotonic() + timeout
    while not got.is_set():
        if time.monotonic() > deadline:
            raise ConfigError(f"{name}'s subscriptions were not confirmed within {timeout} s")
        client.publish(topic, b"probe", qos=1)
        got.wait(0.5)


def _protocol(cfg: DemoConfig) -> int:
    """amqtt speaks only MQTT 3.1.1; mosquitto gets MQTT 5."""
    from ..testing.broker import MosquittoNotFound, find_mosquitto

    if cfg.broker == "amqtt":
        return 4
    try:
        find_mosquitto()
    except MosquittoNotFound:
        return 4
    return 5


def _score_dict(s: Any) -> dict[str, Any]:
    if hasattr(s, "as_dict"):
        d: dict[str, Any] = s.as_dict()
        return d
    return {k: getattr(s, k) for k in ("precision", "recall", "f1") if hasattr(s, k)}


def _report(say: Any, totals: dict[str, Any], stats: dict[str, Any],
            scored: dict[str, Any] | None, data: Path, server: Any) -> None:
    lost = totals.get("lost", 0)
    say("")
    say("loss audit  " + "  ".join(f"{k} {totals[k]}" for k in
                                   ("sent", "received", "lost", "duplicated", "out_of_order")
                                   if k in totals)
        + ("   -> nothing lost" if lost == 0 else "   -> MESSAGES LOST"))
    say(f"ingest      stored {stats.get('inserted', 0)} messages, {stats.get('duplicates', 0)} "
        f"redeliveries ignored, {stats.get('alerts', 0)} anomaly alerts")
    if scored:
        say("anomalies   " + "  ".join(
            f"{k} {scored[k]:.2f}" for k in ("precision", "recall", "f1")
            if isinstance(scored.get(k), (int, float))))
    say(f"data        {data}  (fleet/ has device stores and logs; fleet.duckdb the ingest)")
    say(f"            fieldmq report fleet --sink {data / 'fleet.duckdb'}")
    say(f"            fieldmq dashboard --db {data / 'fleet.duckdb'} --no-broker")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on this machine with a scripted outage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--devices", type=int, default=20, help="simulated devices (default 20)")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    p.add_argument("--rate", type=float, default=5.0,
                   help="devices report this many times as often as their profiles say "
                        "(default 5, so the anomaly detectors warm up within a minute)")
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds before the first anomaly is injected (default 60)")
    p.add_argument("--outage-at", type=float, default=30.0, help="seconds before the outage")
    p.add_argument("--outage-for", type=float, default=20.0, help="outage length in seconds")
    p.add_argument("--port", type=int, default=8050, help="dashboard port (default 8050)")
    p.add_argument("--host", default="127.0.0.1", help="dashboard address (default 127.0.0.1)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                   help="which broker to start (default: mosquitto if installed, else amqtt)")
    p.add_argument("--data-dir", default="fieldmq-demo",
                   help="where the run's data goes (replaced each run; default ./fieldmq-demo)")
    p.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")
    p.add_argument("--keep-dashboard", action="store_true",
                   help="keep serving the dashboard after the audit until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print the result as JSON at the end")
    p.add_argument("--verbose", action="store_true", help="show the components' logs")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if not args.verbose:
        # The outage is deliberate: the progress lines tell the story; keep the log quiet.
        logging.getLogger("fieldmq").setLevel(logging.ERROR)
    try:
        cfg = DemoConfig(
            data_dir=Path(args.data_dir).resolve(), devices=args.devices, seed=args.seed,
            duration=args.duration, outage_at=args.outage_at, outage_for=args.outage_for,
            rate=args.rate, warmup=args.warmup,
            port=args.port, host=args.host, broker=args.broker,
            dashboard=not args.no_dashboard, keep_dashboard=args.keep_dashboard,
        )
        result = run_demo(cfg)
    except ConfigError as exc:
        print(f"fieldmq demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fieldmq demo: aborted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"fieldmq demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"audit": result.audit, "score": result.score,
                          "ingest": result.ingest, "data_dir": str(result.data_dir)},
                         default=str))
    return 0 if result.lost == 0 else 1
