"""Assembles the handler a worker serves from the config: static files, an app in front of
them, the ``/_h2stream/`` endpoints before both.

The ASGI adapter is imported only when an app is loaded: a worker serving files alone does
not carry it (README "Memory").
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from h2stream.body.compressors import ZstdContexts
from h2stream.body.encoding import EncodingPolicy
from h2stream.config import Config
from h2stream.core.exchange import Handler
from h2stream.handlers.app import App
from h2stream.handlers.static import StaticFiles
from h2stream.handlers.synthetic import PREFIX as BUILTIN_PREFIX
from h2stream.handlers.synthetic import BuiltinEndpoints, with_builtins

if TYPE_CHECKING:
    from h2stream.handlers.asgi.types import AsgiApp


def load_app(spec: str, interface: str = "native") -> App | AsgiApp:
    """Import ``module:attr`` (the current directory is importable, as with uvicorn).

    ``interface``: ``native`` wants an h2stream.App, ``asgi`` an ASGI 3 application, ``auto``
    either (an App is never taken for an ASGI app: it is called with one exchange).
    """
    from h2stream.handlers.asgi import is_asgi_app

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app {spec!r}: expected MODULE:ATTR")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--app {spec!r}: cannot import {module_name}: {exc}") from exc
    if not hasattr(module, attr):
        raise ValueError(f"--app {spec!r}: no attribute {attr!r} in module {module_name!r}")
    app = getattr(module, attr)
    if isinstance(app, App) and interface != "asgi":
        return app
    if interface != "native" and not isinstance(app, App) and is_asgi_app(app):
        return app
    wanted = {
        "native": "an h2stream.App",
        "asgi": "an ASGI 3 application (an async callable taking scope, receive, send)",
        "auto": "an h2stream.App or an ASGI 3 application (async (scope, receive, send))",
    }[interface]
    raise ValueError(f"--app {spec!r}: {attr} is {type(app).__name__}, not {wanted}")


def build_handler(
    config: Config,
    app_spec: str | App | AsgiApp | None,
    serve_root: bool,
    zstd: ZstdContexts | None = None,
) -> Handler:
    """The exchange handler: the directory, an App in front of it, /_h2stream/ before both.

    ``app_spec`` is ``MODULE:ATTR`` or an App or ASGI app already at hand (tests, embedding);
    an ASGI app answers every path (it has no fallback) and brings its lifespan. ``zstd``:
    the worker's zstd contexts (its server's context) for compressed responses to borrow;
    without it the handler has its own.
    """
    policy = EncodingPolicy.from_config(config, zstd)
    handler: Handler | None = (
        StaticFiles(config.root, policy, config.directory_listing, config.small_file_cache)
        if serve_root
        else None
    )
    if app_spec is not None:
        app = load_app(app_spec, config.interface) if isinstance(app_spec, str) else app_spec
        if not isinstance(app, App):
            from h2stream.handlers.asgi import AsgiHandler

            # The /_h2stream/ check rides in the ASGI handler, so the server finds the
            # handler's lifespan on the object it was given.
            builtins = BuiltinEndpoints(config, policy) if config.builtin_endpoints else None
            return AsgiHandler(app, config, builtins, BUILTIN_PREFIX)
        handler = app.bind(config, fallback=handler, policy=policy)
    if config.builtin_endpoints:
        # One startswith per request; everything else goes straight to the handler behind.
        return with_builtins(BuiltinEndpoints(config, policy), handler)
    assert handler is not None
    return handler
