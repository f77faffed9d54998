"""The bridge configuration: frozen dataclasses, built and checked from a TOML table.

Pure apart from :func:`load_config` reading the file. Every problem raises
:class:`~fieldmq.ConfigError` whose message names the mapping (``forward[2]
'temps'``) or key and says what is wrong and what to write instead; ``key`` and
``source`` carry the same for programs. See ``docs/bridge.md`` for the format.
"""

from __future__ import annotations

import difflib
import math
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..client.config import TLS, parse_broker_url
from ..errors import ConfigError
from ..ratelimit import RateLimit
from .loops import loop_risks, valid_name
from .mapping import TopicRewrite

__all__ = ["BridgeConfig", "BridgeMapping", "Link", "Rollup", "load_config", "parse_config"]

Direction = Literal["forward", "reverse"]
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DURABILITY = ("batched", "sync", "process")


@dataclass(frozen=True, slots=True)
class Rollup:
    """Summarise a mapping's messages per ``interval`` seconds instead of forwarding
    each one; ``field`` is the (dotted) JSON object field holding the value."""

    interval: float
    field: str | None = "value"

    def __post_init__(self) -> None:
        i = self.interval
        if isinstance(i, bool) or not isinstance(i, (int, float)) or not math.isfinite(i) or i <= 0:
            raise ValueError(f"rollup interval must be a positive number of seconds, got {i!r}")
        if self.field is not None and (not isinstance(self.field, str) or not self.field):
            raise ValueError(f"rollup field must be a non-empty string, got {self.field!r}")


@dataclass(frozen=True, slots=True)
class BridgeMapping:
    """One mapping: messages matching ``source`` on one side are published to
    ``target`` (wildcards filled in, see :class:`~fieldmq.bridge.mapping.TopicRewrite`)
    on the other side with this QoS, priority, TTL and retain flag."""

    name: str
    direction: Direction
    source: str
    target: str
    qos: int = 1
    priority: int = 5
    ttl: float | None = None
    retain: bool = False
    rollup: Rollup | None = None
    rewrite: TopicRewrite = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rewrite", TopicRewrite(self.source, self.target))
        if isinstance(self.qos, bool) or self.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {self.qos!r}")
        p = self.priority
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 10:
            raise ValueError(f"priority must be an integer from 1 (lowest) to 10, got {p!r}")
        t = self.ttl
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0):
            raise ValueError(f"ttl must be a positive number of seconds, got {t!r}")
        if self.rollup is not None and self.direction != "forward":
            raise ValueError("rollup is only available on forward mappings")

    def target_topic(self, topic: str) -> str:
        return self.rewrite.rewrite(topic)


