"""The fsync helper process: pure protocol arithmetic, then the real process under a
real SQLite store (rotation, death of the helper, death of the client, Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fieldmq.store.fsyncd import start_delay_ns
from fieldmq.store.queue import DurableQueue
from fieldmq.store.sqlite import SQLiteBackend
from fieldmq.store.synchelper import behind, lag_summary, supported

from .conftest import put, wait_for

pytestmark = pytest.mark.skipif(not supported(), reason="the fsync helper needs Linux")


# -- pure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (0, 1, True), (1, 0, False), (5, 5, False), (0xFFFFFFFF, 0, True),
        (0, 0xFFFFFFFF, False), (0xFFFFFFF0, 3, True), (3, 0xFFFFFFF0, False),
    ],
)
def test_behind_is_serial_number_order(a: int, b: int, expected: bool) -> None:
    """Sync counters are u32 and wrap: 0xFFFFFFFF comes before 0."""
    assert behind(a, b) is expected


def test_lag_summary() -> None:
    """Percentiles in milliseconds from microsecond samples; None without samples."""
    assert lag_summary([]) is None
    s = lag_summary(list(range(1000, 101_000, 1000)))  # 1..100 ms
    assert s == {"p50": 51.0, "p99": 100.0, "max": 100.0, "syncs": 100.0}


@pytest.mark.parametrize(
    ("interval", "cost", "expected_ms"),
    [(0.005, 0.0, 4.0), (0.005, 0.001, 4.0), (0.005, 0.004, 2.0), (0.005, 0.006, 0.0),
     (0.1, 0.002, 80.0)],
)
def test_sync_start_policy(interval: float, cost: float, expected_ms: float) -> None:
    """A sync starts at 0.8 interval after the oldest write it covers, earlier when
    recent syncs were slow (aiming at the end within twice the interval), never before
    the write."""
    assert start_delay_ns(interval, cost) == pytest.approx(expected_ms * 1e6, abs=1)


# -- the process -----------------------------------------------------------------------


def _open(path: Path, **kw: object) -> DurableQueue:
    return DurableQueue(SQLiteBackend(path), **kw).open()  # type: ignore[arg-type]


def _pending_after_reopen(path: Path) -> int:
    """Messages a fresh open of the store recovers (then closed again)."""
    q = _open(path)
    try:
        return q.pending_count()
    finally:
        q.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _open_files(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return out


def test_helper_makes_messages_durable_and_reports_lag(tmp_path: Path) -> None:
    """By default a helper process syncs: waits return, the lag is measured per sync,
    and closing the store ends the process."""
    q = _open(tmp_path / "s.db")
    try:
        pid = q.stats()["fsync_helper"]
        assert isinstance(pid, int) and _alive(pid)
        handles = [put(q, b"%d" % i) for i in range(2000)]
        assert handles[-1].wait_durable(10)
        assert all(h.durable for h in handles)
        assert q.flush(10)
        s = q.stats()
        assert s["durable_lag"] == 0
        lag = s["fsync_lag_ms"]
        assert lag is not None and lag["syncs"] >= 1
        assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    finally:
        q.close()
    assert not _alive(pid)


def test_passive_durability_without_waiters(tmp_path: Path) -> None:
    """Nobody waits: the group commit still happens on its own, within the interval."""
    q = _open(tmp_path / "s.db", fsync_interval=0.002)
    try:
        h = put(q, b"x")
        wait_for(lambda: h.durable, 10, "a passive sync")
        h2 = put(q, b"y")  # a second cycle, after the helper went idle
        wait_for(lambda: h2.durable, 10, "a second passive sync")
    finally:
        q.close()


def test_sync_durability_with_helper(tmp_path: Path) -> None:
    """durability='sync': every put returns durable, answered by the helper."""
    q = _open(tmp_path / "s.db", durability="sync")
    try:
        assert isinstance(q.stats()["fsync_helper"], int)
        for i in range(50):
            assert put(q, b"%d" % i).durable
    finally:
        q.close()


def test_helper_follows_journal_rotation(tmp_path: Path) -> None:
    """After each rotation the helper holds the new segment open (and not the old one),
    so its syncs cover what is written there."""
    backend = SQLiteBackend(tmp_path / "s.db")
    q = DurableQueue(backend, rotate_bytes=64 * 1024).open()
    try:
        pid = q.stats()["fsync_helper"]

        def journal() -> str:
            return next((p for p in _open_files(pid) if ".journal-" in p), "")

        def current() -> str:  # the segment the store writes to now
            return f"{tmp_path / 's.db'}.journal-{backend.journal_fd()[1]}"

        seen = {journal()}
        for round_ in range(3):
            before = current()
            for i in range(1500):  # about 100 KB of journal: past rotate_bytes
                put(q, b"r%d-%d" % (round_, i) + b"." * 40)
            wait_for(lambda b=before: current() != b, 10, "a rotation")
            # once the writer stops rotating, the helper holds the current segment
            wait_for(lambda: journal() == current(), 10, "the helper on the new segment")
            seen.add(journal())
            h = put(q, b"after rotation %d" % round_)
            assert h.wait_durable(10)
        assert len(seen) >= 4, seen
        assert q.stats()["fsync_helper"] == pid
    finally:
        q.close()


def test_helper_killed_falls_back_to_thread_and_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL of the helper: the store syncs from its thread, waits still return, and
    every message is there after reopening."""
    q = _open(tmp_path / "s.db")
    pid = q.stats()["fsync_helper"]
    first = [put(q, b"a%d" % i) for i in range(500)]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: q.stats()["fsync_helper"] is None, 10, "the fallback to the thread")
    later = [put(q, b"b%d" % i) for i in range(500)]
    assert later[-1].wait_durable(10)
    assert all(h.durable for h in first + later)
    assert q.stats()["fsync_lag_ms"] is not None
    q.close()
    assert _pending_after_reopen(tmp_path / "s.db") == 1000


