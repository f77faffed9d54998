"""The client side of the fsync helper process (``fsyncd.py``).

The journal is made power-safe by ``fdatasync``. Called from a thread of the client,
each sync waits for the GIL before it starts and again before its end is known, and
while other threads publish flat out each wait can last the interpreter's switch
interval (5 ms): the power-safety lag drifted past its 10 ms bound. The helper is a
small separate interpreter holding a copy of the journal's file descriptor; it syncs
when the group-commit policy says and publishes the end of each sync in shared
memory, where the client reads it without waiting for any thread.

How a write becomes durable without a lock shared across processes: the helper
stores ``STARTED = n`` *before* its n-th ``fdatasync``. A writer that reads
``STARTED = g`` *after* its ``write()`` returned knows that sync ``g + 1`` begins
after the write, so the write is on disk once ``DONE >= g + 1``. The writer tells
the helper (a "kick") the first time it sees a given ``g``, with the time of the
write, so the helper knows a sync is wanted and how old the oldest unsynced write
is. One kick per sync cycle at most: a ``send()`` every few milliseconds, not one
per message.

Ordering across the two processes: "write, then read ``STARTED``" in the client
against "store ``STARTED``, then ``fdatasync``" in the helper is a store-then-load
pattern that neither x86 nor ARM orders without a full barrier, which Python cannot
issue. It holds because ``write()`` and the writeback that ``fdatasync`` starts take
the same kernel locks on the page (the page lock, and the page cache's lock when a page
first becomes dirty): if the sync missed the write, the write's lock section came after
the sync's, and the client's read that follows it sees the helper's earlier store.
Counters are aligned u32 values, read and written whole on every platform.

Linux only (``memfd_create``, ``SOCK_SEQPACKET`` and descriptor passing); elsewhere,
or when the helper cannot start or dies, the store's own fsync thread does the work
(``fsync_helper=False`` asks for that).
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import fsyncd

__all__ = ["SyncHelper", "behind", "lag_summary"]

log = logging.getLogger("fieldmq.store")

_SCRIPT = Path(fsyncd.__file__)
_FRAME = fsyncd.FRAME
MASK = fsyncd.MASK
behind = fsyncd._behind


def supported() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "memfd_create")
        and hasattr(socket, "SOCK_SEQPACKET")
        and hasattr(socket.socket, "sendmsg")
        # a frozen or embedded application's executable is the application itself
        and not getattr(sys, "frozen", False)
        and os.path.basename(sys.executable or "").lower().startswith(("python", "pypy"))
    )


class SyncHelper:
    """A running helper process; see the module docstring."""

    def __init__(
        self, proc: subprocess.Popen[bytes], sock: socket.socket, shm: mmap.mmap
    ) -> None:
        self._proc = proc
        self._sock = sock
        self._shm = shm
        self.words = memoryview(shm).cast("I")
        self.pid = proc.pid
        self.dead = False

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll()

    @classmethod
    def start(
        cls, journal_fd: int, segment: int, interval: float, timeout: float = 10.0
    ) -> SyncHelper | None:
        """Start a helper for ``journal_fd`` and wait until it is ready; None (and a
        warning in the log) when it cannot run here."""
        if not supported():
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        memfd = -1
        shm = None
        proc = None
        try:
            memfd = os.memfd_create("fieldmq-fsync", os.MFD_CLOEXEC)
            os.ftruncate(memfd, fsyncd.SHM_BYTES)
            shm = mmap.mmap(memfd, fsyncd.SHM_BYTES)
            argv = [sys.executable, "-I", "-S", str(_SCRIPT), str(theirs.fileno()),
                    str(memfd), str(journal_fd), str(segment), repr(interval)]
            proc = subprocess.Popen(
                argv, pass_fds=(theirs.fileno(), memfd, journal_fd),
                # no inherited pipes: a caller reading our output must not wait for it
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, close_fds=True,
            )
            theirs.close()
            if not select.select([ours], [], [], timeout)[0] or ours.recv(8) != b"R":
                raise OSError(f"it did not report ready within {timeout:g} s")
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("fsync helper process unavailable (%s); syncing from a thread", exc)
            if proc is not None:
                proc.kill()
                proc.wait()
            if shm is not None:
                shm.close()
            ours.close()
            theirs.close()
            return None
        finally:
            if memfd >= 0:
                os.close(memfd)
        return cls(proc, ours, shm)

    # -- read by writers and waiters, no lock ----------------------------------------
    def started(self) -> int:
        return self.words[fsyncd.STARTED]

    def done(self) -> int:
        return self.words[fsyncd.DONE]

    def lags_us(self) -> list[int]:
        """The lags of the most recent syncs (at most ``fsyncd.RING``), microseconds."""
        n = min(self.words[fsyncd.SYNCS], fsyncd.RING)
        base = fsyncd.HEADER_WORDS
        return list(self.words[base:base + n])

    # -- requests ----------------------------------------------------------------------
    def kick(self, gen: int, stamp_ns: int, urgent: bool = False) -> bool:
        """Ask for a sync covering a write that saw ``STARTED == gen`` at ``stamp_ns``.
        False if the frame could not be sent now (full socket) or the helper is gone."""
        try:
            self._sock.send(_FRAME.pack(b"U" if urgent else b"K", gen, stamp_ns),
                            socket.MSG_DONTWAIT)
            return True
        except BlockingIOError:
            return False
        except OSError:
            self.dead = True
            return False

    def cancel(self, need: int) -> bool:
        """Sync ``need`` is not needed (every write it would cover is acknowledged):
        skip it if it has not begun. False if the frame could not be sent now."""
        try:
            self._sock.send(_FRAME.pack(b"C", need, 0), socket.MSG_DONTWAIT)
            return True
        except OSError:
            return False

    def switch(self, journal_fd: int, segment: int, timeout: float = 5.0) -> bool:
        """Hand the helper the new journal segment and wait until it uses it (syncs
        begun from then on cover writes to the new segment). False on failure."""
        try:
            self._sock.sendmsg(
                [_FRAME.pack(b"F", segment, 0)],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, journal_fd.to_bytes(4, sys.byteorder))],
            )
        except OSError as exc:
            log.warning("fsync helper: handing over the new journal failed: %s", exc)
            self.dead = True
            return False
        deadline = time.monotonic() + timeout
        while self.words[fsyncd.SEGMENT] != segment:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                log.warning("fsync helper did not take the new journal segment; stopping it")
                self.dead = True
                self._proc.kill()
                return False
            time.sleep(0.0005)
        return True

    def wait_answer(self, timeout: float | None) -> bool:
        """Block until the helper answers (a sync asked for urgently ended) or the
        timeout passes; False once the helper is gone (socket closed)."""
        try:
            if not select.select([self._sock], [], [], timeout)[0]:
                return True
            data = self._sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.dead = True
            return False
        return True

    # -- lifecycle ---------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        """Ask the helper to exit and reap it (killed if it does not go in time).
        Safe to call again."""
        try:
            self._sock.send(_FRAME.pack(b"Q", 0, 0), socket.MSG_DONTWAIT)
        except OSError:
            pass
        try:  # end of file reaches it even when the frame did not fit
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("fsync helper %d did not exit; killing it", self.pid)
            self._proc.kill()
            self._proc.wait()
        self.dead = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def release(self) -> None:
        """Close our socket (after ``stop()``, once no other thread can be sending on
        it: the store does this when it closes). The shared memory stays mapped until
        this object is gone: other threads may still read the counters, which keep
        their last values."""
        self._sock.close()

    def abandon(self) -> None:
        """In a forked child: close the child's copy, leave the parent's helper be."""
        self.dead = True
        self._sock.close()

    def __repr__(self) -> str:
        return f"SyncHelper(pid={self.pid}, dead={self.dead})"


def lag_summary(lags_us: list[int]) -> dict[str, float] | None:
    """p50/p99/max (milliseconds) and the number of syncs behind them."""
    if not lags_us:
        return None
    s = sorted(lags_us)
    n = len(s)
    return {
        "p50": s[n // 2] / 1000,
        "p99": s[min(n - 1, (n * 99) // 100)] / 1000,
        "max": s[-1] / 1000,
        "syncs": float(n),
    }
