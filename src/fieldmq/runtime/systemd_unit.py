"""Generate a systemd unit for a fieldmq service (``fieldmq systemd-unit``).

The unit encodes what the seeds learned the hard way (seeds 09 and 10):

* ``Type=notify`` with ``NotifyAccess=main``: systemd counts the service as started
  only when it said ``READY=1``, and ``WatchdogSec=`` restarts it when it stops
  saying ``WATCHDOG=1`` (fieldmq feeds it only while the delivery loop progresses);
* ``Restart=on-failure`` with ``RestartSec=``, and ``StartLimitIntervalSec=`` /
  ``StartLimitBurst=`` in ``[Unit]`` (where systemd >= 230 reads them) so a crash
  loop ends in a visible ``failed`` state instead of spinning forever;
* ``After=``/``Wants=network-online.target`` but not ``Requires=``: the client
  rides out network loss itself, so losing the network must not stop the service;
* ``TimeoutStopSec=`` longer than the drain time, so SIGTERM gets to finish;
* ``StateDirectory=fieldmq/<app>``: systemd creates ``/var/lib/fieldmq/<app>`` for
  the service's user and exports ``$STATE_DIRECTORY``, where the lock and store go;
* ``EnvironmentFile=-/etc/fieldmq/<app>.env`` for secrets, kept out of the unit;
* a non-root ``User=`` and hardening that still lets a Raspberry Pi read its
  temperature (no ``PrivateDevices=``, which would hide ``/dev/vchiq``; no
  ``SystemCallArchitectures=native``, which breaks 32-bit userlands on 64-bit kernels).

:func:`render_unit` is pure; the CLI writes the result.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from .identity import validate_app

__all__ = ["UnitSpec", "quote_exec", "render_unit"]

_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]*[$]?", re.IGNORECASE)
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _abs(path: str | None, what: str) -> None:
    if path is not None and not path.startswith("/"):
        raise ValueError(f"{what} must be an absolute path, got {path!r}")


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """What goes into the unit. ``exec`` is the command as a list of arguments
    (or a shell-like string, split with :func:`shlex.split`); its first element must
    be an absolute path."""

    app: str
    exec: Sequence[str] | str
    description: str | None = None
    user: str | None = None
    group: str | None = None
    working_directory: str | None = None
    environment_file: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    restart_sec: float = 5.0
    start_limit_interval_sec: float = 300.0
    start_limit_burst: int = 5
    watchdog_sec: float | None = 30.0
    timeout_stop_sec: float = 30.0
    supplementary_groups: tuple[str, ...] = ()
    read_write_paths: tuple[str, ...] = ()
    hardening: bool = True

    def __post_init__(self) -> None:
        validate_app(self.app)
        argv = shlex.split(self.exec) if isinstance(self.exec, str) else list(self.exec)
        if not argv:
            raise ValueError("exec must name the command to run")
        _abs(argv[0], "the executable in --exec")
        object.__setattr__(self, "exec", tuple(argv))
        for who, value in (("user", self.user), ("group", self.group)):
            if value is not None and not _NAME_RE.fullmatch(value):
                raise ValueError(f"invalid {who} name {value!r}")
        for name in self.supplementary_groups:
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"invalid supplementary group {name!r}")
        _abs(self.working_directory, "working_directory")
        if self.environment_file is not None:
            _abs(self.environment_file.lstrip("-"), "environment_file")
        for p in self.read_write_paths:
            _abs(p, "read_write_paths entries")
        for key, value in self.environment.items():
            if not _ENV_KEY_RE.fullmatch(key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if "\n" in value:
                raise ValueError(f"environment value of {key} must be one line")
        if self.restart_sec <= 0 or self.timeout_stop_sec <= 0:
            raise ValueError("restart_sec and timeout_stop_sec must be > 0")
        if self.start_limit_interval_sec <= 0 or self.start_limit_burst < 1:
            raise ValueError("start_limit_interval_sec must be > 0 and start_limit_burst >= 1")
        if self.watchdog_sec is not None and self.watchdog_sec < 1:
            raise ValueError("watchdog_sec must be >= 1 second (or None to disable)")


def _escape_specifiers(text: str) -> str:
    # systemd expands %-specifiers everywhere and $VAR in ExecStart arguments.
    return text.replace("%", "%%")


def quote_exec(argv: Sequence[str]) -> str:
    """An ``ExecStart=`` command line: each argument quoted when needed, with
    ``%`` and ``$`` escaped so systemd passes them literally."""
    out = []
    for arg in argv:
        a = _escape_specifiers(arg).replace("$", "$$")
        if a == "" or re.search(r"[\s\"'\\;]", a):
            a = '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(a)
    return " ".join(out)


def _num(value: float) -> str:
    return f"{value:g}"


def render_unit(spec: UnitSpec) -> str:
    """The text of ``<app>.service``."""
    app = spec.app
    desc = spec.description or f"fieldmq service {app}"
    env_file = spec.environment_file or f"-/etc/fieldmq/{app}.env"
    env = {"PYTHONUNBUFFERED": "1", "FIELDMQ_APP": app, **spec.environment}
    assert not isinstance(spec.exec, str)
    lines = [
        "# Generated by `fieldmq systemd-unit`. Install with:",
        f"#   sudo cp {app}.service /etc/systemd/system/ && sudo systemctl daemon-reload",
        f"#   sudo systemctl enable --now {app}.service",
        "[Unit]",
        f"Description={_escape_specifiers(desc)}",
        "Wants=network-online.target",
        "After=network-online.target",
        f"StartLimitIntervalSec={_num(spec.start_limit_interval_sec)}",
        f"StartLimitBurst={spec.start_limit_burst}",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={quote_exec(spec.exec)}",
        "Restart=on-failure",
        f"RestartSec={_num(spec.restart_sec)}",
        f"TimeoutStopSec={_num(spec.timeout_stop_sec)}",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
    ]
    if spec.watchdog_sec is not None:
        lines.append(f"WatchdogSec={_num(spec.watchdog_sec)}")
    if spec.user:
        lines.append(f"User={spec.user}")
    if spec.group:
        lines.append(f"Group={spec.group}")
    if spec.supplementary_groups:
        lines.append("SupplementaryGroups=" + " ".join(spec.supplementary_groups))
    if spec.working_directory:
        lines.append(f"WorkingDirectory={_escape_specifiers(spec.working_directory)}")
    lines.append(f"EnvironmentFile={_escape_specifiers(env_file)}")
    for key, value in env.items():
        quoted = _escape_specifiers(value).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'Environment="{key}={quoted}"')
    lines += [
        f"StateDirectory=fieldmq/{app}",
        "StateDirectoryMode=0750",
        f"SyslogIdentifier={app}",
        "StandardOutput=journal",
        "StandardError=journal",
    ]
    if spec.hardening:
        lines += [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        ]
        if spec.read_write_paths:
            lines.append(
                "ReadWritePaths=" + " ".join(_escape_specifiers(p) for p in spec.read_write_paths)
            )
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)
