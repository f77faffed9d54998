"""The ``fieldmq`` command. Each capability contributes its subcommands from its
own ``<package>/cli.py`` module exposing ``register(subparsers)``; this module only
assembles them and configures logging (library code never does)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Modules that add subcommands. A module missing from an install is skipped.
_COMMAND_MODULES = (
    "fieldmq.client.cli",
    "fieldmq.runtime.cli",
    "fieldmq.router.cli",
    "fieldmq.bridge.cli",
    "fieldmq.sim.cli",
    "fieldmq.ingest.cli",
    "fieldmq.dashboard.cli",
    "fieldmq.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldmq",
        description="Move device data over MQTT without losing it.",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    parser.add_argument("--log-json", action="store_true", help="log as JSON lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name.startswith(exc.name) or exc.name.startswith(name)):
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _configure_logging(level: str, as_json: bool) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise SystemExit(
            f"fieldmq: --log-level {level!r} is not one of DEBUG, INFO, WARNING, ERROR"
        )
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        try:
            from fieldmq.runtime.logs import JsonFormatter

            handler.setFormatter(JsonFormatter())
        except ImportError:  # pragma: no cover - runtime always ships with fieldmq
            pass
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("fieldmq")
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _configure_logging(args.log_level, args.log_json)
    func = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
