"""The single-instance lock, including the seed-01 scenario with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fieldmq.errors import FieldmqError
from fieldmq.runtime.lock import AlreadyRunning, InstanceLock, LockHolder, lock_path, read_holder

from .conftest import Procs


def _locked_pid(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("LOCKED "), f"expected LOCKED, got {line!r}: {proc.stderr!r}"
    return int(line.split()[1])


def test_seed01_three_apps_one_started_twice_one_killed(tmp_path: Path, procs: Procs) -> None:
    """Seed 01: three apps share one state root; a duplicate is refused naming its own
    app's holder, and an app killed with SIGKILL restarts at once."""
    shared = str(tmp_path)  # like /tmp in the seed: everyone's lock files in one place
    youtility4 = procs.start("lock_app.py", "youtility4", shared)
    django5 = procs.start("lock_app.py", "django5", shared)
    bnp = procs.start("lock_app.py", "bnp", shared)
    pids = {name: _locked_pid(p) for name, p in
            (("youtility4", youtility4), ("django5", django5), ("bnp", bnp))}
    assert len(set(pids.values())) == 3

    second = procs.start("lock_app.py", "youtility4", shared)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 75
    assert "youtility4 is already running" in err
    assert f"PID {pids['youtility4']} " in err
    assert "lock_app.py youtility4" in err  # the holder's command line
    assert f"PID {pids['bnp']} " not in err

    os.kill(pids["bnp"], signal.SIGKILL)
    bnp.wait(timeout=10)
    stale = read_holder(lock_path(shared, "bnp"))
    assert stale is not None and stale.pid == pids["bnp"]  # the dead PID is still written
    bnp2 = procs.start("lock_app.py", "bnp", shared)
    assert _locked_pid(bnp2) == bnp2.pid

    for p in (youtility4, django5):
        assert p.poll() is None


def test_same_directory_never_collides_between_apps(tmp_path: Path) -> None:
    """Two apps given the very same state directory lock different files."""
    with InstanceLock(app="youtility4", state_dir=tmp_path) as a, InstanceLock(
        app="bnp", state_dir=tmp_path
    ) as b:
        assert a.path != b.path
        assert a.held and b.held


def test_workers_of_one_app_lock_separately(tmp_path: Path) -> None:
    """Workers 1 and 2 of an app run side by side; a second worker 1 is refused."""
    with (
        InstanceLock(app="meter", state_dir=tmp_path, worker=1),
        InstanceLock(app="meter", state_dir=tmp_path, worker=2),
        pytest.raises(AlreadyRunning, match="meter worker 1 is already running"),
    ):
        InstanceLock(app="meter", state_dir=tmp_path, worker=1).acquire()


def test_refusal_in_same_process_names_holder(tmp_path: Path) -> None:
    """A second lock on the same app raises AlreadyRunning with the holder's record."""
    with (
        InstanceLock(app="meter", state_dir=tmp_path, extra={"client_id": "meter-h"}),
        pytest.raises(AlreadyRunning) as info,
    ):
        InstanceLock(app="meter", state_dir=tmp_path).acquire()
    assert info.value.holder is not None
    assert info.value.holder.pid == os.getpid()
    assert info.value.holder.extra == {"client_id": "meter-h"}
    assert isinstance(info.value, FieldmqError)


def test_live_unrelated_pid_in_file_does_not_block(tmp_path: Path) -> None:
    """A lock file naming a live process that does not hold the lock is ignored."""
    path = lock_path(tmp_path, "meter")
    path.write_text(LockHolder(pid=1, app="meter").to_json())
    with InstanceLock(app="meter", state_dir=tmp_path) as lock:
        assert lock.holder is not None and lock.holder.pid == os.getpid()
        assert read_holder(path) == lock.holder


def test_release_clears_the_record_and_allows_relock(tmp_path: Path) -> None:
    """After release the file stays, empty, and the lock can be taken again."""
    lock = InstanceLock(app="meter", state_dir=tmp_path).acquire()
    lock.release()
    lock.release()
    assert lock.path.exists() and lock.path.read_text() == ""
    assert read_holder(lock.path) is None
    with InstanceLock(app="meter", state_dir=tmp_path):
        pass


def test_acquire_twice_on_same_object_is_misuse(tmp_path: Path) -> None:
    """Acquiring an already held InstanceLock raises RuntimeError."""
    with InstanceLock(app="meter", state_dir=tmp_path) as lock, pytest.raises(RuntimeError):
        lock.acquire()


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A state directory that cannot be created raises FieldmqError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FieldmqError, match="choose a writable --state-dir"):
        InstanceLock(app="meter", state_dir=blocker / "sub").acquire()


def test_invalid_app_name_rejected(tmp_path: Path) -> None:
    """App names that are unsafe in file names are rejected with ValueError."""
    with pytest.raises(ValueError, match="invalid app name"):
        InstanceLock(app="../etc", state_dir=tmp_path)


def test_lock_not_inherited_by_exec_children(tmp_path: Path) -> None:
    """A child spawned without closing descriptors does not keep the lock alive."""
    lock = InstanceLock(app="meter", state_dir=tmp_path).acquire()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=False,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"up\n"  # exec is complete: CLOEXEC fds closed
        lock.release()
        with InstanceLock(app="meter", state_dir=tmp_path):
            assert child.poll() is None
    finally:
        child.communicate(timeout=10)


def test_holder_record_round_trip() -> None:
    """LockHolder survives to_json/from_json; garbage parses as None."""
    h = LockHolder(pid=5, app="a", worker="2", host="h", cmdline=("x", "y"), started=1.5,
                   start_ticks=7)
    assert LockHolder.from_json(h.to_json()) == h
    assert LockHolder.from_json("not json") is None
    assert LockHolder.from_json('{"app": "a"}') is None
    assert "PID 5 (x y, started" in h.describe()
