"""Service configuration: one typed record, read from TOML, environment and flags.

Precedence, lowest to highest (a later source overrides an earlier one key by key):

1. built-in defaults;
2. the TOML file given by ``--config PATH`` or ``FIELDMQ_CONFIG``;
3. environment variables ``FIELDMQ_<KEY>`` (``http.port`` is ``FIELDMQ_HTTP_PORT``);
4. command-line flags (``--http-port 9100``, or ``--set http.port=9100`` for any key).

Every key is listed in :data:`KEYS` with its type and default. An invalid value
raises :class:`~fieldmq.ConfigError` whose ``key`` and ``source`` say which value
and where it came from (``file /etc/fieldmq/meter.toml``, ``env FIELDMQ_HTTP_PORT``,
``flag --http-port``). Unknown keys in a file are errors (a typo must not be
silently ignored); the ``[extra]`` table is left to the application. Unknown
``FIELDMQ_*`` variables are ignored (other tools use the prefix too).

Parsing is pure: :func:`load_config` takes the environment and the parsed flags
as arguments; only reading the TOML file touches the disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.config import TLS, Limits, parse_broker_url
from ..errors import ConfigError
from .health import HealthThresholds
from .identity import client_id_for, default_host, sanitize_host, validate_app, validate_worker

__all__ = [
    "KEYS",
    "HttpSettings",
    "ServiceConfig",
    "WatchdogSettings",
    "add_arguments",
    "config_file_from_args",
    "env_name",
    "flags_from_args",
    "load_config",
    "parse_argv",
]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class _Key:
    kind: str  # str, int, float, bool, list, path
    default: Any
    help: str
    optional: bool = False
    minimum: float | None = None
    secret: bool = False
    choices: tuple[Any, ...] = ()


_H = HealthThresholds()
KEYS: dict[str, _Key] = {
    "app": _Key("str", None, "application name: lock file, unit name, client id", optional=True),
    "group": _Key("str", None, "first topic level; default: the app name", optional=True),
    "node": _Key("str", None, "second topic level; default: the host name", optional=True),
    "worker": _Key("str", None, "worker number/name when an app runs several", optional=True),
    "client_id": _Key("str", None, "MQTT client id; default <app>-<host>[-<worker>]",
                      optional=True),
    "brokers": _Key("list", ("mqtt://127.0.0.1:1883",), "broker URLs, tried in order"),
    "username": _Key("str", None, "MQTT user name", optional=True),
    "password": _Key("str", None, "MQTT password (never logged)", optional=True, secret=True),
    "protocol": _Key("int", 5, "MQTT protocol: 5 or 4 (3.1.1)", choices=(4, 5)),
    "keepalive": _Key("float", 30.0, "MQTT keepalive in seconds", minimum=1),
    "state_dir": _Key("path", None, "lock, status and store directory", optional=True),
    "store": _Key("str", "auto", "'auto' (in state_dir), 'memory', or a file path"),
    "max_messages": _Key("int", Limits().max_messages, "store limit in messages", minimum=1),
    "max_bytes": _Key("int", Limits().max_bytes, "store limit in bytes", minimum=1024),
    "heartbeat_interval": _Key("float", 30.0, "seconds between heartbeats; 0 disables",
                               minimum=0),
    "drain_timeout": _Key("float", 10.0, "seconds given to in-flight messages at stop",
                          minimum=0),
    "probe_interval": _Key("float", 5.0, "seconds between disk/temperature probes",
                           minimum=0.05),
    "log.json": _Key("bool", None, "JSON log lines; default: off", optional=True),
    "log.level": _Key("str", "INFO", "log level", choices=_LEVELS),
    "http.host": _Key("str", "127.0.0.1", "address of the /health and /metrics server"),
    "http.port": _Key("int", None, "port of the HTTP server; unset disables it, 0 picks one",
                      optional=True, minimum=0),
    "watchdog.max_loop_age": _Key(
        "float", None, "network loop stall that stops WATCHDOG=1; default WatchdogSec/2",
        optional=True, minimum=0.01),
    "watchdog.beat_timeout": _Key(
        "float", None, "if set, the app must call Service.beat() this often", optional=True,
        minimum=0.01),
    "tls.ca_file": _Key("path", None, "CA bundle for the broker's certificate", optional=True),
    "tls.cert_file": _Key("path", None, "client certificate (mutual TLS)", optional=True),
    "tls.key_file": _Key("path", None, "client key (mutual TLS)", optional=True),
}
for _f in dataclasses.fields(HealthThresholds):
    KEYS[f"health.{_f.name}"] = _Key("float", getattr(_H, _f.name), "health threshold",
                                     minimum=0)


def env_name(key: str) -> str:
    """``http.port`` -> ``FIELDMQ_HTTP_PORT``."""
    return "FIELDMQ_" + key.upper().replace(".", "_")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Where ``/health`` and ``/metrics`` are served; ``port=None`` disables them."""

    host: str = "127.0.0.1"
    port: int | None = None


