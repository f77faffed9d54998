"""Topic rewriting and filter relations for the bridge. Pure: no I/O.

A mapping has a source filter (``from``) and a target pattern (``to``). The
wildcards of ``to`` are filled, in order, with what the wildcards of ``from``
matched, so ``+`` and ``#`` are kept:

    from = "plant/+/data/#"   to = "sites/gw-07/plant/+/data/#"
    plant/pump1/data/temp/c  ->  sites/gw-07/plant/pump1/data/temp/c

Both sides must have the same wildcards in the same order (``+`` for ``+``,
``#`` for ``#``); the literal levels are free, which covers prefix rewrites,
prefix removal and renaming a level. ``#`` also matches zero levels (``a/#``
matches ``a``); the ``/#`` part of the target is then left out (``a`` -> ``b``
for ``a/#`` -> ``b/#``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..topics import matches, validate_filter

__all__ = ["TopicRewrite", "filter_covers", "filters_overlap", "minimal_filters"]


def _wildcards(levels: list[str]) -> list[str]:
    return [level for level in levels if level in ("+", "#")]


@dataclass(frozen=True, slots=True)
class TopicRewrite:
    """Map topics matching ``source`` to topics built from ``target``.

    Raises ``ValueError`` at construction when the two do not fit together.
    """

    source: str
    target: str

    def __post_init__(self) -> None:
        validate_filter(self.source)
        if self.source.startswith("$share/"):
            raise ValueError(
                f"{self.source!r}: shared subscriptions ($share/...) cannot be bridged; "
                "a bridge must see every message of its filters"
            )
        validate_filter(self.target)
        if self.target.startswith("$"):
            raise ValueError(f"target {self.target!r} must not start with '$'")
        src, dst = _wildcards(self.source.split("/")), _wildcards(self.target.split("/"))
        if src != dst:
            raise ValueError(
                f"target {self.target!r} must have the same wildcards in the same order as "
                f"the source filter {self.source!r} (source has {_describe(src)}, target has "
                f"{_describe(dst)}); each wildcard of the target is filled with what the "
                "matching wildcard of the source matched"
            )
        if self.target == "#" and self.source != "#":
            raise ValueError(
                f"target '#' would map the topic {self.source[:-2]!r} to an empty topic; "
                "give the target a literal first level"
            )

    def applies_to(self, topic: str) -> bool:
        return matches(self.source, topic)

    def rewrite(self, topic: str) -> str:
        """The target topic for ``topic``; ``ValueError`` if it does not match the source."""
        if self.source == self.target:
            if not matches(self.source, topic):
                raise ValueError(f"topic {topic!r} does not match {self.source!r}")
            return topic
        captures = self._capture(topic)
        out: list[str] = []
        i = 0
        for level in self.target.split("/"):
            if level == "+":
                out.append(captures[i] or "")
                i += 1
            elif level == "#":
                rest = captures[i]
                i += 1
                if rest is not None:  # None: '#' matched zero levels, leave '/#' out
                    out.append(rest)
            else:
                out.append(level)
        return "/".join(out)

    def _capture(self, topic: str) -> list[str | None]:
        if not matches(self.source, topic):
            raise ValueError(f"topic {topic!r} does not match {self.source!r}")
        t_levels = topic.split("/")
        caps: list[str | None] = []
        for i, level in enumerate(self.source.split("/")):
            if level == "+":
                caps.append(t_levels[i])
            elif level == "#":
                caps.append("/".join(t_levels[i:]) if i < len(t_levels) else None)
                break
        return caps


def _describe(wildcards: list[str]) -> str:
    return " ".join(wildcards) if wildcards else "no wildcards"


def _dollar_excluded(a: list[str], b: list[str]) -> bool:
    """A filter starting with a wildcard never matches a ``$`` topic (MQTT 4.7.2)."""
    return a[0] in ("+", "#") and b[0].startswith("$")


def filter_covers(wide: str, narrow: str) -> bool:
    """True when every topic matching ``narrow`` also matches ``wide``."""
    w, n = wide.split("/"), narrow.split("/")
    if _dollar_excluded(w, n):
        return False
    for i, level in enumerate(w):
        if level == "#":
            return True
        if i >= len(n) or n[i] == "#":
            return False
        if level == "+":
            continue
        if n[i] != level:  # includes a '+' in narrow against a literal in wide
            return False
    return len(w) == len(n)


def filters_overlap(a: str, b: str) -> bool:
    """True when some topic name matches both filters."""
    la, lb = a.split("/"), b.split("/")
    if _dollar_excluded(la, lb) or _dollar_excluded(lb, la):
        return False
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != "+" and y != "+" and x != y:
            return False
    return True


def minimal_filters(filters: list[str]) -> list[str]:
    """``filters`` without duplicates and without filters covered by another one, in
    their first order. Subscribing to the result gets each topic from fewer
    overlapping subscriptions (brokers may deliver once per matching subscription)."""
    unique = list(dict.fromkeys(filters))
    return [f for f in unique if not any(g != f and filter_covers(g, f) for g in unique)]
