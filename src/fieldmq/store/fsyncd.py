"""The fsync helper process: run as a script (``python -I -S fsyncd.py ...``) by
:class:`fieldmq.store.synchelper.SyncHelper`, never imported by the client.

Why a process: in the client, a thread that calls ``fdatasync`` must win the GIL
twice per cycle (to start the call and to record that it ended), and while other
threads publish that costs up to the interpreter's switch interval each time. Here
nothing competes, so the journal is synced when the policy says and the end of each
sync is published at once. Standard library only, and no import of ``fieldmq``: it
starts with ``-S`` (no site-packages) to stay small.

Protocol (see ``synchelper.py`` for the client side):

* ``argv``: socket fd, shared-memory fd, journal fd, segment number, fsync interval (s).
* Shared memory, little-endian u32 words: ``STARTED`` (number of the last sync begun;
  stored *before* its ``fdatasync`` call), ``DONE`` (number of the last sync ended),
  ``SEGMENT`` (the segment whose fd is in use), ``SYNCS`` (syncs since start, which
  also indexes the ring), then a ring of ``RING`` per-sync lags in microseconds: from
  the oldest write the sync covered (stamped by the client right after that write)
  to the end of the ``fdatasync``.
* Frames on a ``SOCK_SEQPACKET`` socket, client to helper: ``K`` kick (u32 g: the write
  needs sync g + 1, g being the ``STARTED`` value the writer saw after its write, or
  higher after a cancel; u64 monotonic ns of the write),
  ``U`` the same, urgent (sync now, and answer ``D`` when a sync begun after it ended),
  ``C`` cancel (u32 a sync number: if it has not begun, skip it: every write it would
  cover is acknowledged; counted in ``SKIPPED``), ``F`` a new journal segment (u32 its
  number, the fd attached; answered through ``SEGMENT``), ``Q`` quit.
  Helper to client: ``R`` ready, ``D`` a sync ended.
  End of file on the socket means the client is gone: the helper exits. Exit code 3:
  ``fdatasync`` failed (the client then rewrites the journal from memory into a new
  segment: Linux may have dropped the pages that failed); 4: a segment without its fd.
"""

from __future__ import annotations

import array
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time

STARTED, DONE, SEGMENT, SYNCS, SKIPPED = 0, 1, 2, 3, 4
EXIT_SYNC_FAILED = 3  # fdatasync failed: the journal may have lost pages (see writer.py)
EXIT_NO_FD = 4  # a new segment came without its descriptor
HEADER_WORDS = 8
RING = 1024
SHM_BYTES = 4 * (HEADER_WORDS + RING)
FRAME = struct.Struct("<cIQ")
MASK = 0xFFFFFFFF


def _behind(a: int, b: int) -> bool:
    """Is u32 counter ``a`` before ``b`` (serial-number arithmetic: counters wrap)?"""
    return a != b and ((b - a) & MASK) < 0x80000000


