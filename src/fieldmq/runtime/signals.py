"""SIGTERM and SIGINT turned into a stop request, and put back afterwards.

systemd and supervisord stop a service with SIGTERM; a person with Ctrl-C sends
SIGINT. Both must lead to the same graceful stop, not to an exception raised at
a random line of the main loop. Python only lets the main thread install signal
handlers, so :class:`StopSignals` does nothing elsewhere (the embedding
application then owns its signals and calls ``Service.request_stop()``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["StopSignals"]

log = logging.getLogger("fieldmq.runtime")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Call ``on_stop(signal_name)`` on SIGTERM or SIGINT while installed."""

    def __init__(self, on_stop: Callable[[str], None]) -> None:
        self._on_stop = on_stop
        self._previous: dict[int, Any] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> bool:
        """Install the handlers; ``False`` when not on the main thread."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return False
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._on_stop(signal.Signals(signum).name)

    def restore(self) -> None:
        """Put back the handlers that were there before. Idempotent."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
