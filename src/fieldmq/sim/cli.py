"""``fieldmq simulate`` and ``fieldmq audit``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .fleet import parse_mix
from .scenario import ScenarioError, builtin_scenarios, load_scenario, parse_duration

__all__ = ["register"]

T = TypeVar("T")


def _arg(fn: Callable[[str], T]) -> Callable[[str], T]:
    """Turn a parser's ``ValueError`` into argparse's clear one-line error."""

    def parse(text: str) -> T:
        try:
            return fn(text)
        except (ValueError, ScenarioError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = fn.__name__
    return parse


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be > 0")
    return seconds


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise ValueError(f"a TCP port is 1-65535, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "simulate", help="run a simulated fleet with scripted faults, then audit it",
        description="Run simulated devices (real durable clients) against a broker, play a "
                    "fault scenario, then audit what arrived against what was accepted.")
    sim.add_argument("--devices", type=_arg(_positive_int),
                     help="number of devices (split by --mix; default: the mix's counts, or 10)")
    sim.add_argument("--mix", type=_arg(parse_mix),
                     help="profile counts or weights, e.g. sensor=30,camera=10,gateway=5")
    sim.add_argument("--seed", type=int, default=0, help="the same seed gives the same fleet "
                     "and the same values (default 0)")
    sim.add_argument("--duration", type=_arg(_positive_duration),
                     help="run length, e.g. 90s, 10m (default: the scenario's, else 60s)")
    sim.add_argument("--scenario", type=_arg(load_scenario),
                     help=f"built-in ({', '.join(builtin_scenarios())}) or a .toml file")
    sim.add_argument("--time-scale", type=_arg(_positive_float), default=1.0,
                     help="multiply every scenario time (0.5 runs it twice as fast)")
    sim.add_argument("--speed", type=_arg(_positive_float),
                     help="simulated seconds per wall-clock second: --speed 20 runs 20 "
                          "simulated minutes in one minute, readings stamped with "
                          "simulated time (default: the scenario's, else 1)")
    sim.add_argument("--warmup", type=_arg(parse_duration),
                     help="simulated time at the start without anomalies, for detectors "
                          "to learn the fleet (default: the scenario's, else 0)")
    sim.add_argument("--broker", help="broker URL (default: run a private mosquitto)")
    sim.add_argument("--broker-port", type=_arg(_port),
                     help="port of the private mosquitto on 127.0.0.1 (default: a free one), "
                          "e.g. to point `fieldmq ingest` at it")
    sim.add_argument("--processes", type=_arg(_positive_int),
                     help="worker processes to spread the devices over (default: one per "
                          "100 devices)")
    sim.add_argument("--state-dir", type=Path, default=Path("fieldmq-sim"),
                     help="stores, logs and labels (default ./fieldmq-sim)")
    sim.add_argument("--overwrite", action="store_true",
                     help="delete a previous run in --state-dir first")
    sim.add_argument("--topic-group", default="fleet", help="first topic level (default fleet)")
    sim.add_argument("--client-prefix", default="sim", help="client ids are PREFIX-<device>")
    sim.add_argument("--rate", type=_arg(_positive_float), default=1.0,
                     help="publish this many times faster than the profiles say")
    sim.add_argument("--no-anomalies", action="store_true", help="inject no anomalies")
    sim.add_argument("--label-payload", action="store_true",
                     help="put anomaly labels in the payloads too")
    sim.add_argument("--drain-timeout", type=_arg(_positive_duration), default=60.0,
                     help="how long to wait at the end for queues to drain (default 60s)")
    sim.add_argument("--late-after", type=_arg(_positive_duration), default=10.0,
                     help="latency above which a message counts as late (default 10s)")
    sim.add_argument("--max-backoff", type=_arg(_positive_duration), default=5.0,
                     help="longest wait between a device's reconnect attempts (default 5s)")
    sim.add_argument("--keepalive", type=_arg(_positive_duration), default=10.0,
                     help="MQTT keepalive of the devices (default 10s)")
    sim.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    sim.set_defaults(func=_simulate)

    aud = subparsers.add_parser(
        "audit", help="compare accepted and received messages: lost, duplicated, late",
        description="Audit a simulation: per device and in total, sent, received, lost, "
                    "duplicated, out of order and latency. Exit status 1 when anything "
                    "was lost.")
    aud.add_argument("--state-dir", type=Path, help="a simulation's state directory")
    aud.add_argument("--accepted", type=Path, nargs="+", help="accept log file(s)")
    aud.add_argument("--received", type=Path, nargs="+", help="received log file(s)")
    aud.add_argument("--late-after", type=_arg(_positive_duration), default=10.0,
                     help="latency above which a message counts as late (default 10s)")
    aud.add_argument("--json", action="store_true", help="print the report as JSON")
    aud.add_argument("--no-devices", action="store_true", help="print only the total")
    aud.set_defaults(func=_audit)


def _error(command: str, message: str) -> int:
    print(f"fieldmq {command}: error: {message}", file=sys.stderr)
    return 2


def _simulate(args: argparse.Namespace) -> int:
    from .progress import Progress, format_summary
    from .simulation import Simulation, SimulationConfig, SimulationError

    if args.broker_port is not None and args.broker:
        return _error("simulate", "--broker-port is for the private broker; "
                                  "leave it out with --broker")
    factory = None
    if args.broker_port is not None:
        from ..testing.broker import MosquittoBroker

        port = args.broker_port

        def factory(workdir: Path) -> MosquittoBroker:
            return MosquittoBroker(workdir=workdir, port=port)

    scenario = args.scenario
    if scenario is not None and args.time_scale != 1.0:
        scenario = scenario.scaled(args.time_scale)
    devices = args.devices
    if devices is None and args.mix is None:
        devices = 10
    root = logging.getLogger("fieldmq")
    # A hundred clients each warning about every reconnect would drown the display;
    # the progress line counts reconnects instead.
    if root.getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("fieldmq.client").setLevel(logging.ERROR)
    try:
        config = SimulationConfig(
            state_dir=args.state_dir, devices=devices, mix=args.mix, seed=args.seed,
            duration=args.duration, scenario=scenario, broker=args.broker,
            processes=args.processes, topic_group=args.topic_group,
            client_prefix=args.client_prefix, anomalies=not args.no_anomalies,
            label_payload=args.label_payload, rate=args.rate,
            drain_timeout=args.drain_timeout, late_after=args.late_after,
            max_backoff=args.max_backoff, keepalive=args.keepalive,
            overwrite=args.overwrite, speed=args.speed, warmup=args.warmup,
            broker_factory=factory,
            worker_log_level=max(logging.ERROR, root.getEffectiveLevel()),
        )
        sim = Simulation(config)
    except ValueError as exc:
        return _error("simulate", str(exc))
    progress = Progress(sys.stderr)
    try:
        result = sim.run(progress)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (SimulationError, OSError, RuntimeError) as exc:
        return _error("simulate", str(exc))
    progress.clear()
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print(format_summary(result))
    return 0 if result.audit.ok else 1


def _audit(args: argparse.Namespace) -> int:
    from .acceptlog import read_accepted, read_device_stats
    from .audit import audit_logs
    from .receiver import read_received
    from .simulation import audit_state_dir

    try:
        if args.state_dir is not None:
            if args.accepted or args.received:
                return _error("audit", "give either --state-dir or --accepted/--received")
            report = audit_state_dir(args.state_dir, late_after=args.late_after)
        elif args.accepted and args.received:
            stats = read_device_stats(args.accepted)
            dropped = {d: sum(int(v) for k, v in (s.get("dropped") or {}).items()
                              if k != "offline") for d, s in stats.items()}
            report = audit_logs(read_accepted(args.accepted), read_received(args.received),
                                dropped=dropped, late_after=args.late_after)
        else:
            return _error("audit", "give --state-dir DIR, or --accepted FILE... and "
                                   "--received FILE...")
    except (OSError, ValueError) as exc:
        return _error("audit", str(exc))
    except Exception as exc:  # StoreError and friends: a file that is not a log
        return _error("audit", str(exc))
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(report.table(devices=not args.no_devices))
        print("OK: nothing lost" if report.ok else f"LOST {report.total.lost} message(s)")
    return 0 if report.ok else 1
