"""Records its environment, then waits for SIGTERM and records a clean stop.

Usage: python term_app.py OUT_FILE. Used to check generated supervisor configs
with a real supervisord.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading


def main() -> int:
    out = sys.argv[1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    env = {k: v for k, v in os.environ.items() if k.startswith(("FIELDMQ_", "PYTHON", "EXTRA"))}
    with open(out, "w") as fh:
        json.dump({"env": env, "cwd": os.getcwd()}, fh)
    print("started", flush=True)
    stop.wait()
    with open(out + ".stopped", "w") as fh:
        fh.write("SIGTERM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
