"""Log output for services: readable lines for people, one JSON object per line for
machines, no duplicate timestamps under systemd, and never a secret.

* :class:`HumanFormatter` -- ``2026-01-02 10:00:00,123 INFO fieldmq.runtime: ready``.
* :class:`JsonFormatter` -- ``{"ts": "...", "level": "INFO", "logger": ..., "message": ...}``
  plus any ``extra={...}`` fields and the formatted exception.
* Under systemd (``JOURNAL_STREAM`` names our stderr) the journal already stamps
  every line, so both formatters leave the time out and prefix the line with the
  syslog priority (``<3>``), which journald turns into the entry's level.
* :func:`redact` masks passwords in URLs (``mqtt://user:***@host``),
  ``password=...``-style pairs and PEM private keys; both formatters apply it to
  the message, the exception text and ``extra`` fields named like secrets.

Library code only logs; :func:`configure` is for applications (``Service.run``
calls it) and the ``fieldmq`` command.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["HumanFormatter", "JsonFormatter", "configure", "redact", "under_journal"]

_SECRET_KEYS = re.compile(r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key",
                          re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)", re.I)
_PAIR = re.compile(
    r"""(?P<key>["']?\b[\w.-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key)["']?"""
    r"""\s*[:=]\s*)(?P<q>["']?)(?P<val>[^\s"',;}&]+)""",
    re.IGNORECASE,
)
_PEM = re.compile(
    r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|$)", re.DOTALL
)
_MASK = "***"

# Attributes every LogRecord has; anything else came from extra={...}.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                    logging.ERROR: 3, logging.CRITICAL: 2}


def redact(text: str) -> str:
    """``text`` with passwords, tokens and private keys masked."""
    if not text:
        return text
    text = _PEM.sub("[private key redacted]", text)
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + _MASK, text)
    return _PAIR.sub(lambda m: m.group("key") + m.group("q") + _MASK, text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return _MASK
    if isinstance(value, str):
        return redact(value)
    return value


def under_journal(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (default stderr) is connected to systemd's journal.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` for the stream it connected;
    comparing it with the stream's own ``fstat`` tells a service whose output was
    redirected elsewhere (a file, a pipe) from one that writes to the journal.
    """
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        st = os.fstat(stream.fileno())
        dev, ino = value.split(":", 1)
        return st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


def _priority(levelno: int) -> int:
    for level in sorted(_SYSLOG_PRIORITY, reverse=True):
        if levelno >= level:
            return _SYSLOG_PRIORITY[level]
    return 7


class HumanFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``; under the journal ``<N><LEVEL> ...``
    without the time. ``journal`` forces the choice (default: detect on stderr)."""

    def __init__(self, *, journal: bool | None = None) -> None:
        self.journal = under_journal() if journal is None else journal
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt if self.journal else "%(asctime)s " + fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        if self.journal:
            text = f"<{_priority(record.levelno)}>" + text
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601; left out under the journal),
    ``level``, ``logger``, ``message``, ``exc_info`` when there is one, and the
    record's ``extra`` fields. Secrets are masked. ``journal`` forces the choice."""

    def __init__(self, *, journal: bool | None = None) -> None:
        super().__init__()
        self.journal = under_journal() if journal is None else journal

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {}
        if not self.journal:
            data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        data["level"] = record.levelname
        data["logger"] = record.name
        data["message"] = redact(record.getMessage())
        if record.exc_info:
            data["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            data["stack_info"] = redact(self.formatStack(record.stack_info))
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = _redact_value(key, value)
        text = json.dumps(data, default=str, ensure_ascii=False)
        if self.journal:
            text = f"<{_priority(record.levelno)}>" + text
        return text


def configure(
    level: str | int = "INFO",
    *,
    json_lines: bool | None = None,
    stream: TextIO | None = None,
    logger: str | None = None,
) -> logging.Handler:
    """Send log records of ``logger`` (default: the root logger) to ``stream``
    (default stderr), as JSON lines when ``json_lines`` is true, else readable
    lines. Replaces the handlers that logger had; returns the new handler."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    out = sys.stderr if stream is None else stream
    journal = under_journal(out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        JsonFormatter(journal=journal) if json_lines else HumanFormatter(journal=journal)
    )
    target = logging.getLogger(logger)
    target.handlers[:] = [handler]
    target.setLevel(numeric)
    return handler
