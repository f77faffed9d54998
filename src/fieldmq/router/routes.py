"""``Router``, ``RouteGroup`` and ``Route``: which handler serves which topics.

Registration checks everything it can, so a mistake fails at import time with a
message that names the route, not at 3 a.m. in a worker:

* the pattern (see :mod:`fieldmq.router.patterns`);
* the handler: callable, takes the message as its first positional argument, every
  other required argument is a route parameter, and no route parameter has the name
  of the message argument (``def h(message)`` with ``{message}`` is refused);
* ``qos`` in 0..2; ``workers`` a positive int (or ``None``: every worker process);
  a non-shared route is served by exactly one process, so ``workers`` > 1 needs
  ``shared=True``;
* two routes with the same MQTT filter (``a/{x}`` and ``a/+``) are refused: the
  precedence between them would be arbitrary.

Handlers are called as ``handler(message, **params)`` with the parameters the
handler declares (all of them when it takes ``**kwargs``); ``message.params`` always
holds them all. ``async def`` handlers are awaited on the worker's event loop.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .middleware import Middleware
from .patterns import Pattern, best_match, compile_pattern

__all__ = ["Route", "RouteGroup", "Router"]

Handler = Callable[..., Any]
_GROUP_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RESOLVED_TOPICS = 10_000  # topics whose route Router.lookup() remembers


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One registered route. ``index`` is its position in the router."""

    index: int
    pattern: Pattern
    handler: Handler
    qos: int
    shared: bool
    workers: int | None
    group: str | None
    name: str
    middleware: tuple[Middleware, ...]
    is_async: bool
    passes: tuple[str, ...] = field(default=())  # params passed as keyword arguments

    @property
    def subscription(self) -> str:
        """The MQTT filter this route subscribes to (``$share/<group>/...`` when shared)."""
        if self.shared:
            return f"$share/{self.group}/{self.pattern.filter}"
        return self.pattern.filter

    def __repr__(self) -> str:
        w = "all" if self.workers is None else self.workers
        mode = f"shared group={self.group!r} workers={w}" if self.shared else "single process"
        return f"Route({self.pattern.source!r} -> {self.name}, qos={self.qos}, {mode})"


def _handler_name(handler: Handler) -> str:
    mod = getattr(handler, "__module__", None) or "?"
    qual = getattr(handler, "__qualname__", None) or type(handler).__name__
    return f"{mod}.{qual}"


