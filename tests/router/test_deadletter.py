"""The SQLite dead-letter store and the ``fieldmq dlq`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fieldmq.router
from fieldmq.cli import main
from fieldmq.router import DeadLetterError, DeadLetterStore


def _put(store: DeadLetterStore, topic: str, route: str = "a/{x}") -> int:
    return store.put(topic=topic, payload=b"\x00\xffdata", qos=1, retain=False,
                     message_id="m-1", route=route, params={"x": "1"}, attempts=4,
                     error="ValueError: bad", worker="w-s0")


def test_store_survives_reopen_and_filters(tmp_path: Path) -> None:
    """Dead letters are durable, byte-exact, listed oldest first and filtered by route."""
    path = tmp_path / "sub" / "dlq.db"
    with DeadLetterStore(path) as s:
        _put(s, "a/1")
        _put(s, "b/1", route="b/{x}")
    with DeadLetterStore(path) as s:
        letters = s.list()
        assert [d.topic for d in letters] == ["a/1", "b/1"]
        assert letters[0].payload == b"\x00\xffdata" and letters[0].params == {"x": "1"}
        assert [d.topic for d in s.list(route="b/{x}")] == ["b/1"]
        assert s.delete([letters[0].id]) == 1 and s.count() == 1
        assert s.purge() == 1 and s.count() == 0
    with pytest.raises(RuntimeError, match="closed"):
        s.list()


def test_unopenable_store_is_a_dead_letter_error(tmp_path: Path) -> None:
    """An unusable path raises DeadLetterError naming it."""
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(DeadLetterError, match=r"dir\.db"):
        DeadLetterStore(tmp_path / "dir.db")


def test_dlq_cli_list_and_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fieldmq dlq list prints JSON lines; purge empties the store; a missing file is status 2."""
    path = tmp_path / "dlq.db"
    with DeadLetterStore(path) as s:
        _put(s, "a/1")
    assert main(["dlq", "list", "--dead-letters", str(path)]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["topic"] == "a/1" and row["attempts"] == 4 and row["route"] == "a/{x}"
    assert main(["dlq", "purge", "--dead-letters", str(path)]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert main(["dlq", "list", "--dead-letters", str(tmp_path / "none.db")]) == 2


def test_public_names_sorted() -> None:
    """fieldmq.router re-exports its public names in a sorted __all__."""
    assert fieldmq.router.__all__ == sorted(fieldmq.router.__all__)
    assert all(hasattr(fieldmq.router, n) for n in fieldmq.router.__all__)
