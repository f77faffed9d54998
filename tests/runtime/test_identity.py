"""Application names, client ids, and process identity from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fieldmq.runtime.identity import client_id_for, sanitize_host, validate_app, validate_worker
from fieldmq.runtime.procinfo import (
    cmdline_of,
    is_same_process,
    parse_stat_start,
    start_ticks_of,
)


@pytest.mark.parametrize("name", ["meter", "bnp-mqtt", "django5", "a.b_c", "9lives"])
def test_valid_app_names(name: str) -> None:
    """Names of letters, digits, '-', '_' and '.' are accepted."""
    assert validate_app(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 65, "é", "../x"])
def test_invalid_app_names(name: str) -> None:
    """Names unsafe in files, units or topics are rejected."""
    with pytest.raises(ValueError, match="invalid app name"):
        validate_app(name)


def test_app_must_be_str() -> None:
    """A non-string app name is a TypeError."""
    with pytest.raises(TypeError):
        validate_app(3)


def test_workers() -> None:
    """Workers may be ints or names; None means no worker."""
    assert validate_worker(None) is None
    assert validate_worker(3) == "3"
    with pytest.raises(ValueError):
        validate_worker("a/b")


def test_client_ids_unique_per_app_host_worker() -> None:
    """Client ids combine app, sanitized host and worker."""
    assert client_id_for("youtility4", "web-1.example.com") == "youtility4-web-1"
    assert client_id_for("bnp", "web-1") != client_id_for("youtility4", "web-1")
    assert client_id_for("bnp", "web 1+#") == "bnp-web-1"
    assert client_id_for("bnp", "h", 2) == "bnp-h-2"
    assert client_id_for("bnp").startswith("bnp-")


def test_sanitize_host_edge_cases() -> None:
    """Empty or symbol-only host names fall back to 'localhost'."""
    assert sanitize_host("") == "localhost"
    assert sanitize_host("+++") == "localhost"


def test_stat_parsing_handles_parentheses_in_names() -> None:
    """The start time is read after the last ')', whatever the command name."""
    fields = " ".join(str(i) for i in range(3, 30))
    assert parse_stat_start(f"42 (we) ird (name)) {fields}") == 22
    assert parse_stat_start("garbage") is None
    assert parse_stat_start("1 (x) S 1") is None


def test_this_process_is_identified() -> None:
    """Our own PID with our own start time is the same process; another start is not."""
    pid = os.getpid()
    ticks = start_ticks_of(pid)
    assert ticks is not None
    assert is_same_process(pid, ticks)
    assert is_same_process(pid, None)
    assert not is_same_process(pid, ticks + 1)  # a reused PID
    assert not is_same_process(0, None)
    assert "python" in " ".join(cmdline_of(pid)).lower()


def test_fake_proc_root(tmp_path: Path) -> None:
    """The /proc root is a seam: a missing process reads as not running."""
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "cmdline").write_bytes(b"python\0-m\0meter\0")
    fields = " ".join(["S"] + ["0"] * 18 + ["12345"] + ["0"] * 5)
    (tmp_path / "77" / "stat").write_text(f"77 (python) {fields}")
    assert cmdline_of(77, proc_root=tmp_path) == ("python", "-m", "meter")
    assert start_ticks_of(77, proc_root=tmp_path) == 12345
    assert is_same_process(77, 12345, proc_root=tmp_path)
    assert not is_same_process(78, None, proc_root=tmp_path)
    assert cmdline_of(78, proc_root=tmp_path) == ()
