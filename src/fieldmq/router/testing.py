"""Test your routes without a broker: :class:`StubBroker`, an in-memory broker with
MQTT matching, shared-subscription round-robin and the router's real dispatch path
(middleware, retries, time limits, dead letters).

::

    from fieldmq.router.testing import StubBroker

    def test_temperature_is_stored():
        broker = StubBroker(router, workers=3)
        broker.publish("sensors/dev-1/data", b'{"t": 21.5}')
        broker.join()                         # everything handled, retried or dead-lettered
        assert db.rows == [("dev-1", 21.5)]
        assert broker.dead_letters == []

Retry delays are not slept: ``StubBroker`` records them in :attr:`StubBroker.waits`.
Like the real workers, a message goes to the most specific route (precedence), a
shared route's messages are spread round-robin over its ``workers`` (each stub worker
has an index, see :attr:`StubBroker.handled_by`), and a non-shared route is served by
worker 0.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from ..topics import validate_topic
from .dispatch import Dispatcher, Result
from .message import RoutedMessage
from .plan import plan
from .routes import Route, Router

__all__ = ["StubBroker", "StubDeadLetter"]


@dataclass(frozen=True, slots=True)
class StubDeadLetter:
    topic: str
    payload: bytes
    route: str
    attempts: int
    error: BaseException


class StubBroker:
    """In-memory broker + workers for ``router``. ``workers`` as ``fieldmq run --workers``."""

    def __init__(self, router: Router, *, workers: int | None = None) -> None:
        from .plan import needed_workers

        self.router = router
        self.workers = workers or needed_workers(router.routes)
        self._plan = plan(router.routes, self.workers)
        self._serving: dict[int, list[int]] = {r.index: [] for r in router.routes}
        for slot, idx in self._plan.items():
            for i in idx:
                self._serving[i].append(slot)
        self._rr = {i: itertools.cycle(slots) for i, slots in self._serving.items() if slots}
        self._queue: deque[tuple[RoutedMessage, Route]] = deque()
        self.dead_letters: list[StubDeadLetter] = []
        self.waits: list[float] = []
        self.results: list[tuple[RoutedMessage, Result]] = []
        self.handled_by: Counter[int] = Counter()
        self.unrouted: list[str] = []
        self._dispatcher = Dispatcher(dead_letter=self._dead_letter, wait=self._wait)

    def _wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return True

    def _dead_letter(self, message: RoutedMessage, exc: BaseException, text: str) -> None:
        self.dead_letters.append(
            StubDeadLetter(message.topic, message.payload, message.route, message.attempt, exc))

    def publish(self, topic: str, payload: bytes | str | Any = b"", *, qos: int = 1,
                retain: bool = False, message_id: str | None = None) -> None:
        """Queue a message (``str`` payloads are UTF-8 encoded; other objects JSON)."""
        validate_topic(topic)
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, (bytes, bytearray, memoryview)):
            data = bytes(payload)
        else:
            import json

            data = json.dumps(payload).encode()
        found = self.router.resolve(topic)
        if found is None:
            self.unrouted.append(topic)
            return
        route, params = found
        msg = RoutedMessage(topic=topic, payload=data, qos=min(qos, route.qos), retain=retain,
                            message_id=message_id, params=params)
        self._queue.append((msg, route))

    def join(self) -> list[tuple[RoutedMessage, Result]]:
        """Process every queued message (and those handlers publish meanwhile); return
        the results of this call."""
        done: list[tuple[RoutedMessage, Result]] = []
        while self._queue:
            msg, route = self._queue.popleft()
            slot = next(self._rr[route.index])
            self.handled_by[slot] += 1
            result = self._dispatcher.process(route, msg)
            done.append((msg, result))
        self.results.extend(done)
        return done

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome.value for _, r in self.results)

    def close(self) -> None:
        self._dispatcher.close()

    def __enter__(self) -> StubBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