@dataclass(frozen=True, slots=True)
class WatchdogSettings:
    """What must keep making progress for the service to feed systemd's watchdog."""

    max_loop_age: float | None = None
    beat_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything a :class:`~fieldmq.runtime.Service` needs. Build it with
    :func:`load_config` (file, environment, flags) or directly in Python; unset
    ``group``, ``node`` and ``client_id`` are derived from the app and host."""

    app: str
    group: str | None = None
    node: str | None = None
    worker: str | None = None
    client_id: str | None = None
    brokers: tuple[str, ...] = ("mqtt://127.0.0.1:1883",)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: int = 5
    keepalive: float = 30.0
    state_dir: Path | None = None
    store: str = "auto"
    max_messages: int = Limits().max_messages
    max_bytes: int = Limits().max_bytes
    heartbeat_interval: float = 30.0
    drain_timeout: float = 10.0
    probe_interval: float = 5.0
    log_json: bool | None = None
    log_level: str = "INFO"
    http: HttpSettings = field(default_factory=HttpSettings)
    watchdog: WatchdogSettings = field(default_factory=WatchdogSettings)
    health: HealthThresholds = field(default_factory=HealthThresholds)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        def bad(key: str, exc: Exception) -> ConfigError:
            return ConfigError(
                f"{key}: {exc}", key=key, source=self.sources.get(key, "argument")
            )

        try:
            validate_app(self.app)
        except (TypeError, ValueError) as exc:
            raise bad("app", exc) from exc
        try:
            object.__setattr__(self, "worker", validate_worker(self.worker))
        except ValueError as exc:
            raise bad("worker", exc) from exc
        if isinstance(self.brokers, str):
            object.__setattr__(self, "brokers", (self.brokers,))
        if not self.brokers:
            raise bad("brokers", ValueError("at least one broker URL is needed"))
        for url in self.brokers:
            try:
                parse_broker_url(url)
            except (TypeError, ValueError) as exc:
                raise bad("brokers", exc) from exc
        for key in ("group", "node"):
            value = getattr(self, key)
            if value is not None and (not value or any(c in value for c in "/+#\0")):
                raise bad(key, ValueError(f"{value!r} must be one topic level (no / + # NUL)"))

    # -- derived values ----------------------------------------------------------------
    @property
    def topic_group(self) -> str:
        """The first topic level: ``group`` or the app name."""
        return self.group or self.app

    @property
    def topic_node(self) -> str:
        """The second topic level: ``node`` or this host's name."""
        return self.node or default_host()

    @property
    def resolved_client_id(self) -> str:
        """``client_id`` or ``<app>-<host>[-<worker>]``."""
        if self.client_id:
            return self.client_id
        host = sanitize_host(self.node) if self.node else None
        return client_id_for(self.app, host, self.worker)

    def limits(self) -> Limits:
        return Limits(max_messages=self.max_messages, max_bytes=self.max_bytes)

    def tls(self) -> TLS | None:
        """A :class:`~fieldmq.TLS` when a TLS file is configured, else ``None``."""
        if not (self.tls_ca_file or self.tls_cert_file or self.tls_key_file):
            return None
        try:
            return TLS(
                ca_file=str(self.tls_ca_file) if self.tls_ca_file else None,
                cert_file=str(self.tls_cert_file) if self.tls_cert_file else None,
                key_file=str(self.tls_key_file) if self.tls_key_file else None,
            )
        except (OSError, ValueError) as exc:
            key = "tls.ca_file"
            for name in ("key", "cert"):
                if name in str(exc):
                    key = f"tls.{name}_file"
            raise ConfigError(
                f"{key}: {exc}", key=key, source=self.sources.get(key, "argument")
            ) from exc

    def source_of(self, key: str) -> str:
        """Where ``key``'s value came from: ``default``, ``file ...``, ``env ...``, ``flag ...``."""
        return self.sources.get(key, "default")


