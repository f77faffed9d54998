"""Run amqtt (a pure-Python MQTT broker from PyPI) as a process: the demo's broker when
mosquitto is not installed. ``python -m fieldmq.demo.amqtt_broker --port 18830``.

amqtt 0.12 limits, and what the demo does about them:

* MQTT 3.1.1 only: the demo's clients use ``protocol=4`` and the fieldmq envelope so
  message ids still travel with each message;
* no offline queueing for anonymous sessions: anonymous access is refused and every
  client logs in with a user name (any name; no password check), so persistent
  sessions keep their messages while a subscriber is away;
* ``$share`` subscriptions are granted but deliver nothing: the demo runs one ingest
  consumer instead of a shared group;
* QoS 0/1 messages are delivered at QoS 2: harmless for at-least-once consumers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

__all__ = ["main"]


async def _serve(port: int) -> None:
    from amqtt.broker import Broker  # type: ignore[import-untyped,import-not-found,unused-ignore]

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False},
        },
    }
    broker = Broker(config)
    await broker.start()
    print(f"amqtt listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.run(_serve(args.port))
    except ImportError:
        print("amqtt is not installed: pip install 'fieldmq[demo]'", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
