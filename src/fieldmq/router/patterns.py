"""Route patterns: compile ``sensors/{device_id}/data`` into an MQTT filter and a matcher.

Pure: no I/O, tested exhaustively without a broker.

Syntax, one topic level at a time (levels are separated by ``/``):

=================  ===========================================================
level              matches
=================  ===========================================================
``text``           exactly ``text``: no regular expression, no wildcard (``.`` is a dot)
``{name}``         any one level; its text becomes ``params["name"]``
``{name:#}``       (last level only) zero or more levels, like ``#``; the rest of the
                   topic (levels joined by ``/``, ``""`` when none) becomes ``params["name"]``
``+``              any one level, not captured
``#``              (last level only) zero or more levels, not captured
=================  ===========================================================

A parameter must be a whole level (``v{id}`` is an error, not a literal). Names are
Python identifiers that are not keywords, unique within the pattern.

Precedence (:attr:`Pattern.rank`): when several patterns match a topic, the most
specific one wins. Levels are compared from the left; at the first level where the
two differ in kind, a literal beats a one-level wildcard (``{name}``/``+``), which
beats a multi-level one (``{name:#}``/``#``); a pattern that ends earlier beats one
that continues with a multi-level tail (``a/{x}`` beats ``a/{x}/#`` for ``a/1``).
Two patterns with the same rank that match the same topic are the same MQTT filter,
which the router refuses to register twice, so the winner is always unique.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from dataclasses import dataclass

from ..topics import validate_filter

__all__ = ["LITERAL", "MULTI", "SINGLE", "Pattern", "compile_pattern"]

LITERAL, SINGLE, MULTI = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Level:
    kind: int
    text: str  # the literal text, or the parameter name ("" for + and #)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled route pattern. Build it with :func:`compile_pattern`."""

    source: str
    filter: str
    params: tuple[str, ...]
    levels: tuple[_Level, ...]

    @property
    def rank(self) -> tuple[int, ...]:
        """Sort key of the precedence: the smaller rank wins."""
        return tuple(level.kind for level in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The parameters when ``topic`` matches, else ``None``. Literal levels are
        compared as plain strings; a filter starting with a wildcard never matches a
        topic starting with ``$`` (MQTT 4.7.2)."""
        levels = self.levels
        if topic[:1] == "$" and levels[0].kind != LITERAL:
            return None
        parts = topic.split("/")
        n = len(parts)
        params: dict[str, str] = {}
        for i, level in enumerate(levels):
            kind = level.kind
            if kind == MULTI:
                if level.text:
                    params[level.text] = "/".join(parts[i:])
                return params
            if i >= n:
                return None
            if kind == LITERAL:
                if parts[i] != level.text:
                    return None
            elif level.text:
                params[level.text] = parts[i]
        return params if len(levels) == n else None

    def __repr__(self) -> str:
        return f"Pattern({self.source!r}, filter={self.filter!r})"


def _bad(pattern: str, why: str) -> ValueError:
    return ValueError(f"invalid route pattern {pattern!r}: {why}")


def compile_pattern(pattern: object) -> Pattern:
    """Compile ``pattern``; raise ``TypeError``/``ValueError`` saying what is wrong."""
    if not isinstance(pattern, str):
        raise TypeError(f"route pattern must be a str, got {type(pattern).__name__}")
    if pattern == "":
        raise _bad(pattern, "it is empty")
    if pattern.startswith("$share/"):
        raise _bad(pattern, "do not write '$share/...' yourself; pass shared=True (and group=)")
    raw = pattern.split("/")
    levels: list[_Level] = []
    names: list[str] = []
    filter_levels: list[str] = []
    for i, text in enumerate(raw):
        last = i == len(raw) - 1
        if text.startswith("{") and text.endswith("}") and len(text) >= 2:
            body = text[1:-1]
            multi = body.endswith(":#")
            name = body[:-2] if multi else body
            if ":" in name or "{" in name or "}" in name:
                raise _bad(pattern, f"level {text!r}: write {{name}} or {{name:#}}")
            if not name.isidentifier() or keyword.iskeyword(name):
                raise _bad(
                    pattern,
                    f"parameter name {name!r} must be a Python identifier that is not a keyword",
                )
            if name in names:
                raise _bad(pattern, f"parameter {name!r} appears twice")
            if multi and not last:
                raise _bad(pattern, f"{text!r} matches the rest of the topic: it must be last")
            names.append(name)
            levels.append(_Level(MULTI if multi else SINGLE, name))
            filter_levels.append("#" if multi else "+")
        elif "{" in text or "}" in text:
            raise _bad(
                pattern,
                f"level {text!r}: a parameter must be a whole level ('{{name}}'); "
                "braces are not allowed in literal text",
            )
        elif text == "+":
            levels.append(_Level(SINGLE, ""))
            filter_levels.append("+")
        elif text == "#":
            if not last:
                raise _bad(pattern, "'#' must be the last level")
            levels.append(_Level(MULTI, ""))
            filter_levels.append("#")
        elif "+" in text or "#" in text:
            raise _bad(pattern, f"level {text!r}: '+' and '#' must be a whole level")
        else:
            levels.append(_Level(LITERAL, text))
            filter_levels.append(text)
    topic_filter = "/".join(filter_levels)
    try:
        validate_filter(topic_filter)
    except ValueError as exc:
        raise _bad(pattern, str(exc)) from exc
    return Pattern(pattern, topic_filter, tuple(names), tuple(levels))


def best_match(
    patterns: Mapping[int, Pattern], topic: str
) -> tuple[int, dict[str, str]] | None:
    """The key of the winning pattern for ``topic`` and its parameters, or ``None``."""
    best: tuple[tuple[int, ...], int, dict[str, str]] | None = None
    for key, pat in patterns.items():
        params = pat.match(topic)
        if params is None:
            continue
        rank = pat.rank
        if best is None or rank < best[0]:
            best = (rank, key, params)
    return None if best is None else (best[1], best[2])