def _inspect_handler(pattern: Pattern, handler: object) -> tuple[bool, tuple[str, ...]]:
    if not callable(handler):
        raise TypeError(
            f"route {pattern.source!r}: handler must be callable, got {type(handler).__name__}"
        )
    target = handler
    call = getattr(handler, "__call__", None)  # noqa: B004 - instances with async __call__
    if not inspect.isfunction(handler) and not inspect.ismethod(handler) and call is not None:
        target = call
    is_async = inspect.iscoroutinefunction(target)
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):  # builtins without a signature: pass the message only
        return is_async, ()
    params = list(sig.parameters.values())
    positional = [
        p for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    name = _handler_name(handler)
    if not positional and not var_pos:
        raise TypeError(
            f"route {pattern.source!r}: handler {name} must take the message as its first "
            f"positional argument, e.g. def handler(message{', ' if pattern.params else ''}"
            f"{', '.join(pattern.params)}): ..."
        )
    first = positional[0] if positional else None
    if first is not None and first.name in pattern.params:
        raise ValueError(
            f"route {pattern.source!r}: parameter {{{first.name}}} clashes with the message "
            f"argument {first.name!r} of handler {name}; rename one of them"
        )
    rest = [p for p in params if p is not first]
    for p in rest:
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            raise TypeError(
                f"route {pattern.source!r}: handler {name} has a second positional-only "
                f"argument {p.name!r}; route parameters are passed by keyword"
            )
    declared = {p.name: p for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [
        n for n, p in declared.items() if p.default is p.empty and n not in pattern.params
    ]
    if missing:
        raise TypeError(
            f"route {pattern.source!r}: handler {name} requires argument(s) "
            f"{', '.join(missing)} that the pattern does not capture "
            f"(it captures: {', '.join(pattern.params) or 'nothing'})"
        )
    passes = tuple(n for n in pattern.params if var_kw or n in declared)
    return is_async, passes


class _Registry:
    """What ``Router`` and ``RouteGroup`` share: ``on()``, ``route()`` and ``group()``."""

    def _register(
        self,
        pattern: str,
        handler: Handler,
        qos: int,
        shared: bool,
        workers: int | None,
        group: str | None,
        name: str | None,
        middleware: Sequence[Middleware],
    ) -> Route:
        raise NotImplementedError

    def on(
        self,
        pattern: str,
        handler: Handler,
        *,
        qos: int = 1,
        shared: bool = False,
        workers: int | None = None,
        group: str | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> Route:
        """Serve topics matching ``pattern`` with ``handler``. See the module docstring."""
        return self._register(pattern, handler, qos, shared, workers, group, name, middleware)

    def route(
        self,
        pattern: str,
        *,
        qos: int = 1,
        shared: bool = False,
        workers: int | None = None,
        group: str | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`on`; returns the handler unchanged."""

        def deco(handler: Handler) -> Handler:
            self.on(pattern, handler, qos=qos, shared=shared, workers=workers, group=group,
                    name=name, middleware=middleware)
            return handler

        return deco

    def group(self, prefix: str, *, middleware: Sequence[Middleware] = ()) -> RouteGroup:
        """A group of routes under ``prefix`` (a pattern of whole levels, parameters
        allowed) sharing ``middleware`` (run after this router's own)."""
        return RouteGroup(self, prefix, middleware)


def _check_middleware(middleware: Sequence[Middleware], where: str) -> tuple[Middleware, ...]:
    items = tuple(middleware)
    for mw in items:
        if not isinstance(mw, Middleware):
            raise TypeError(
                f"{where}: middleware must be instances of fieldmq.router.Middleware, got "
                f"{mw!r}" + (" (a class: instantiate it)" if isinstance(mw, type) else "")
            )
    return items


class RouteGroup(_Registry):
    """Routes sharing a topic prefix and middleware; create with ``router.group()``."""

    def __init__(self, parent: _Registry, prefix: str, middleware: Sequence[Middleware]) -> None:
        if not isinstance(prefix, str) or not prefix or prefix.endswith("/"):
            raise ValueError(
                f"group prefix must be a non-empty pattern without a trailing '/', got {prefix!r}"
            )
        compiled = compile_pattern(prefix)
        if compiled.levels[-1].kind == 2:
            raise ValueError(f"group prefix {prefix!r} must not end with a multi-level wildcard")
        self._parent = parent
        self.prefix = prefix
        self.middleware = _check_middleware(middleware, f"group {prefix!r}")

    def _register(
        self,
        pattern: str,
        handler: Handler,
        qos: int,
        shared: bool,
        workers: int | None,
        group: str | None,
        name: str | None,
        middleware: Sequence[Middleware],
    ) -> Route:
        if not isinstance(pattern, str):
            raise TypeError(f"route pattern must be a str, got {type(pattern).__name__}")
        full = f"{self.prefix}/{pattern}" if pattern else self.prefix
        mws = (*self.middleware, *_check_middleware(middleware, f"route {full!r}"))
        return self._parent._register(full, handler, qos, shared, workers, group, name, mws)

    def __repr__(self) -> str:
        return f"RouteGroup({self.prefix!r}, middleware={list(self.middleware)!r})"


class Router(_Registry):
    """A set of routes. ``name`` is the default shared-subscription group and the
    prefix of the workers' client ids; ``middleware`` runs for every route (default:
    ``[Retries()]``)."""

    def __init__(
        self, *, name: str = "fieldmq", middleware: Sequence[Middleware] | None = None
    ) -> None:
        if not isinstance(name, str) or not _GROUP_RE.fullmatch(name):
            raise ValueError(
                f"router name must be 1-64 letters, digits, '_', '.' or '-', got {name!r}"
            )
        if middleware is None:
            from .retries import Retries

            middleware = [Retries()]
        self.name = name
        self.middleware = _check_middleware(middleware, "Router")
        self._routes: list[Route] = []
        self._by_filter: dict[str, Route] = {}
        self._patterns: dict[int, Pattern] = {}
        self._resolved: dict[str, tuple[Route, Mapping[str, str]] | None] = {}

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def add_middleware(self, middleware: Middleware) -> None:
        """Append router-wide middleware (before any route is registered)."""
        if self._routes:
            raise RuntimeError("add router middleware before registering routes")
        self.middleware = (*self.middleware, *_check_middleware([middleware], "Router"))

    def _register(
        self,
        pattern: str,
        handler: Handler,
        qos: int,
        shared: bool,
        workers: int | None,
        group: str | None,
        name: str | None,
        middleware: Sequence[Middleware],
    ) -> Route:
        compiled = compile_pattern(pattern)
        where = f"route {pattern!r}"
        if isinstance(qos, bool) or qos not in (0, 1, 2):
            raise ValueError(f"{where}: qos must be 0, 1 or 2, got {qos!r}")
        if not isinstance(shared, bool):
            raise TypeError(f"{where}: shared must be True or False, got {shared!r}")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"{where}: workers must be a positive int or None, got {workers!r}")
        if not shared and workers is not None and workers != 1:
            raise ValueError(
                f"{where}: workers={workers} needs shared=True; a non-shared route is served "
                "by exactly one process (every subscriber would get every message)"
            )
        if group is not None and not shared:
            raise ValueError(f"{where}: group= is only meaningful with shared=True")
        grp = group if group is not None else self.name
        if not isinstance(grp, str) or not _GROUP_RE.fullmatch(grp):
            raise ValueError(
                f"{where}: group must be 1-64 letters, digits, '_', '.' or '-', got {grp!r}"
            )
        is_async, passes = _inspect_handler(compiled, handler)
        mws = (*self.middleware, *_check_middleware(middleware, where))
        existing = self._by_filter.get(compiled.filter)
        if existing is not None:
            raise ValueError(
                f"{where} subscribes to the same MQTT filter {compiled.filter!r} as "
                f"{existing.pattern.source!r}; merge them into one route"
            )
        route = Route(
            index=len(self._routes),
            pattern=compiled,
            handler=handler,
            qos=qos,
            shared=shared,
            workers=1 if not shared else workers,
            group=grp if shared else None,
            name=name or _handler_name(handler),
            middleware=mws,
            is_async=is_async,
            passes=passes,
        )
        self._routes.append(route)
        self._by_filter[compiled.filter] = route
        self._patterns[route.index] = compiled
        self._resolved = {}  # precedence may differ now
        return route

    def resolve(self, topic: str) -> tuple[Route, dict[str, str]] | None:
        """The route that serves ``topic`` by precedence, and its parameters."""
        found = best_match(self._patterns, topic)
        if found is None:
            return None
        return self._routes[found[0]], found[1]

    def lookup(self, topic: str) -> tuple[Route, Mapping[str, str]] | None:
        """:meth:`resolve` for the hot path: the answer for a topic is remembered (up to
        ``RESOLVED_TOPICS`` topics; then the memory starts afresh) and the parameters
        are a read-only mapping shared by every message on that topic."""
        resolved = self._resolved
        try:
            return resolved[topic]
        except KeyError:
            pass
        found = best_match(self._patterns, topic)
        answer = None if found is None else (
            self._routes[found[0]], MappingProxyType(found[1]))
        if len(resolved) >= RESOLVED_TOPICS:
            resolved = self._resolved = {}
        resolved[topic] = answer
        return answer

    def __repr__(self) -> str:
        return f"Router(name={self.name!r}, routes={len(self._routes)})"