# -- parsing -----------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(key: str, spec: _Key, raw: object, source: str) -> Any:
    def fail(why: str) -> ConfigError:
        shown = "***" if spec.secret else repr(raw)
        return ConfigError(f"{key} = {shown} ({source}): {why}", key=key, source=source)

    from_text = isinstance(raw, str) and not source.startswith("file")
    if raw is None or (from_text and raw == "" and spec.optional):
        if not spec.optional:
            raise fail("a value is required")
        return None
    value: Any
    try:
        if spec.kind in ("str", "path"):
            if not isinstance(raw, str):
                raise fail(f"expected a string, got {type(raw).__name__}")
            value = Path(raw).expanduser() if spec.kind == "path" else raw
            if spec.kind == "str" and spec.choices:
                value = raw.upper() if key == "log.level" else raw
        elif spec.kind == "bool":
            if isinstance(raw, bool):
                value = raw
            elif from_text and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
                value = raw.strip().lower() in _TRUE
            else:
                raise fail("expected true or false")
        elif spec.kind in ("int", "float"):
            if isinstance(raw, bool):
                raise fail(f"expected a number, got {raw!r}")
            if from_text:
                assert isinstance(raw, str)
                value = int(raw.strip()) if spec.kind == "int" else float(raw.strip())
            elif spec.kind == "int" and isinstance(raw, int):
                value = raw
            elif spec.kind == "float" and isinstance(raw, (int, float)):
                value = float(raw)
            else:
                raise fail(f"expected {'an integer' if spec.kind == 'int' else 'a number'}")
            if value != value or value in (float("inf"), float("-inf")):
                raise fail("expected a finite number")
            if spec.minimum is not None and value < spec.minimum:
                raise fail(f"must be >= {spec.minimum:g}")
        elif spec.kind == "list":
            if isinstance(raw, str):
                value = tuple(p.strip() for p in raw.split(",") if p.strip())
            elif isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
                value = tuple(raw)
            else:
                raise fail("expected a list of strings (or a comma-separated string)")
        else:  # pragma: no cover - the table above is closed
            raise AssertionError(spec.kind)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise fail(f"expected {'an integer' if spec.kind == 'int' else 'a number'}") from None
    if spec.choices and value not in spec.choices:
        raise fail("must be one of " + ", ".join(str(c) for c in spec.choices))
    return value


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in KEYS:
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    source = f"file {path}"
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist", key="config",
                          source=source) from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}",
                          key="config", source=source) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", key="config",
                          source=source) from exc
    extra = data.pop("extra", {})
    if not isinstance(extra, dict):
        raise ConfigError("[extra] must be a table", key="extra", source=source)
    return _flatten(data), extra


