"""Route registration: validation with clear errors, groups, precedence through the Router."""

from __future__ import annotations

from typing import Any

import pytest

from fieldmq.router import Middleware, Retries, Router, TimeLimit


def handler(message: Any) -> None:
    """A handler taking only the message."""


def test_on_returns_route_with_shared_subscription() -> None:
    """A shared route subscribes to $share/<group>/<filter> with its worker count."""
    r = Router(name="plant")
    route = r.on("sensors/{device_id}/data", handler, qos=1, shared=True, workers=3)
    assert route.subscription == "$share/plant/sensors/+/data"
    assert route.workers == 3 and route.qos == 1
    assert r.on("alerts/{x}", lambda m, x: None).subscription == "alerts/+"


def test_custom_group() -> None:
    """group= names the shared-subscription group."""
    route = Router().on("a/{x}", handler, shared=True, group="g1")
    assert route.subscription == "$share/g1/a/+"


def test_params_passed_to_declared_arguments() -> None:
    """Only parameters the handler declares are passed; **kwargs receives all."""
    r = Router()
    a = r.on("a/{x}/{y}", lambda m, x: None)
    b = r.on("b/{x}/{y}", lambda m, **kw: None)
    c = r.on("c/{x}/{y}", handler)
    assert a.passes == ("x",) and b.passes == ("x", "y") and c.passes == ()


@pytest.mark.parametrize(
    ("pattern", "func", "exc", "fragment"),
    [
        ("a/{message}", lambda message: None, ValueError, "clashes with the message argument"),
        ("a/{x}", lambda m, y: None, TypeError, "requires argument(s) y"),
        ("a/{x}", lambda: None, TypeError, "first positional argument"),
        ("a/{x}", lambda *, x: None, TypeError, "first positional argument"),
        ("a/{x}", 42, TypeError, "must be callable"),
        ("a/{x}", lambda m, y, /: None, TypeError, "positional-only"),
    ],
)
def test_bad_handlers(pattern: str, func: Any, exc: type[Exception], fragment: str) -> None:
    """Handlers that cannot be called with the route's parameters are refused at once."""
    with pytest.raises(exc) as info:
        Router().on(pattern, func)
    assert fragment in str(info.value) and pattern in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"qos": 3}, "qos must be 0, 1 or 2"),
        ({"qos": True}, "qos must be 0, 1 or 2"),
        ({"workers": 0}, "positive int"),
        ({"workers": 2}, "needs shared=True"),
        ({"shared": True, "workers": 1.5}, "positive int"),
        ({"group": "g"}, "only meaningful with shared=True"),
        ({"shared": True, "group": "a/b"}, "group must be"),
        ({"shared": 1}, "True or False"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], fragment: str) -> None:
    """Bad route options name the route and the fix."""
    with pytest.raises((ValueError, TypeError), match=r"route 'a/\{x\}'") as info:
        Router().on("a/{x}", handler, **kwargs)
    assert fragment in str(info.value)


def test_duplicate_filter_refused() -> None:
    """Two routes with the same MQTT filter are refused (precedence would be arbitrary)."""
    r = Router()
    r.on("a/{x}", handler)
    with pytest.raises(ValueError, match="same MQTT filter 'a/\\+'"):
        r.on("a/+", handler)


def test_bad_router_name_and_middleware() -> None:
    """Router names and middleware are checked."""
    with pytest.raises(ValueError, match="router name"):
        Router(name="a b")
    with pytest.raises(TypeError, match="instantiate it"):
        Router(middleware=[Retries])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="middleware must be"):
        Router().on("a", handler, middleware=[object()])  # type: ignore[list-item]


def test_groups_prefix_and_middleware_order() -> None:
    """Groups prefix patterns and put their middleware after the router's, before the route's."""
    a, b, c = Middleware(), TimeLimit(1), Middleware()
    r = Router(middleware=[a])
    g = r.group("plant/{site}", middleware=[b])
    inner = g.group("line", middleware=[])
    route = inner.on("{machine}/temp", lambda m, site, machine: None, middleware=[c])
    assert route.pattern.source == "plant/{site}/line/{machine}/temp"
    assert route.middleware == (a, b, c)
    assert route.passes == ("site", "machine")


@pytest.mark.parametrize("prefix", ["", "a/", "a/#", "a/{x:#}"])
def test_bad_group_prefix(prefix: str) -> None:
    """A group prefix must be whole levels without a multi-level wildcard."""
    with pytest.raises(ValueError):
        Router().group(prefix)


def test_decorator_and_resolve() -> None:
    """@router.route registers; resolve() applies the documented precedence."""
    r = Router()

    @r.route("a/{x}")
    def one(message: Any, x: str) -> None: ...

    r.on("a/b", handler)
    r.on("#", handler)
    found = r.resolve("a/q")
    assert found is not None and found[0].handler is one and found[1] == {"x": "q"}
    found = r.resolve("a/b")
    assert found is not None and found[0].pattern.source == "a/b"
    found = r.resolve("z/z")
    assert found is not None and found[0].pattern.source == "#"
    assert Router().resolve("a") is None


def test_lookup_agrees_with_resolve_and_follows_new_routes() -> None:
    """lookup() (the worker's remembered resolve) gives resolve()'s answer, read-only
    parameters, and a route registered later takes precedence at once."""
    r = Router()
    r.on("a/{x}", lambda m, x: None)
    for topic in ("a/q", "a/b", "a/q", "zz"):
        want, got = r.resolve(topic), r.lookup(topic)
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got[0] is want[0] and dict(got[1]) == want[1]
    found = r.lookup("a/q")
    assert found is not None
    with pytest.raises(TypeError):
        found[1]["x"] = "changed"  # type: ignore[index]
    exact = r.on("a/b", handler)
    found = r.lookup("a/b")
    assert found is not None and found[0] is exact and dict(found[1]) == {}


def test_lookup_memory_is_bounded() -> None:
    """Past RESOLVED_TOPICS distinct topics the memory starts afresh (answers stay right)."""
    from fieldmq.router import routes

    r = Router()
    route = r.on("d/{n}", lambda m, n: None)
    for i in range(routes.RESOLVED_TOPICS + 5):
        found = r.lookup(f"d/{i}")
        assert found is not None and found[0] is route and found[1]["n"] == str(i)
    assert len(r._resolved) <= routes.RESOLVED_TOPICS


def test_async_handler_detected() -> None:
    """async def handlers (and callables with an async __call__) are recognised."""

    async def ah(message: Any) -> None: ...

    class Obj:
        async def __call__(self, message: Any) -> None: ...

    r = Router()
    assert r.on("a", ah).is_async
    assert r.on("b", Obj()).is_async
    assert not r.on("c", handler).is_async


def test_default_middleware_is_retries_and_add_middleware() -> None:
    """The default middleware is Retries(); add_middleware must come before routes."""
    r = Router()
    assert [type(m) for m in r.middleware] == [Retries]
    r.add_middleware(TimeLimit(2))
    r.on("a", handler)
    with pytest.raises(RuntimeError, match="before registering routes"):
        r.add_middleware(TimeLimit(2))
    assert "Route('a'" in repr(r.routes[0]) and "Router(name=" in repr(r)