def test_helper_ignores_ctrl_c(tmp_path: Path) -> None:
    """SIGINT to the process group (Ctrl-C) is the client's to handle: the helper stays."""
    q = _open(tmp_path / "s.db")
    try:
        pid = q.stats()["fsync_helper"]
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        h = put(q, b"x")
        assert h.wait_durable(10)
        assert q.stats()["fsync_helper"] == pid and _alive(pid)
    finally:
        q.close()


def test_helper_exits_when_its_client_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed client leaves no helper behind."""
    body = textwrap.dedent("""
        import sys, time
        from fieldmq.store.queue import DurableQueue
        from fieldmq.store.sqlite import SQLiteBackend
        q = DurableQueue(SQLiteBackend(sys.argv[1])).open()
        print(q.stats()["fsync_helper"], flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", body, str(tmp_path / "s.db")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert _alive(pid)
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not _alive(pid), 10, "the orphaned helper to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_fsync_helper_false_uses_the_thread(tmp_path: Path) -> None:
    """fsync_helper=False: no process, the thread syncs and measures its lag."""
    q = _open(tmp_path / "s.db", fsync_helper=False)
    try:
        assert q.stats()["fsync_helper"] is None
        h = put(q, b"x")
        assert h.wait_durable(10)
        lag = q.stats()["fsync_lag_ms"]
        assert lag is not None and lag["syncs"] >= 1
    finally:
        q.close()



def test_helper_exits_with_its_code_when_fdatasync_fails(tmp_path: Path) -> None:
    """The helper's contract when a sync fails: it exits with EXIT_SYNC_FAILED (the
    client then rewrites the journal) and never reports the sync as done. Driven through
    the real protocol with a pipe as the "journal", where fdatasync fails (EINVAL)."""
    import mmap
    import socket
    import time

    from fieldmq.store import fsyncd

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    memfd = os.memfd_create("test-fsyncd")
    os.ftruncate(memfd, fsyncd.SHM_BYTES)
    shm = mmap.mmap(memfd, fsyncd.SHM_BYTES)
    words = memoryview(shm).cast("I")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", fsyncd.__file__, str(theirs.fileno()), str(memfd),
         str(w), "1", "0.005"],
        pass_fds=(theirs.fileno(), memfd, w))
    try:
        theirs.close()
        assert ours.recv(8) == b"R"
        ours.send(fsyncd.FRAME.pack(b"U", 0, time.monotonic_ns()))
        assert proc.wait(10) == fsyncd.EXIT_SYNC_FAILED
        assert words[fsyncd.STARTED] == 1 and words[fsyncd.DONE] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        words.release()
        shm.close()
        for fd in (memfd, r, w):
            os.close(fd)
        ours.close()


class _FailingOnce(SQLiteBackend):
    """A disk whose next fdatasync of the journal fails (EIO cannot be produced on the
    test machine's disk; this is the backend's public ``sync()`` seam)."""

    fail = False

    def sync(self) -> None:
        if self.fail:
            self.fail = False
            from fieldmq.errors import StoreError

            raise StoreError("syncing the journal: [Errno 5] Input/output error")
        super().sync()


def test_failed_fdatasync_is_not_papered_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Thread mode: after a failed fdatasync (Linux may have dropped those pages and
    reports the error once), no later sync may claim the messages: they become durable
    only once the journal was rewritten from memory, and nothing is lost."""
    backend = _FailingOnce(tmp_path / "s.db")
    q = DurableQueue(backend, fsync_helper=False).open()
    try:
        first = put(q, b"before")
        assert first.wait_durable(10)
        segment = backend.journal_fd()[1]
        backend.fail = True
        lost = put(q, b"while the disk failed")
        assert lost.wait_durable(10)  # after the rewrite into a new segment
        assert backend.journal_fd()[1] > segment
        assert any("Input/output error" in r.getMessage() for r in caplog.records)
    finally:
        q.close()
    assert _pending_after_reopen(tmp_path / "s.db") == 2


def _syncs(q: DurableQueue) -> int:
    lag = q.stats()["fsync_lag_ms"]
    return 0 if lag is None else int(lag["syncs"])


def test_sync_skipped_when_everything_is_acknowledged(tmp_path: Path) -> None:
    """A nearby broker acknowledges each message before its sync is due: the sync would
    make nothing power-safe, so the helper skips it (one page write per message spared
    on an SD card at low rates)."""
    q = _open(tmp_path / "s.db")
    try:
        for i in range(20):
            put(q, b"%d" % i)
            q.acked(q.take(10))
            wait_for(lambda: q.stats()["durable_lag"] == 0, 10, "the skip")
        assert _syncs(q) < 10, q.stats()["fsync_lag_ms"]
    finally:
        q.close()


def test_a_skip_never_covers_a_message_it_did_not_see(tmp_path: Path) -> None:
    """A message written after the cancel, or waiting while others were acknowledged,
    still gets a real fdatasync before it counts as durable."""
    q = _open(tmp_path / "s.db")
    try:
        put(q, b"a")
        q.acked(q.take(10))  # cancels the pending sync
        later = put(q, b"written after the cancel")
        assert later.wait_durable(10)
        assert _syncs(q) >= 1
        before = _syncs(q)
        put(q, b"c")
        waiting = put(q, b"queued, not sent")
        q.acked(q.take(1))  # "c" acknowledged, "waiting" still queued: no cancel
        assert waiting.wait_durable(10)
        assert _syncs(q) > before
    finally:
        q.close()
