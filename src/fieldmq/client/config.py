"""Grouped client settings as small frozen dataclasses, validated at construction."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from ..backoff import Backoff
from ..ratelimit import RateLimit
from ..topics import validate_topic

__all__ = ["TLS", "BrokerURL", "ConnectionSettings", "Limits", "Will", "parse_broker_url"]

_SCHEMES = {"mqtt": (1883, False), "tcp": (1883, False), "mqtts": (8883, True), "ssl": (8883, True)}


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """One broker to connect to, parsed from ``mqtt://[user[:pass]@]host[:port]``
    (``mqtts://`` turns on TLS; port defaults to 1883 / 8883)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(url: object) -> BrokerURL:
    """Parse a broker URL; raise ``ValueError`` naming what is wrong."""
    if isinstance(url, BrokerURL):
        return url
    if not isinstance(url, str):
        raise TypeError(f"broker must be a URL string like 'mqtt://host:1883', got {url!r}")
    text = url.strip()
    if "://" not in text:
        raise ValueError(f"broker URL {url!r} has no scheme; write 'mqtt://{text}' or 'mqtts://...'")
    parts = urlsplit(text)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"broker URL {url!r}: unknown scheme {parts.scheme!r}; use mqtt:// or mqtts://"
        )
    default_port, tls = _SCHEMES[parts.scheme]
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: invalid port ({exc})") from exc
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: MQTT URLs take no path, query or fragment")
    return BrokerURL(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _check_file(path: str | None, what: str) -> None:
    if path is None:
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TLS {what} file not found: {path!r}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"TLS {what} file is not readable: {path!r}")


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


@dataclass(frozen=True, slots=True)
class TLS:
    """TLS settings. Verification of the broker's certificate and host name is on by
    default; ``ca_file`` adds a private CA; ``cert_file``/``key_file`` enable mutual TLS.
    Missing files raise at construction, not later in a background thread."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    verify: bool = True
    check_hostname: bool = True
    server_hostname: str | None = None

    def __post_init__(self) -> None:
        _check_file(self.ca_file, "CA")
        _check_file(self.cert_file, "certificate")
        _check_file(self.key_file, "key")
        if self.key_file and not self.cert_file:
            raise ValueError("TLS key_file given without cert_file; mutual TLS needs both")

    def context(self) -> ssl.SSLContext:
        """Build the ``ssl.SSLContext``; raises ``ValueError`` for unusable files."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file, password=self.key_password)
        except ssl.SSLError as exc:
            raise ValueError(f"TLS files could not be loaded: {exc}") from exc
        # paho leaves the socket open when the TLS handshake fails; close it ourselves.
        ctx.sslsocket_class = _ClosingSSLSocket
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.check_hostname = self.check_hostname
        return ctx


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published by the broker when this client vanishes without a
    clean DISCONNECT."""

    topic: str
    payload: bytes | str = b""
    qos: int = 1
    retain: bool = True

    def __post_init__(self) -> None:
        validate_topic(self.topic)
        if self.qos not in (0, 1, 2):
            raise ValueError(f"Will.qos must be 0, 1 or 2, got {self.qos!r}")
        if not isinstance(self.payload, (bytes, str)):
            raise TypeError(f"Will.payload must be bytes or str, got {type(self.payload).__name__}")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much the store may hold. When a limit is reached, the lowest priority,
    oldest message is evicted; a message is never evicted to make room for one of
    lower priority (the new one is rejected instead)."""

    max_messages: int = 1_000_000
    max_bytes: int = 512 * 1024 * 1024
    qos0_offline: Literal["store", "drop"] = "store"

    def __post_init__(self) -> None:
        if self.max_messages < 1:
            raise ValueError(f"Limits.max_messages must be >= 1, got {self.max_messages!r}")
        if self.max_bytes < 1024:
            raise ValueError(f"Limits.max_bytes must be >= 1024, got {self.max_bytes!r}")
        if self.qos0_offline not in ("store", "drop"):
            raise ValueError(
                f"Limits.qos0_offline must be 'store' or 'drop', got {self.qos0_offline!r}"
            )


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What the network thread needs to know, built by ``Client`` from its arguments."""

    client_id: str
    brokers: tuple[BrokerURL, ...]
    keepalive: float
    protocol: int
    tls: TLS | None
    username: str | None
    password: str | None
    will: Will | None
    persistent_session: bool
    session_expiry: int
    backoff: Backoff
    window: int
    connect_timeout: float
    envelope: bool
    message_ids: bool
    ack_mode: str = "auto"
    receive_maximum: int | None = None
    rate_limit: RateLimit | None = None