def load_config(
    app: str | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, tuple[object, str]] | None = None,
) -> ServiceConfig:
    """Merge defaults, the TOML file, ``FIELDMQ_*`` variables and ``flags``.

    ``app`` is the default application name (a file, variable or flag may override
    it). ``config_file`` defaults to ``$FIELDMQ_CONFIG``. ``flags`` maps a key to
    ``(value, "flag --name")``; :func:`flags_from_args` builds it from argparse.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if app is not None:
        values["app"] = app
        sources["app"] = "argument"

    if config_file is None and env.get("FIELDMQ_CONFIG"):
        config_file = env["FIELDMQ_CONFIG"]
    if config_file is not None:
        path = Path(config_file).expanduser()
        table, extra = _read_file(path)
        source = f"file {path}"
        for key, raw in table.items():
            spec = KEYS.get(key)
            if spec is None:
                close = [k for k in KEYS if k.split(".")[-1] == key.split(".")[-1]]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown key {key!r} in {path}{hint}", key=key, source=source)
            values[key] = _convert(key, spec, raw, source)
            sources[key] = source

    for key, spec in KEYS.items():
        name = env_name(key)
        if name in env:
            source = f"env {name}"
            values[key] = _convert(key, spec, env[name], source)
            sources[key] = source

    for key, (raw, source) in (flags or {}).items():
        spec = KEYS.get(key)
        if spec is None:
            raise ConfigError(f"unknown key {key!r} ({source})", key=key, source=source)
        values[key] = _convert(key, spec, raw, source)
        sources[key] = source

    if not values.get("app"):
        raise ConfigError(
            "no application name: pass --app NAME, set FIELDMQ_APP or app = ... in the file",
            key="app", source="default",
        )
    return _build(values, sources, extra)


def _build(values: dict[str, Any], sources: dict[str, str], extra: dict[str, Any]) -> ServiceConfig:
    def get(key: str) -> Any:
        return values.get(key, KEYS[key].default)

    try:
        health = HealthThresholds(
            **{f.name: float(get(f"health.{f.name}")) for f in dataclasses.fields(HealthThresholds)}
        )
    except ValueError as exc:
        m = re.search(r"health\.(\w+)", str(exc))
        key = m.group(0) if m else "health"
        raise ConfigError(str(exc), key=key, source=sources.get(key, "default")) from exc
    return ServiceConfig(
        app=get("app"),
        group=get("group"),
        node=get("node"),
        worker=get("worker"),
        client_id=get("client_id"),
        brokers=tuple(get("brokers")),
        username=get("username"),
        password=get("password"),
        protocol=get("protocol"),
        keepalive=get("keepalive"),
        state_dir=get("state_dir"),
        store=get("store"),
        max_messages=get("max_messages"),
        max_bytes=get("max_bytes"),
        heartbeat_interval=get("heartbeat_interval"),
        drain_timeout=get("drain_timeout"),
        probe_interval=get("probe_interval"),
        log_json=get("log.json"),
        log_level=get("log.level"),
        http=HttpSettings(host=get("http.host"), port=get("http.port")),
        watchdog=WatchdogSettings(
            max_loop_age=get("watchdog.max_loop_age"), beat_timeout=get("watchdog.beat_timeout")
        ),
        health=health,
        tls_ca_file=get("tls.ca_file"),
        tls_cert_file=get("tls.cert_file"),
        tls_key_file=get("tls.key_file"),
        extra=extra,
        sources=sources,
    )


# -- command line ----------------------------------------------------------------------
_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--app", "app", {}),
    ("--group", "group", {}),
    ("--node", "node", {}),
    ("--worker", "worker", {}),
    ("--client-id", "client_id", {}),
    ("--broker", "brokers", {"action": "append"}),
    ("--state-dir", "state_dir", {}),
    ("--store", "store", {}),
    ("--heartbeat-interval", "heartbeat_interval", {}),
    ("--http-host", "http.host", {}),
    ("--http-port", "http.port", {}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the service flags (``--config``, ``--app``, ``--broker``..., ``--set``) to
    ``parser``; read them back with :func:`flags_from_args`."""
    group = parser.add_argument_group("fieldmq service")
    group.add_argument("--config", dest="fieldmq_config", metavar="PATH",
                       help="TOML configuration file (default: $FIELDMQ_CONFIG)")
    for flag, key, kw in _FLAGS:
        spec = KEYS[key]
        group.add_argument(flag, dest=f"fieldmq_{key.replace('.', '_')}", default=None,
                           metavar=key.split(".")[-1].upper(), help=spec.help, **kw)
    group.add_argument("--set", dest="fieldmq_set", action="append", default=[],
                       metavar="KEY=VALUE", help="set any configuration key, e.g. "
                       "--set health.disk_degraded_free_percent=10")


def flags_from_args(args: argparse.Namespace) -> dict[str, tuple[object, str]]:
    """The flags given on the command line, as ``{key: (value, "flag --name")}``."""
    out: dict[str, tuple[object, str]] = {}
    for flag, key, _ in _FLAGS:
        value = getattr(args, f"fieldmq_{key.replace('.', '_')}", None)
        if value is None:
            continue
        if key == "brokers":
            value = ",".join(value)
        out[key] = (value, f"flag {flag}")
    for item in getattr(args, "fieldmq_set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE", key=key,
                              source=f"flag --set {item}")
        out[key.strip()] = (value, f"flag --set {key.strip()}")
    return out


def config_file_from_args(args: argparse.Namespace) -> str | None:
    value = getattr(args, "fieldmq_config", None)
    return None if value is None else str(value)


def parse_argv(
    app: str | None, argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
    prog: str | None = None,
) -> ServiceConfig:
    """Parse ``argv`` (default ``sys.argv[1:]``) with only the service flags and load."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return load_config(app, config_file=config_file_from_args(args), env=env,
                       flags=flags_from_args(args))
