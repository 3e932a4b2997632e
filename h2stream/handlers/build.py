"""Assembles the handler a worker serves from the config: static files, an app in front of
them, the ``/_h2stream/`` endpoints before both."""

from __future__ import annotations

import importlib
import os
import sys

from h2stream.body.compressors import ZstdContexts
from h2stream.body.encoding import EncodingPolicy
from h2stream.config import Config
from h2stream.core.exchange import Handler
from h2stream.handlers.app import App
from h2stream.handlers.static import StaticFiles
from h2stream.handlers.synthetic import BuiltinEndpoints, with_builtins


def load_app(spec: str) -> App:
    """Import ``module:attr`` (the current directory is importable, as with uvicorn)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app {spec!r}: expected MODULE:ATTR")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--app {spec!r}: cannot import {module_name}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ValueError(f"--app {spec!r}: {attr} is not an h2stream.App")
    return app


def build_handler(
    config: Config,
    app_spec: str | App | None,
    serve_root: bool,
    zstd: ZstdContexts | None = None,
) -> Handler:
    """The exchange handler: the directory, an App in front of it, /_h2stream/ before both.

    ``app_spec`` is ``MODULE:ATTR`` or an App already at hand (tests, embedding). ``zstd``:
    the worker's zstd contexts (its server's context) for compressed responses to borrow;
    without it the handler has its own.
    """
    policy = EncodingPolicy.from_config(config, zstd)
    handler: Handler | None = StaticFiles(config.root, policy) if serve_root else None
    if app_spec is not None:
        app = app_spec if isinstance(app_spec, App) else load_app(app_spec)
        handler = app.bind(config, fallback=handler, policy=policy)
    if config.builtin_endpoints:
        # One startswith per request; everything else goes straight to the handler behind.
        return with_builtins(BuiltinEndpoints(config, policy), handler)
    assert handler is not None
    return handler
