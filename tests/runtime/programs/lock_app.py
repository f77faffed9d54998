"""A process that holds an application's single-instance lock until stdin closes.

Usage: python lock_app.py APP STATE_DIR. Prints ``LOCKED <pid>`` once it holds the
lock; on refusal prints the AlreadyRunning message to stderr and exits 75.
"""

from __future__ import annotations

import sys

from fieldmq.runtime.lock import AlreadyRunning, InstanceLock


def main() -> int:
    app, state_dir = sys.argv[1], sys.argv[2]
    try:
        lock = InstanceLock(app=app, state_dir=state_dir).acquire()
    except AlreadyRunning as exc:
        print(f"fieldmq: {exc}", file=sys.stderr, flush=True)
        return 75
    print(f"LOCKED {lock.holder.pid if lock.holder else '?'}", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin (or kills us)
    lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