def main(argv: list[str]) -> int:
    sock_fd, shm_fd, jfd, segment = (int(x) for x in argv[:4])
    interval = float(argv[4])
    # The client decides when to stop; a Ctrl-C or a service manager's SIGTERM to the
    # whole group must not end the helper before the client closed the journal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    jfd = _own(jfd)
    sock = socket.socket(fileno=sock_fd)
    shm = mmap.mmap(shm_fd, SHM_BYTES)
    os.close(shm_fd)
    words = memoryview(shm).cast("I")
    parent = os.getppid()
    started = words[STARTED]
    syncs = 0
    cost = 0.0  # recent fdatasync duration in seconds, decaying
    oldest = 0  # monotonic ns of the oldest write not covered by a begun sync; 0: none
    urgent = reply = False
    last_end = 0
    words[SEGMENT] = segment
    sock.send(b"R")
    monotonic_ns = time.monotonic_ns
    while True:
        due = oldest + start_delay_ns(interval, cost)
        # 1. wait for a kick, or until the pending sync is due
        if oldest == 0:
            timeout: float | None = 1.0
        elif urgent:
            timeout = 0.0
        else:
            timeout = max(0.0, (due - monotonic_ns()) / 1e9)
        ready = select.select([sock], [], [], timeout)[0]
        # 2. read every frame waiting (a sync is never running here: all begun ended)
        flags = 0
        while ready:
            try:
                data, anc, _, _ = sock.recvmsg(FRAME.size, socket.CMSG_SPACE(4), flags)
            except BlockingIOError:
                break
            flags = socket.MSG_DONTWAIT
            fds = array.array("i")
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(raw[: len(raw) - len(raw) % 4])
            if not data:
                return 0  # the client is gone
            op, gen, stamp = FRAME.unpack(data)
            if op in (b"K", b"U"):
                if _behind(gen, started):
                    # a sync begun after that write has ended: it covered the write
                    if syncs and stamp < last_end:
                        _record(words, syncs, last_end - stamp, replace=False)
                    if op == b"U":
                        _send(sock, b"D")
                    continue
                if oldest == 0 or stamp < oldest:
                    oldest = stamp
                if op == b"U":
                    urgent = reply = True
            elif op == b"C":
                if gen == (started + 1) & MASK:
                    # not begun, and every write it would cover is acknowledged: skip it
                    # (writes after the cancel need the next one; they come after it)
                    started = gen
                    words[STARTED] = started
                    words[DONE] = started
                    oldest, urgent = 0, False
                    words[SKIPPED] = (words[SKIPPED] + 1) & MASK
                    if reply:
                        reply = False
                        _send(sock, b"D")
            elif op == b"F":
                if not fds:
                    return EXIT_NO_FD  # never sync the old segment as if it were the new
                os.close(jfd)
                jfd = _own(fds[0])
                for extra in fds[1:]:
                    os.close(extra)
                words[SEGMENT] = gen
            elif op == b"Q":
                return 0
        # 3. sync when due
        due = oldest + start_delay_ns(interval, cost)
        if oldest and (urgent or monotonic_ns() >= due):
            started = (started + 1) & MASK
            words[STARTED] = started  # before the call: writes seen before it are covered
            covered, oldest, urgent = oldest, 0, False
            t0 = monotonic_ns()
            try:
                os.fdatasync(jfd)
            except OSError:
                return EXIT_SYNC_FAILED  # the client rewrites the journal, then syncs itself
            last_end = monotonic_ns()
            words[DONE] = started
            cost = max((last_end - t0) / 1e9, 0.8 * cost)
            _record(words, syncs, last_end - covered, replace=True)
            syncs += 1
            words[SYNCS] = syncs & MASK
            if reply:
                reply = False
                _send(sock, b"D")
        elif oldest == 0 and os.getppid() != parent:
            return 0  # orphaned (the client died while a forked child kept the socket)


def _own(fd: int) -> int:
    """A file description of our own for the journal behind ``fd`` (closed). Linux
    reports a failed writeback once per open file description: on the client's own,
    the error would reach whichever process synced first and the other would see a
    clean success. Keeps ``fd`` when /proc is not there."""
    try:
        mine = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return fd
    os.close(fd)
    return mine


def start_delay_ns(interval: float, cost: float) -> int:
    """When to start a sync after the oldest write it will cover: at 0.8 ``interval``
    (the policy aims at the sync *ending* within twice ``interval``: this leaves room for
    a slow ``fdatasync`` or a late wake-up on a busy CPU), earlier when syncs are slow.
    Later syncs would each cover more messages (fewer page writes on an SD card) but
    the 99th percentile of the lag would reach the bound: measured, docs/benchmarks.md."""
    return int(max(0.0, min(0.8 * interval, 2 * interval - 2 * cost)) * 1e9)


def _send(sock: socket.socket, frame: bytes) -> None:
    try:
        sock.send(frame, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass  # the client has answers waiting to be read: one more says nothing new
    except OSError:
        sys.exit(0)  # the client is gone


def _record(words: memoryview, syncs: int, lag_ns: int, *, replace: bool) -> None:
    """Store a sync's lag in the ring (``replace``: a new slot; else raise the last)."""
    us = min(max(lag_ns, 0) // 1000, MASK)
    if replace:
        words[HEADER_WORDS + syncs % RING] = us
    elif syncs:
        slot = HEADER_WORDS + (syncs - 1) % RING
        words[slot] = max(words[slot], us)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