@dataclass(frozen=True, slots=True)
class Link:
    """One side of the bridge: the broker and how the bridge's client talks to it."""

    url: str | None = None
    name: str | None = None
    protocol: Literal[4, 5] = 5
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TLS | None = None
    keepalive: float = 30.0
    receive_maximum: int = 100
    session_expiry: int = 7 * 86400
    max_messages: int = 1_000_000
    max_bytes: int = 512 * 1024 * 1024
    durability: Literal["batched", "sync", "process"] = "batched"
    envelope: bool = False

    @property
    def broker_name(self) -> str:
        """The name used on message paths: ``name``, else ``host:port`` of the URL."""
        if self.name:
            return self.name
        if self.url is None:
            raise ValueError("the link has no URL")
        b = parse_broker_url(self.url)
        return f"{b.host}:{b.port}"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The whole bridge. Build it with :func:`parse_config` / :func:`load_config` or
    directly (then call :meth:`checked`)."""

    id: str
    local: Link
    upstream: Link
    forward: tuple[BridgeMapping, ...] = ()
    reverse: tuple[BridgeMapping, ...] = ()
    rate_limit: RateLimit | None = None
    state_dir: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    heartbeat_interval: float = 30.0
    service: bool = True
    when_full: Literal["wait", "evict"] = "wait"
    tick: float = 0.05
    source: str = "<config>"

    @property
    def mappings(self) -> tuple[BridgeMapping, ...]:
        return self.forward + self.reverse

    def with_urls(self, local: str | None, upstream: str | None) -> BridgeConfig:
        """A copy with the broker URLs replaced (the ``--from`` / ``--to`` flags)."""
        lo = replace(self.local, url=local) if local else self.local
        up = replace(self.upstream, url=upstream) if upstream else self.upstream
        return replace(self, local=lo, upstream=up).checked()

    def checked(self) -> BridgeConfig:
        """Check what involves more than one value; raise ``ConfigError``."""
        src = self.source
        if not _ID_RE.fullmatch(self.id):
            raise ConfigError(
                f"{src}: bridge id {self.id!r} must be 1-64 letters, digits, '_', '.', '-'",
                key="id", source=src)
        for side, link in (("local", self.local), ("upstream", self.upstream)):
            if link.url is None:
                flag = "--from" if side == "local" else "--to"
                raise ConfigError(
                    f"{src}: no {side} broker; pass {flag} URL or set {side}.url",
                    key=f"{side}.url", source=src)
            try:
                parse_broker_url(link.url)
            except ValueError as exc:
                raise ConfigError(f"{src}: {side}.url: {exc}", key=f"{side}.url",
                                  source=src) from None
            if not valid_name(link.broker_name):
                raise ConfigError(
                    f"{src}: {side}.name {link.broker_name!r} must be non-empty, without "
                    "commas or surrounding spaces", key=f"{side}.name", source=src)
        if self.local.broker_name == self.upstream.broker_name:
            raise ConfigError(
                f"{src}: the local and upstream brokers are both named "
                f"{self.local.broker_name!r}; loop prevention needs distinct names "
                "(set local.name and upstream.name)", key="upstream.name", source=src)
        if not self.mappings:
            raise ConfigError(f"{src}: no mappings; add at least one [[forward]] table",
                              key="forward", source=src)
        names: dict[str, str] = {}
        for m in self.mappings:
            where = f"{m.direction} {m.name!r}"
            if m.name in names:
                raise ConfigError(
                    f"{src}: mapping {m.name!r} is defined twice ({names[m.name]} and "
                    f"{m.direction}); mapping names must be unique", key=f"{m.name}.name",
                    source=src)
            names[m.name] = where
        if 4 in (self.local.protocol, self.upstream.protocol):
            fwd = [(m.source, m.target) for m in self.forward]
            rev = [(m.source, m.target) for m in self.reverse]
            for i, j in loop_risks(fwd, rev):
                f, r = self.forward[i], self.reverse[j]
                raise ConfigError(
                    f"{src}: mappings forward {f.name!r} ({f.source} -> {f.target}) and "
                    f"reverse {r.name!r} ({r.source} -> {r.target}) could pass messages back "
                    "and forth forever: over MQTT 3.1.1 the bridge cannot mark forwarded "
                    "messages, so the two directions must use disjoint topics",
                    key=f"{r.name}.source", source=src)
        return self


# -- parsing ------------------------------------------------------------------------------
_TOP = {"id", "state_dir", "heartbeat_interval", "service", "when_full", "local", "upstream",
        "forward", "reverse", "http"}
_LINK = {"url", "name", "protocol", "username", "password", "keepalive", "receive_maximum",
         "session_expiry", "max_messages", "max_bytes", "durability", "envelope", "tls",
         "rate_limit", "burst"}
_TLS = {"ca_file", "cert_file", "key_file", "verify", "check_hostname", "server_hostname"}
_HTTP = {"host", "port"}
_MAP = {"name", "from", "to", "qos", "priority", "ttl", "retain", "rollup"}
_ROLLUP = {"interval", "field"}


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str, src: str) -> None:
    for key in table:
        if key not in allowed:
            near = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {sorted(allowed)}"
            if key in ("rate_limit", "burst") and where == "local.":
                hint = "; the bandwidth cap applies to the upstream link: put it in [upstream]"
            raise ConfigError(f"{src}: unknown key {where + key!r}{hint}", key=f"{where}{key}",
                              source=src)


def _get(table: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str, src: str,
         default: Any = None) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and bool not in kinds:
        value = None
    if not isinstance(value, kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{src}: {where}{key} = {table[key]!r}: expected {want}",
                          key=f"{where}{key}", source=src)
    return value


def _link(table: Mapping[str, Any], side: str, src: str) -> tuple[Link, RateLimit | None]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{src}: [{side}] must be a table", key=side, source=src)
    _unknown(table, _LINK if side == "upstream" else _LINK - {"rate_limit", "burst"},
             f"{side}.", src)
    w = f"{side}."
    tls = None
    if "tls" in table:
        t = table["tls"]
        if not isinstance(t, Mapping):
            raise ConfigError(f"{src}: [{side}.tls] must be a table", key=f"{w}tls", source=src)
        _unknown(t, _TLS, f"{w}tls.", src)
        try:
            tls = TLS(**{k: v for k, v in t.items()})
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(f"{src}: {w}tls: {exc}", key=f"{w}tls", source=src) from None
    protocol = _get(table, "protocol", (int,), w, src, 5)
    if protocol not in (4, 5):
        raise ConfigError(f"{src}: {w}protocol = {protocol!r}: expected 5 or 4 (MQTT 3.1.1)",
                          key=f"{w}protocol", source=src)
    durability = _get(table, "durability", (str,), w, src, "batched")
    if durability not in _DURABILITY:
        raise ConfigError(f"{src}: {w}durability = {durability!r}: expected one of "
                          f"{', '.join(_DURABILITY)}", key=f"{w}durability", source=src)
    ints = {}
    for key, default, low in (("receive_maximum", 100, 1), ("session_expiry", 7 * 86400, 0),
                              ("max_messages", 1_000_000, 1), ("max_bytes", 512 * 2**20, 1024)):
        v = _get(table, key, (int,), w, src, default)
        if v < low or (key == "receive_maximum" and v > 65535):
            raise ConfigError(f"{src}: {w}{key} = {v!r} is out of range", key=f"{w}{key}",
                              source=src)
        ints[key] = v
    keepalive = _get(table, "keepalive", (int, float), w, src, 30.0)
    if not 0 < keepalive <= 65535:
        raise ConfigError(f"{src}: {w}keepalive = {keepalive!r}: expected 1..65535 seconds",
                          key=f"{w}keepalive", source=src)
    link = Link(
        url=_get(table, "url", (str,), w, src),
        name=_get(table, "name", (str,), w, src),
        protocol=protocol,
        username=_get(table, "username", (str,), w, src),
        password=_get(table, "password", (str,), w, src),
        tls=tls,
        keepalive=float(keepalive),
        durability=durability,
        envelope=_get(table, "envelope", (bool,), w, src, False),
        **ints,
    )
    rate = None
    if "rate_limit" in table:
        bps = _get(table, "rate_limit", (int, float), w, src)
        burst = _get(table, "burst", (int, float), w, src)
        try:
            rate = RateLimit(bps, burst)
        except ValueError as exc:
            raise ConfigError(f"{src}: {w}rate_limit: {exc}", key=f"{w}rate_limit",
                              source=src) from None
    elif "burst" in table:
        raise ConfigError(f"{src}: {w}burst needs {w}rate_limit (bytes per second)",
                          key=f"{w}burst", source=src)
    return link, rate


def _mapping(table: Any, direction: Direction, index: int, src: str) -> BridgeMapping:
    label = f"{direction}[{index}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{src}: {label} must be a table ([[{direction}]])", key=label,
                          source=src)
    name = table.get("name", f"{direction}-{index + 1}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{src}: {label}.name must be a non-empty string", key=f"{label}.name",
                          source=src)
    where = f"mapping {name!r} ({label})"

    def fail(problem: str, key: str) -> ConfigError:
        return ConfigError(f"{src}: {where}: {problem}", key=f"{label}.{key}", source=src)

    for key in table:
        if key not in _MAP:
            near = difflib.get_close_matches(key, sorted(_MAP), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {sorted(_MAP)}"
            raise fail(f"unknown key {key!r}{hint}", key)
    if "from" not in table:
        raise fail("'from' is missing: the topic filter to forward", "from")
    source = table["from"]
    target = table.get("to", source)
    if not isinstance(source, str) or not isinstance(target, str):
        raise fail("'from' and 'to' must be strings", "from")
    rollup = None
    if "rollup" in table:
        r = table["rollup"]
        if not isinstance(r, Mapping):
            raise fail("'rollup' must be a table: rollup = { interval = 60, field = \"value\" }",
                       "rollup")
        bad = set(r) - _ROLLUP
        if bad:
            raise fail(f"unknown rollup key {sorted(bad)[0]!r}; expected interval, field",
                       "rollup")
        if "interval" not in r:
            raise fail("rollup needs 'interval' (seconds)", "rollup.interval")
        try:
            rollup = Rollup(r["interval"], r.get("field", "value"))
        except ValueError as exc:
            raise fail(str(exc), "rollup") from None
    try:
        return BridgeMapping(
            name=name, direction=direction, source=source, target=target,
            qos=table.get("qos", 1), priority=table.get("priority", 5), ttl=table.get("ttl"),
            retain=bool(table.get("retain", False)), rollup=rollup,
        )
    except (ValueError, TypeError) as exc:
        raise fail(str(exc), "to" if "target" in str(exc) else "from") from None


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> BridgeConfig:
    """Build and check a :class:`BridgeConfig` from a parsed TOML table.

    The broker URLs may be missing here when :meth:`BridgeConfig.with_urls` fills them
    in afterwards (the CLI does); :meth:`BridgeConfig.checked` is then called there.
    """
    src = source
    _unknown(data, _TOP, "", src)
    bridge_id = _get(data, "id", (str,), "", src) or _default_id()
    local, _ = _link(data.get("local", {}), "local", src)
    upstream, rate = _link(data.get("upstream", {}), "upstream", src)
    maps: dict[str, list[BridgeMapping]] = {}
    for direction in ("forward", "reverse"):
        tables = data.get(direction, [])
        if not isinstance(tables, list):
            raise ConfigError(f"{src}: {direction} must be an array of tables "
                              f"([[{direction}]])", key=direction, source=src)
        maps[direction] = [_mapping(t, direction, i, src) for i, t in enumerate(tables)]
    http = data.get("http", {})
    if not isinstance(http, Mapping):
        raise ConfigError(f"{src}: [http] must be a table", key="http", source=src)
    _unknown(http, _HTTP, "http.", src)
    port = _get(http, "port", (int,), "http.", src)
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"{src}: http.port = {port}: expected 0..65535", key="http.port",
                          source=src)
    state_dir = _get(data, "state_dir", (str,), "", src)
    hb = _get(data, "heartbeat_interval", (int, float), "", src, 30.0)
    if hb < 0:
        raise ConfigError(f"{src}: heartbeat_interval must be >= 0", key="heartbeat_interval",
                          source=src)
    when_full = _get(data, "when_full", (str,), "", src, "wait")
    if when_full not in ("wait", "evict"):
        raise ConfigError(f"{src}: when_full = {when_full!r}: expected 'wait' (stop taking "
                          "messages) or 'evict' (the store drops its oldest lowest-priority "
                          "messages)", key="when_full", source=src)
    return BridgeConfig(
        id=bridge_id,
        when_full=when_full,
        local=local,
        upstream=upstream,
        forward=tuple(maps["forward"]),
        reverse=tuple(maps["reverse"]),
        rate_limit=rate,
        state_dir=Path(state_dir).expanduser() if state_dir else None,
        http_host=_get(http, "host", (str,), "http.", src, "127.0.0.1"),
        http_port=port,
        heartbeat_interval=float(hb),
        service=_get(data, "service", (bool,), "", src, True),
        source=src,
    )


def load_config(
    path: str | Path, *, local: str | None = None, upstream: str | None = None
) -> BridgeConfig:
    """Read a TOML file, apply ``--from``/``--to`` URLs, and check everything."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}", source=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}", source=str(p)) from None
    return parse_config(data, source=str(p)).with_urls(local, upstream)


def _default_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-.") or "host"
    return f"bridge-{host}"[:64]
