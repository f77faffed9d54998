"""Log formatting: JSON lines, journal detection, and secrets never written."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fieldmq.runtime.logs import HumanFormatter, JsonFormatter, configure, redact, under_journal


def _record(
    msg: str, *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord("fieldmq.test", level, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_formatter_one_object_per_line() -> None:
    """Each record is one JSON object with ts, level, logger, message and extras."""
    line = JsonFormatter(journal=False).format(_record("queued %d", 5, queue_depth=5))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "INFO" and data["logger"] == "fieldmq.test"
    assert data["message"] == "queued 5" and data["queue_depth"] == 5
    assert data["ts"].endswith("Z")


def test_json_formatter_includes_exception() -> None:
    """An exception is included as formatted text, still on one line."""
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter(journal=False).format(rec)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exc_info"]


def test_under_journal_no_timestamp_and_priority_prefix() -> None:
    """Under the journal the time is left out and the syslog priority leads the line."""
    human = HumanFormatter(journal=True).format(_record("hello", level=logging.ERROR))
    assert human == "<3>ERROR fieldmq.test: hello"
    js = JsonFormatter(journal=True).format(_record("hello", level=logging.WARNING))
    assert js.startswith("<4>{")
    assert "ts" not in json.loads(js[3:])
    plain = HumanFormatter(journal=False).format(_record("hello"))
    assert plain[:4].isdigit() and plain.endswith("INFO fieldmq.test: hello")


def test_journal_detected_by_device_and_inode(tmp_path: Path) -> None:
    """JOURNAL_STREAM must name the very stream; another file does not count."""
    target = tmp_path / "journal"
    with target.open("w") as fh:
        st = os.fstat(fh.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert under_journal(fh, env)
        assert not under_journal(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not under_journal(fh, {})
        assert not under_journal(io.StringIO(), env)


def test_journal_detection_in_a_child_process(tmp_path: Path) -> None:
    """A process whose stderr is the stream named by JOURNAL_STREAM logs without times."""
    out = tmp_path / "stderr"
    code = (
        "import logging, os, sys\n"
        "st = os.fstat(2)\n"
        "os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'\n"
        "from fieldmq.runtime.logs import configure\n"
        "configure('INFO')\n"
        "logging.getLogger('fieldmq.x').warning('hi')\n"
    )
    with out.open("w") as fh:
        subprocess.run([sys.executable, "-c", code], stderr=fh, check=True, timeout=60)
    assert out.read_text() == "<4>WARNING fieldmq.x: hi\n"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to mqtts://meter:hunter2@broker:8883", "hunter2"),
        ("password=hunter2 user=meter", "hunter2"),
        ('{"password": "hunter2", "user": "meter"}', "hunter2"),
        ("FIELDMQ_PASSWORD=hunter2", "hunter2"),
        ("api_key: abc123def", "abc123def"),
        ("token='t0k3n'", "t0k3n"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\n-----END RSA PRIVATE KEY-----", "MIIEpAIB"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIB truncated", "MIIEvQIB"),
    ],
)
def test_redact_masks_secrets(text: str, secret: str) -> None:
    """Passwords, tokens and keys are masked wherever they appear."""
    assert secret not in redact(text)


def test_redact_leaves_ordinary_text() -> None:
    """Text without secrets is unchanged."""
    text = "connected to mqtt://broker:1883 as meter-pi-07, queue=5"
    assert redact(text) == text


def test_formatters_never_write_secrets() -> None:
    """Secrets in the message, in args and in extra fields are masked in both formats."""
    rec = _record("login %s", "mqtt://u:hunter2@h", password="hunter2", broker="x")
    assert "hunter2" not in JsonFormatter(journal=False).format(rec)
    assert json.loads(JsonFormatter(journal=False).format(rec))["password"] == "***"
    assert "hunter2" not in HumanFormatter(journal=False).format(rec)


def test_configure_replaces_handlers() -> None:
    """configure() installs one handler on the named logger with the chosen format."""
    stream = io.StringIO()
    name = "fieldmq-test-configure"
    configure("DEBUG", json_lines=True, stream=stream, logger=name)
    configure("DEBUG", json_lines=True, stream=stream, logger=name)
    log = logging.getLogger(name)
    log.propagate = False
    log.debug("x")
    assert len(log.handlers) == 1
    assert json.loads(stream.getvalue())["message"] == "x"
    with pytest.raises(ValueError, match="unknown log level"):
        configure("LOUD", logger=name)
    log.handlers.clear()


def test_cli_log_json_uses_the_runtime_formatter() -> None:
    """`fieldmq --log-json` formats with JsonFormatter."""
    code = (
        "import logging; from fieldmq.cli import _configure_logging\n"
        "_configure_logging('INFO', True)\n"
        "logging.getLogger('fieldmq.t').info('hello')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={k: v for k, v in os.environ.items()
                                          if k != "JOURNAL_STREAM"})
    assert json.loads(res.stderr)["message"] == "hello"
