"""Middleware order, hook failures, retries, time limits, rate limits, validation, dead
letters: the real dispatch path, driven through the in-memory StubBroker."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

import pytest

from fieldmq import Backoff
from fieldmq.router import (
    InvalidMessage,
    KeyRateLimit,
    Middleware,
    Retries,
    RoutedMessage,
    Router,
    Skip,
    TimeLimit,
    TimeLimitExceeded,
    Validate,
)
from fieldmq.router.testing import StubBroker

NO_JITTER = Backoff(initial=0.1, maximum=1.0, factor=2.0, jitter=False)


class Recorder(Middleware):
    def __init__(self, name: str, log: list[str], fail: str = "") -> None:
        self.name, self.log, self.fail = name, log, fail

    def before_process(self, message: RoutedMessage) -> None:
        self.log.append(f"before:{self.name}")
        if self.fail == "before":
            raise RuntimeError(f"{self.name} before failed")

    def after_process(self, message: RoutedMessage, *, result: Any = None,
                      exception: BaseException | None = None) -> None:
        self.log.append(f"after:{self.name}:{type(exception).__name__ if exception else result}")
        if self.fail == "after":
            raise RuntimeError(f"{self.name} after failed")

    def after_skip(self, message: RoutedMessage, reason: str) -> None:
        self.log.append(f"skip:{self.name}:{reason}")

    def after_dead_letter(self, message: RoutedMessage, exception: BaseException) -> None:
        self.log.append(f"dead:{self.name}")


def test_hooks_run_in_order_and_reverse() -> None:
    """before hooks run router->group->route, after hooks in reverse, around the handler."""
    log: list[str] = []
    r = Router(middleware=[Recorder("r", log)])
    g = r.group("g", middleware=[Recorder("g", log)])
    g.on("{x}", lambda m, x: log.append(f"handler:{x}") or "ok",
         middleware=[Recorder("t", log)])
    with StubBroker(r) as b:
        b.publish("g/1", b"")
        b.join()
    assert log == ["before:r", "before:g", "before:t", "handler:1",
                   "after:t:ok", "after:g:ok", "after:r:ok"]
    assert b.outcomes() == {"handled": 1}


def test_failing_before_hook_is_logged_and_fails_the_attempt(
        caplog: pytest.LogCaptureFixture) -> None:
    """A failing before hook stops the chain, is logged, and the message is dead-lettered."""
    log: list[str] = []
    r = Router(middleware=[Recorder("a", log), Recorder("b", log, fail="before"),
                           Recorder("c", log)])
    r.on("t", lambda m: log.append("handler"))
    with caplog.at_level(logging.ERROR, "fieldmq.router"), StubBroker(r) as b:
        b.publish("t")
        b.join()
    assert log == ["before:a", "before:b", "after:b:RuntimeError", "after:a:RuntimeError",
                   "dead:c", "dead:b", "dead:a"]
    assert "before_process failed" in caplog.text
    assert len(b.dead_letters) == 1 and "b before failed" in str(b.dead_letters[0].error)


def test_failing_after_hook_is_not_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    """A failing after hook is logged, later after hooks still run, the attempt fails."""
    log: list[str] = []
    r = Router(middleware=[Recorder("a", log), Recorder("b", log, fail="after")])
    r.on("t", lambda m: "ok")
    with caplog.at_level(logging.ERROR, "fieldmq.router"), StubBroker(r) as b:
        b.publish("t")
        b.join()
    assert log[:3] == ["before:a", "before:b", "after:b:ok"]
    assert log[3] == "after:a:RuntimeError"
    assert "after_process failed" in caplog.text
    assert b.outcomes() == {"dead_lettered": 1}


def test_retries_with_backoff_then_success() -> None:
    """A handler failing twice is retried with the backoff schedule, then handled."""
    calls: list[int] = []

    def flaky(m: RoutedMessage) -> None:
        calls.append(m.attempt)
        if m.attempt < 3:
            raise ConnectionError("db down")

    r = Router(middleware=[Retries(max_retries=3, backoff=NO_JITTER)])
    r.on("t", flaky)
    with StubBroker(r) as b:
        b.publish("t")
        b.join()
    assert calls == [1, 2, 3]
    assert b.waits == [0.1, 0.2]
    assert b.outcomes() == {"handled": 1}


def test_retries_exhausted_go_to_dead_letters() -> None:
    """After max_retries + 1 attempts the message is dead-lettered with the error."""
    r = Router(middleware=[Retries(max_retries=2, backoff=NO_JITTER)])
    r.on("dev/{id}", lambda m, id: 1 / 0)
    with StubBroker(r) as b:
        b.publish("dev/7", b"payload")
        b.join()
    [dl] = b.dead_letters
    assert (dl.topic, dl.payload, dl.route, dl.attempts) == ("dev/7", b"payload", "dev/{id}", 3)
    assert isinstance(dl.error, ZeroDivisionError)
    assert b.waits == [0.1, 0.2]


def test_retry_filters() -> None:
    """retry_on and retry_when restrict which failures are retried."""
    rt = Retries(max_retries=5, backoff=NO_JITTER, retry_on=(OSError,),
                 retry_when=lambda attempt, exc: attempt < 2)
    assert rt.retry_delay(1, OSError()) == 0.1
    assert rt.retry_delay(2, OSError()) is None
    assert rt.retry_delay(1, ValueError()) is None
    assert rt.retry_delay(1, InvalidMessage("x")) is None
    assert Retries(max_retries=0).retry_delay(1, OSError()) is None
    jittered = Retries(backoff=Backoff(initial=1, maximum=8), rng=random.Random(1))
    assert all(0 <= jittered.retry_delay(a, OSError()) <= 2 ** (a - 1)  # type: ignore[operator]
               for a in (1, 2, 3))
    with pytest.raises(ValueError, match="max_retries"):
        Retries(max_retries=-1)


def test_skip_acknowledges_without_handling() -> None:
    """Skip from a handler is not a failure: no retry, no dead letter, after_skip runs."""
    log: list[str] = []

    def dup(m: RoutedMessage) -> None:
        raise Skip("duplicate")

    r = Router(middleware=[Recorder("a", log), Retries(backoff=NO_JITTER)])
    r.on("t", dup)
    with StubBroker(r) as b:
        b.publish("t")
        b.join()
    assert b.outcomes() == {"skipped": 1} and b.waits == [] and "skip:a:duplicate" in log


def test_validation_dead_letters_at_once() -> None:
    """An invalid payload is dead-lettered without retries, with the reason."""
    def check(m: RoutedMessage) -> Any:
        data = m.json()
        return None if "t" in data else "missing 't'"

    handled: list[Any] = []
    r = Router(middleware=[Retries(backoff=NO_JITTER), Validate(check)])
    r.on("t", lambda m: handled.append(m.json()))
    with StubBroker(r) as b:
        b.publish("t", b"not json")
        b.publish("t", {"x": 1})
        b.publish("t", {"t": 2})
        b.publish("t", b"{}")
        b.join()
    assert handled == [{"t": 2}] and b.waits == []
    errors = [str(d.error) for d in b.dead_letters]
    assert "JSONDecodeError" in errors[0] and "missing 't'" in errors[1]
    assert all(d.attempts == 1 for d in b.dead_letters)
    assert Validate(lambda m: False).check(RoutedMessage("t", b"")) is False
    with pytest.raises(InvalidMessage, match="rejected by the validation hook"):
        Validate(lambda m: False).before_process(RoutedMessage("t", b""))


def test_time_limit_interrupts_sync_handler() -> None:
    """A sync handler past its TimeLimit is interrupted and the attempt fails."""
    stop = threading.Event()

    def slow(m: RoutedMessage) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not stop.is_set():
            stop.wait(0.001)

    r = Router(middleware=[TimeLimit(0.05)])
    r.on("t", slow)
    with StubBroker(r) as b:
        started = time.monotonic()
        b.publish("t")
        b.join()
    stop.set()
    assert time.monotonic() - started < 5
    assert isinstance(b.dead_letters[0].error, TimeLimitExceeded)


def test_time_limit_cancels_async_handler_and_async_works() -> None:
    """async handlers run; one past its TimeLimit is cancelled; the smallest limit wins."""
    seen: list[str] = []

    async def quick(m: RoutedMessage, x: str) -> None:
        await asyncio.sleep(0)
        seen.append(x)

    async def hang(m: RoutedMessage) -> None:
        await asyncio.sleep(30)

    r = Router(middleware=[TimeLimit(60)])
    r.on("q/{x}", quick)
    r.on("h", hang, middleware=[TimeLimit(0.05)])
    with StubBroker(r) as b:
        b.publish("q/1")
        b.publish("h")
        b.join()
    assert seen == ["1"]
    assert isinstance(b.dead_letters[0].error, TimeLimitExceeded)
    with pytest.raises(ValueError):
        TimeLimit(0)


def test_key_rate_limit_reservations_are_pure() -> None:
    """The per-key bucket allows a burst, then spaces messages; keys are independent."""
    rl = KeyRateLimit(rate=2, per=1.0, key="id", burst=2)
    assert [rl.reserve("a", 0.0) for _ in range(4)] == [0.0, 0.0, 0.5, 1.0]
    assert rl.reserve("b", 0.0) == 0.0
    assert rl.reserve("a", 10.0) == 0.0
    small = KeyRateLimit(rate=1, max_keys=2)
    for k in "xyz":
        small.reserve(k, 0.0)
    assert len(small._buckets) == 2


def test_key_rate_limit_modes() -> None:
    """mode='wait' delays the message (no loss); mode='skip' acknowledges it unhandled."""
    slept: list[float] = []
    now = [0.0]
    handled: list[str] = []
    r = Router(middleware=[])
    r.on("w/{id}", lambda m, id: handled.append(id),
         middleware=[KeyRateLimit(rate=1, key="id", sleep=slept.append, clock=lambda: now[0])])
    r.on("s/{id}", lambda m, id: handled.append("s" + id),
         middleware=[KeyRateLimit(rate=1, key=lambda m: m.params["id"], mode="skip",
                                  clock=lambda: now[0])])
    with StubBroker(r) as b:
        for _ in range(3):
            b.publish("w/a")
            b.publish("s/a")
        b.join()
    assert handled.count("a") == 3 and slept == [1.0, 2.0]
    assert handled.count("sa") == 1 and b.outcomes()["skipped"] == 2
    with pytest.raises(ValueError, match="no such parameter"):
        KeyRateLimit(rate=1, key="nope").key_of(RoutedMessage("t", b"", route="t"))
    with pytest.raises(ValueError):
        KeyRateLimit(rate=0)


def test_stub_broker_shared_round_robin_and_single_process() -> None:
    """Shared routes spread round-robin over exactly their workers; others use worker 0."""
    r = Router(middleware=[])
    r.on("s/{n}", lambda m, n: None, shared=True, workers=3)
    r.on("one/{n}", lambda m, n: None, shared=True, workers=1)
    with StubBroker(r, workers=3) as b:
        for i in range(30):
            b.publish(f"s/{i}")
        b.join()
        assert b.handled_by == {0: 10, 1: 10, 2: 10}
        b.handled_by.clear()
        for i in range(5):
            b.publish(f"one/{i}")
        b.publish("nowhere")
        b.join()
        assert len(b.handled_by) == 1 and sum(b.handled_by.values()) == 5
        assert b.unrouted == ["nowhere"]


def test_routed_message_accessors() -> None:
    """The handler's message exposes topic, payload bytes, json(), text(), params."""
    got: list[RoutedMessage] = []
    r = Router()
    r.on("d/{id}", lambda m, id: got.append(m))
    with StubBroker(r) as b:
        b.publish("d/9", '{"v": 1}', qos=0, retain=True, message_id="abc-1")
        b.join()
    m = got[0]
    assert (m.topic, m.payload, m.json(), m.text(), dict(m.params)) == (
        "d/9", b'{"v": 1}', {"v": 1}, '{"v": 1}', {"id": "9"})
    assert (m.qos, m.retain, m.message_id, m.route, m.attempt) == (0, True, "abc-1", "d/{id}", 1)
    assert "d/{id}" in repr(m)
