"""``h2stream`` command line: arguments -> Config -> Server. Errors are one readable line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .app import App
from .config import DEFAULT_BIND, Config, parse_bind
from .server import StartupError, run
from .session import Handler
from .static import StaticFiles
from .tls import TLSError

_DEFAULTS = Config()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="h2stream", description="HTTP/2 server for streaming large data."
    )
    parser.add_argument("--version", action="version", version=f"h2stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve a directory over HTTP/2")
    serve.add_argument(
        "root",
        nargs="?",
        default=None,
        help="directory to serve (default: . ; with --app, only when given)",
    )
    serve.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve an h2stream.App; unmatched paths fall through to ROOT when it is given",
    )
    serve.add_argument(
        "--bind",
        action="append",
        metavar="HOST:PORT",
        help=f"listen address, may repeat (default {DEFAULT_BIND}; port 0 picks a free one)",
    )
    serve.add_argument("--certfile", metavar="PEM", help="TLS certificate chain (enables TLS)")
    serve.add_argument("--keyfile", metavar="PEM", help="TLS private key")
    serve.add_argument(
        "--self-signed", action="store_true", help="TLS with a throwaway localhost certificate"
    )
    serve.add_argument(
        "--no-sendfile", action="store_true", help="never zero-copy; use the bounded copy path"
    )
    serve.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    serve.add_argument(
        "--max-concurrent-streams",
        type=_positive_int,
        default=_DEFAULTS.max_concurrent_streams,
        metavar="N",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=_DEFAULTS.graceful_timeout,
        metavar="SECONDS",
        help="how long in-flight streams may finish after SIGTERM/SIGINT (default 10)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error", "critical"),
        type=str.lower,
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Validate what the parser could not; raise ValueError with the user-facing message."""
    root = args.root if args.root is not None else "."
    if not os.path.isdir(root):
        raise ValueError(f"root {root!r} is not a directory")
    binds = tuple(parse_bind(text) for text in (args.bind or [DEFAULT_BIND]))
    if (args.certfile is None) != (args.keyfile is None):
        raise ValueError("--certfile and --keyfile go together")
    if args.self_signed and args.certfile is not None:
        raise ValueError("--self-signed and --certfile exclude each other")
    return Config(
        root=os.path.abspath(root),
        binds=binds,
        certfile=args.certfile,
        keyfile=args.keyfile,
        self_signed=args.self_signed,
        sendfile=not args.no_sendfile,
        loop=args.loop,
        log_level=args.log_level,
        max_concurrent_streams=args.max_concurrent_streams,
        graceful_timeout=args.graceful_timeout,
    )


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


def build_handler(config: Config, app_spec: str | None, serve_root: bool) -> Handler:
    """The session handler: an App (with the directory behind it), or just the directory."""
    static = StaticFiles(config.root) if serve_root else None
    if app_spec is None:
        assert static is not None
        return static  # no routes: no per-request route lookup either
    app = load_app(app_spec)
    if static is not None and app.fallback is None:
        app.fallback = static
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.exit(2, f"h2stream: error: {exc}\n")
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        handler = build_handler(
            config, args.app, serve_root=args.app is None or args.root is not None
        )
        return run(config, handler)
    except (StartupError, TLSError, ValueError) as exc:
        print(f"h2stream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
