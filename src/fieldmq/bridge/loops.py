"""Loop prevention. Pure: no I/O.

**MQTT 5 (both sides): the path.** Every message the bridge publishes carries the
user property ``fmq-path``: the names of the brokers it has been on, in order
(``site-a,cloud``). A message is never forwarded to a broker that is already on
its path. That one rule covers

* one bridge forwarding both ways over overlapping topics: its own forwarded
  message comes back on the other side's subscription and is not sent back;
* two bridges forwarding in opposite directions (A: site->cloud, B: cloud->site):
  B does not send A's messages back to the site, so nothing is even echoed once;
* chains (edge -> site -> cloud) work: no broker repeats on the path.

Broker names default to ``host:port`` of the URLs; bridges that see the same broker
under different URLs must set the same ``local.name`` / ``upstream.name``.

**MQTT 3.1.1 on either side: topic spaces.** 3.1.1 has no user properties (and no
``no_local``), so nothing can travel with the message. Instead the configuration
is checked: a forward mapping whose target can be matched by a reverse mapping's
source, while that reverse mapping's target can be matched by the forward
mapping's source, could bounce a message back and forth; :func:`loop_risks` finds
such pairs, and the bridge refuses to start with them over 3.1.1. Keep the two
directions in disjoint topic spaces (e.g. telemetry under ``sites/<id>/...``,
commands under ``cmd/<id>/...``). Two separate 3.1.1 bridges can only be kept
apart the same way, by their operators.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .mapping import filters_overlap

__all__ = ["PATH_PROPERTY", "extend_path", "is_loop", "loop_risks", "read_path", "valid_name"]

PATH_PROPERTY = "fmq-path"


def valid_name(name: str) -> bool:
    """Broker names are non-empty and hold no comma (the path separator)."""
    return bool(name) and "," not in name and name.strip() == name


def read_path(user_properties: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The broker path carried by a message (empty if it carries none)."""
    for key, value in user_properties:
        if key == PATH_PROPERTY:
            return tuple(p for p in value.split(",") if p)
    return ()


def is_loop(path: Sequence[str], target: str) -> bool:
    """True when a message with ``path`` must not be forwarded to broker ``target``."""
    return target in path


def extend_path(path: Sequence[str], source: str, target: str) -> str:
    """The ``fmq-path`` value for a message forwarded from ``source`` to ``target``."""
    hops = list(path)
    if not hops or hops[-1] != source:
        hops.append(source)
    hops.append(target)
    return ",".join(hops)


def loop_risks(
    forward: Iterable[tuple[str, str]], reverse: Iterable[tuple[str, str]]
) -> list[tuple[int, int]]:
    """Index pairs ``(f, r)`` of forward and reverse mappings that could bounce a
    message forever without the path property. Each mapping is ``(source, target)``:
    forward sources are local filters and targets upstream topics; reverse sources
    are upstream filters and targets local topics."""
    rev = list(reverse)
    out: list[tuple[int, int]] = []
    for i, (f_src, f_dst) in enumerate(forward):
        for j, (r_src, r_dst) in enumerate(rev):
            if filters_overlap(f_dst, r_src) and filters_overlap(r_dst, f_src):
                out.append((i, j))
    return out
