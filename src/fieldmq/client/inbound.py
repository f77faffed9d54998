"""The receiving side's bookkeeping, kept off the network loop: subscriptions to send,
their confirmation by the broker (SUBACK), unsubscriptions, acknowledgements of
received messages (manual ack modes) tied to the connection they belong to, and
received messages that no subscription callback matches yet (:class:`Unrouted`)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Inbound", "Unrouted"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("fieldmq.client")


class Inbound:
    """Thread-safe: callers on any thread, the network thread takes the work."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._subs: list[tuple[str, int]] = []
        self._unsubs: list[str] = []
        self._sub_mids: dict[int, list[str]] = {}
        self._confirmed: set[str] = set()
        self._refused: dict[str, str] = {}
        self._acks: list[tuple[int, int, int]] = []
        self.generation = 0

    # -- callers -----------------------------------------------------------------------
    def subscribe(self, flt: str, qos: int) -> None:
        with self._cond:
            self._confirmed.discard(flt)
            self._refused.pop(flt, None)
            self._subs.append((flt, qos))

    def unsubscribe(self, flt: str) -> None:
        with self._cond:
            self._confirmed.discard(flt)
            self._refused.pop(flt, None)
            self._unsubs.append(flt)

    def wait_subscribed(self, filters: Sequence[str], timeout: float | None,
                        connected: bool) -> dict[str, str]:
        """Block until the broker answered every filter's SUBSCRIBE on the current
        connection; ``{filter: reason}`` for refused ones. TimeoutError otherwise."""
        def answered() -> bool:
            return all(f in self._confirmed or f in self._refused for f in filters)

        with self._cond:
            if not self._cond.wait_for(answered, timeout):
                missing = [f for f in filters if f not in self._confirmed]
                raise TimeoutError(
                    f"the broker did not confirm the subscription to {missing} within "
                    f"{timeout} s (connected: {connected})"
                )
            return {f: self._refused[f] for f in filters if f in self._refused}

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """Queue an acknowledgement; False when it belongs to a connection that is gone
        (the broker redelivers those messages on the new one)."""
        if qos == 0 or generation != self.generation:
            return False
        with self._cond:
            self._acks.append((mid, qos, generation))
        return True

    # -- the network thread -----------------------------------------------------------------
    def new_connection(self) -> None:
        """A new connection: nothing is confirmed on it yet, old acks mean nothing."""
        with self._cond:
            self.generation += 1
            self._acks.clear()
            self._confirmed.clear()
            self._refused.clear()
            self._sub_mids.clear()
            self._subs.clear()  # the full list is sent on connect

    def has_work(self) -> bool:
        return bool(self._subs or self._unsubs or self._acks)

    def take_subscriptions(self) -> list[tuple[str, int]]:
        with self._cond:
            subs, self._subs = self._subs, []
            return subs

    def take_unsubscriptions(self) -> list[str]:
        with self._cond:
            unsubs, self._unsubs = self._unsubs, []
            return unsubs

    def take_acks(self) -> list[tuple[int, int]]:
        with self._cond:
            acks, self._acks = self._acks, []
            return [(mid, qos) for mid, qos, gen in acks if gen == self.generation]

    @property
    def pending_acks(self) -> bool:
        return bool(self._acks)

    def sent(self, mid: int | None, filters: list[str]) -> None:
        if mid is not None:
            with self._cond:
                self._sub_mids[mid] = filters

    def suback(self, mid: int, reason_codes: Sequence[Any]) -> None:
        with self._cond:
            filters = self._sub_mids.pop(mid, [])
            for flt, rc in zip(filters, reason_codes, strict=False):
                if rc.is_failure:
                    log.error("%s: the broker refused the subscription to %r: %s",
                              self._name, flt, rc)
                    self._refused[flt] = str(rc)
                else:
                    self._confirmed.add(flt)
            self._cond.notify_all()


class Unrouted(Generic[T]):
    """Received messages that no subscription callback matched when they arrived.

    A client with a persistent session connects in its constructor, and the broker sends
    the session's backlog (messages queued while it was away, and in-flight ones it
    never acknowledged) right after CONNACK, usually before the application has called
    ``subscribe()``. Such a message must not be dropped (with ``ack="auto"`` it is
    already acknowledged; with ``ack="manual"`` nobody would ever acknowledge it, so it
    would also hold one of the broker's ``receive_maximum`` slots until a reconnect).
    It is kept here, in arrival order, until a subscription matches it.

    Not thread-safe: the client calls it under the lock that guards its subscriptions,
    so that deciding "no callback: hold it" and adding a callback are never interleaved.
    Bounded: past ``limit`` messages the oldest one is given up (returned by
    :meth:`hold`, for the caller to acknowledge and count).
    """

    def __init__(self, topic: Callable[[T], str], limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        self._topic = topic
        self.limit = limit
        self._held: deque[T] = deque()
        self._changed = False

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, msg: T) -> T | None:
        """Keep ``msg``; returns the oldest held message when the limit is exceeded."""
        self._held.append(msg)
        return self._held.popleft() if len(self._held) > self.limit else None

    def subscriptions_changed(self) -> None:
        """A callback was added: held messages may have somewhere to go now."""
        self._changed = True

    def release(self, route: Callable[[str], list[R]]) -> list[tuple[T, list[R]]]:
        """After a subscription change, the held messages that ``route(topic)`` now finds
        callbacks for, with those callbacks, in arrival order; the others stay held."""
        if not self._changed:
            return []
        self._changed = False
        out: list[tuple[T, list[R]]] = []
        keep: deque[T] = deque()
        for msg in self._held:
            targets = route(self._topic(msg))
            if targets:
                out.append((msg, targets))
            else:
                keep.append(msg)
        self._held = keep
        return out
