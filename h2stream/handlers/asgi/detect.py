"""Telling an ASGI 3 application from other objects behind ``--app``."""

from __future__ import annotations

import inspect


def is_asgi_app(obj: object) -> bool:
    """An ASGI 3 application: a coroutine function, or an object whose ``__call__`` is one
    (Starlette, FastAPI, Quart, Litestar, Django's ASGIHandler). An ASGI 2 class (called
    with the scope, returning a coroutine function) or a plain function does not pass."""
    if inspect.isclass(obj):
        return False
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - the method itself is inspected
    return call is not None and inspect.iscoroutinefunction(call)
