"""A timeline of actions run on a background thread: the scripting half of fault
injection (``FaultSchedule([(5, proxy.blackhole), (20, proxy.passthrough)])``)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType

__all__ = ["FaultSchedule"]

log = logging.getLogger("fieldmq.testing.faultproxy")


def _label(action: Callable[[], object]) -> str:
    if isinstance(action, functools.partial):
        args = ", ".join(repr(a) for a in action.args)
        return f"{_label(action.func)}({args})"
    return str(getattr(action, "__name__", repr(action)))


class FaultSchedule:
    """Run ``(at_seconds, action)`` steps on a background thread, ``at`` counted from
    ``start()``. Steps run in time order (ties in the given order); ``history`` records
    ``(elapsed_seconds, label)`` as each ran. An exception from an action is logged,
    kept in ``errors``, and re-raised by ``wait()`` / ``close()`` so a test cannot miss
    it; the remaining steps still run.
    """

    def __init__(
        self,
        steps: Iterable[tuple[float, Callable[[], object]]],
        *,
        name: str = "fieldmq-faultschedule",
    ) -> None:
        ordered = sorted(steps, key=lambda step: step[0])
        for at, action in ordered:
            if not at >= 0:
                raise ValueError(f"a step's time must be >= 0 seconds, got {at!r}")
            if not callable(action):
                raise TypeError(f"a step's action must be callable, got {action!r}")
        self.steps = ordered
        self.name = name
        self.history: list[tuple[float, str]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._raised = False

    @property
    def done(self) -> bool:
        """Every step has run (or the schedule was closed)."""
        return self._thread is not None and not self._thread.is_alive()

    @property
    def duration(self) -> float:
        """Time of the last step."""
        return self.steps[-1][0] if self.steps else 0.0

    def start(self) -> FaultSchedule:
        if self._thread is not None:
            raise RuntimeError("a FaultSchedule runs once; create a new one")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        for at, action in self.steps:
            if self._stop.wait(max(0.0, t0 + at - time.monotonic())):
                return
            label = _label(action)
            try:
                action()
            except Exception as exc:
                log.exception("fault schedule step %r at %gs failed", label, at)
                self.errors.append(exc)
            self.history.append((time.monotonic() - t0, label))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the last step; True when all ran. Re-raises a failed step's error."""
        if self._thread is None:
            raise RuntimeError("call start() first")
        self._thread.join(timeout)
        self._raise_first_error()
        return not self._thread.is_alive()

    def close(self) -> None:
        """Skip the steps not yet run and stop the thread; re-raise a failed step's error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._raise_first_error()

    def _raise_first_error(self) -> None:
        if self.errors and not self._raised:
            self._raised = True
            raise self.errors[0]

    def __enter__(self) -> FaultSchedule:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._raised = True  # do not mask the test's own failure
        self.close()

    def __repr__(self) -> str:
        state = "new" if self._thread is None else ("done" if self.done else "running")
        return f"FaultSchedule({len(self.history)}/{len(self.steps)} steps, {state})"
