"""A fieldmq service for the tests, configured by flags and FIELDMQ_* variables.

It prints ``READY <http url or ->`` once started, publishes ``APP_PUBLISH`` messages
to ``data/reading`` (values 0..n-1) right away, then loops calling ``beat()``
every 50 ms until told otherwise. The action ``wedge`` stops the beats (a stuck
main loop); the action ``exit`` makes main() return.
"""

from __future__ import annotations

import os
import sys
import threading

from fieldmq.runtime import Service


def main() -> int:
    svc = Service.from_args("meter", sys.argv[1:])
    wedged = threading.Event()
    leave = threading.Event()
    svc.on_action("wedge", lambda value, msg: wedged.set())
    svc.on_action("exit", lambda value, msg: leave.set())

    def body(s: Service) -> None:
        for i in range(int(os.environ.get("APP_PUBLISH", "0"))):
            s.publish("reading", {"seq": i})
        print(f"READY {s.http_url or '-'}", flush=True)
        while not s.wait(0.05) and not leave.is_set():
            if not wedged.is_set():
                s.beat()

    return svc.run(body)


if __name__ == "__main__":
    sys.exit(main())
