"""Who a service is: its application name, host, worker and the names derived from them.

Everything here is pure. An application name becomes part of a file name (the
lock), a systemd unit name, a supervisor program name and an MQTT client id, so
it is restricted to characters that are safe in all four. Client ids are
``<app>-<host>[-<worker>]``: unique per application and host, so two
applications on one machine, or one application on two machines, never take over
each other's broker session.
"""

from __future__ import annotations

import re
import socket

__all__ = [
    "client_id_for",
    "default_host",
    "sanitize_host",
    "validate_app",
    "validate_worker",
]

_APP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOST_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def validate_app(app: object) -> str:
    """Return ``app`` if it is a valid application name, else raise ``ValueError``.

    1 to 64 characters: letters, digits, ``_``, ``.`` and ``-``, starting with a
    letter or digit (it names the lock file, the unit and the client id).
    """
    if not isinstance(app, str):
        raise TypeError(f"app must be a str, got {type(app).__name__}")
    if not _APP_RE.fullmatch(app):
        raise ValueError(
            f"invalid app name {app!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (e.g. 'meter-reader')"
        )
    return app


def validate_worker(worker: object) -> str | None:
    """Return ``worker`` (``None`` or a name like ``app`` names), else raise."""
    if worker is None:
        return None
    if isinstance(worker, int) and not isinstance(worker, bool):
        worker = str(worker)
    if not isinstance(worker, str) or not _APP_RE.fullmatch(worker):
        raise ValueError(
            f"invalid worker {worker!r}: use a number or 1-64 letters, digits, '_', '.', '-'"
        )
    return worker


def sanitize_host(host: str) -> str:
    """Reduce a host name to its first label, with characters unsafe in topics replaced.

    ``pi-07.lan`` becomes ``pi-07``; anything outside ``[A-Za-z0-9_.-]`` becomes ``-``.
    """
    label = host.strip().split(".", 1)[0] if host.strip() else ""
    cleaned = _HOST_BAD.sub("-", label).strip("-")
    return cleaned or "localhost"


def default_host() -> str:
    """This machine's host name, sanitized with :func:`sanitize_host`."""
    return sanitize_host(socket.gethostname())


def client_id_for(app: str, host: str | None = None, worker: str | int | None = None) -> str:
    """The MQTT client id ``<app>-<host>[-<worker>]``.

    >>> client_id_for("meter", "pi-07", 2)
    'meter-pi-07-2'
    """
    validate_app(app)
    name = f"{app}-{sanitize_host(host) if host is not None else default_host()}"
    w = validate_worker(worker)
    if w is not None:
        name = f"{name}-{w}"
    return name
