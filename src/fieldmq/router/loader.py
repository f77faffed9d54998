"""Import ``module:attribute`` and check that it is a :class:`Router`."""

from __future__ import annotations

import importlib

from .routes import Router

__all__ = ["load_router"]


def load_router(target: str) -> Router:
    """``"myapp.routes:router"`` -> the Router; ``"myapp"`` means ``myapp:router``.
    Raises ``ValueError`` naming what is missing (import errors propagate)."""
    if not isinstance(target, str) or not target or target.count(":") > 1:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in (attr or "router").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attr or 'router'!r}") from None
    if callable(obj) and not isinstance(obj, Router):
        obj = obj()
    if not isinstance(obj, Router):
        raise ValueError(f"{target!r} is a {type(obj).__name__}, not a fieldmq.router.Router")
    return obj
