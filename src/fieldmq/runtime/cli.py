"""``fieldmq systemd-unit``, ``fieldmq supervisor-conf`` and ``fieldmq status``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .state import discover, state_roots
from .supervisor_conf import ProgramSpec, render_program
from .systemd_unit import UnitSpec, render_unit

__all__ = ["register"]


def _write(text: str, output: str | None, name: str) -> int:
    if output is None or output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(output)
    if path.is_dir():
        path = path / name
    try:
        path.write_text(text)
    except OSError as exc:
        print(f"fieldmq: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _env_pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--env {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _cmd_systemd_unit(args: argparse.Namespace) -> int:
    try:
        spec = UnitSpec(
            app=args.app,
            exec=args.exec,
            description=args.description,
            user=args.user,
            group=args.group,
            working_directory=args.working_directory,
            environment_file=args.environment_file,
            environment=_env_pairs(args.env),
            restart_sec=args.restart_sec,
            start_limit_interval_sec=args.start_limit_interval_sec,
            start_limit_burst=args.start_limit_burst,
            watchdog_sec=None if args.watchdog_sec == 0 else args.watchdog_sec,
            timeout_stop_sec=args.timeout_stop_sec,
            supplementary_groups=tuple(args.supplementary_group),
            read_write_paths=tuple(args.read_write_path),
            hardening=not args.no_hardening,
        )
    except ValueError as exc:
        print(f"fieldmq systemd-unit: {exc}", file=sys.stderr)
        return 2
    return _write(render_unit(spec), args.output, f"{args.app}.service")


def _cmd_supervisor_conf(args: argparse.Namespace) -> int:
    try:
        spec = ProgramSpec(
            app=args.app,
            exec=args.exec,
            user=args.user,
            directory=args.directory,
            state_dir=args.state_dir,
            log_dir=args.log_dir,
            environment=_env_pairs(args.env),
            stop_wait_secs=args.stop_wait_secs,
        )
    except ValueError as exc:
        print(f"fieldmq supervisor-conf: {exc}", file=sys.stderr)
        return 2
    return _write(render_program(spec), args.output, f"{args.app}.conf")


def _fmt_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["APP", "PID", "UPTIME", "CONNECTED", "QUEUED", "HEALTH", "LAST ERROR"]
    lines = []
    for r in rows:
        app = r["app"] if r["worker"] is None else f"{r['app']}[{r['worker']}]"
        connected = "-" if r["connected"] is None else ("yes" if r["connected"] else "no")
        lines.append([
            app,
            str(r["pid"]) if r["running"] else "stopped",
            _fmt_uptime(r["uptime"]),
            connected,
            "-" if r["queued"] is None else str(r["queued"]),
            r["health"] or "-",
            (r["last_error"] or "-")[:60],
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    return "\n".join(out) + "\n"


def _cmd_status(args: argparse.Namespace) -> int:
    roots = [Path(p) for p in args.state_root] if args.state_root else state_roots()
    records = [r.as_dict() for r in discover(roots, now=time.time())]
    if not args.all:
        records = [r for r in records if r["running"]]
    if args.json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif not records:
        print("no fieldmq services found under " + ", ".join(str(r) for r in roots))
    else:
        sys.stdout.write(_table(records))
    return 0


def register(subparsers: Any) -> None:
    """Add this package's subcommands to the ``fieldmq`` command."""
    p = subparsers.add_parser(
        "systemd-unit", help="write a systemd unit for a fieldmq service",
        description="Write <app>.service: Type=notify, watchdog, restart limits, hardening.",
    )
    p.add_argument("app", help="application name (unit name, lock file, client id)")
    p.add_argument("--exec", required=True,
                   help="command to run, starting with an absolute path")
    p.add_argument("--description")
    p.add_argument("--user", help="run as this user (recommended: not root)")
    p.add_argument("--group")
    p.add_argument("--working-directory")
    p.add_argument("--environment-file",
                   help="KEY=VALUE file for secrets (default -/etc/fieldmq/<app>.env)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--restart-sec", type=float, default=5.0)
    p.add_argument("--start-limit-interval-sec", type=float, default=300.0)
    p.add_argument("--start-limit-burst", type=int, default=5)
    p.add_argument("--watchdog-sec", type=float, default=30.0, help="0 disables the watchdog")
    p.add_argument("--timeout-stop-sec", type=float, default=30.0)
    p.add_argument("--supplementary-group", action="append", default=[],
                   help="e.g. video, for vcgencmd on a Raspberry Pi")
    p.add_argument("--read-write-path", action="append", default=[])
    p.add_argument("--no-hardening", action="store_true")
    p.add_argument("-o", "--output", help="file or directory to write (default: stdout)")
    p.set_defaults(func=_cmd_systemd_unit)

    p = subparsers.add_parser(
        "supervisor-conf", help="write a supervisord program section for a fieldmq service",
    )
    p.add_argument("app")
    p.add_argument("--exec", required=True, help="command to run")
    p.add_argument("--user")
    p.add_argument("--directory")
    p.add_argument("--state-dir", help="default /var/lib/fieldmq/<app>")
    p.add_argument("--log-dir", default="/var/log/fieldmq")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--stop-wait-secs", type=int, default=30)
    p.add_argument("-o", "--output", help="file or directory to write (default: stdout)")
    p.set_defaults(func=_cmd_supervisor_conf)

    p = subparsers.add_parser(
        "status", help="list the fieldmq services on this host",
        description="Services found from their lock and status files.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--all", action="store_true", help="include stopped services")
    p.add_argument("--state-root", action="append", default=[], metavar="DIR",
                   help="where to look (default: /var/lib/fieldmq and the user's state dir)")
    p.set_defaults(func=_cmd_status)
