"""Exceptions of the router.

::

    FieldmqError
    └── RouterError                  the router or its workers failed at run time
        ├── CrashLoop                a worker slot kept dying; the supervisor gave up
        └── DeadLetterError          the dead-letter store could not be read or written
    Exception
    └── HandlingError                raised in handlers/middleware to steer the outcome
        ├── Skip                     acknowledge without handling (counted as skipped)
        ├── InvalidMessage           the payload is invalid: dead-letter at once, no retry
        └── TimeLimitExceeded        the handler ran past its time limit (retried)

Registration mistakes (a bad pattern, a parameter clash, a worker count that cannot
be honoured) raise ``ValueError``/``TypeError`` at the call that made them.
"""

from __future__ import annotations

from ..errors import FieldmqError

__all__ = [
    "CrashLoop",
    "DeadLetterError",
    "HandlingError",
    "InvalidMessage",
    "RouterError",
    "Skip",
    "TimeLimitExceeded",
]


class RouterError(FieldmqError):
    """The router or its worker processes failed."""


class CrashLoop(RouterError):
    """A worker slot died too often in too short a time; it is no longer restarted."""


class DeadLetterError(RouterError):
    """The dead-letter store failed (translated from ``sqlite3.Error``/``OSError``)."""


class HandlingError(Exception):
    """Base of the exceptions that steer what happens to a message."""


class Skip(HandlingError):
    """Raise from a handler or a ``before_process`` hook to acknowledge the message
    without handling it (e.g. a duplicate). Not a failure; never retried."""


class InvalidMessage(HandlingError):
    """The message can never be handled (bad payload): it goes to the dead-letter store
    at once, without retries."""


class TimeLimitExceeded(HandlingError):
    """The handler ran longer than its :class:`~fieldmq.router.TimeLimit`."""
