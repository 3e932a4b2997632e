"""``h2stream`` command line: arguments -> Config -> Server. Errors are one readable line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from h2stream import __version__
from h2stream.config import (
    ConfigError,
    OptionSpec,
    flag_of,
    load_config,
    option_fields,
    range_text,
)
from h2stream.handlers.build import build_handler, load_app
from h2stream.runtime.context import WorkerContext
from h2stream.runtime.pidfile import PidFileError, remove_pid_file, write_pid_file
from h2stream.runtime.server import StartupError, run
from h2stream.runtime.tls import TLSError

# Exit codes: 2 for input the operator must change (arguments, options, the config file),
# whichever command read it; 1 for a server that could not start or run.
EXIT_USAGE = 2
EXIT_FAILURE = 1


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, else the
    terminal's, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
        if columns > 0:
            return columns
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's own, sized without shutil: argparse imports shutil (and with it bz2 and
    lzma, 0.3 MiB of a worker at rest) to size a formatter, which it makes for every option
    added (README "Memory")."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("width", _columns() - 2)
        super().__init__(prog, **kwargs)


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line and a hint, not the usage of every option."""

    # The sub-command parsers by name, so an unknown flag is blamed on its command.
    commands: dict[str, argparse.ArgumentParser]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"h2stream: error: {message}\ntry '{self.prog} --help'\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(self, "commands", {}).get(getattr(parsed, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _help(spec: OptionSpec) -> str:
    """The option's help, with the range its value must be in."""
    shown = range_text(spec.parse)
    return f"{spec.help} [{shown}]" if shown else spec.help


def _arg_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per Config option; absent flags stay absent (lower layers then apply)."""
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file of options (CLI > H2STREAM_* env > file)"
    )
    for f, spec in option_fields():
        if spec.positional:
            parser.add_argument(
                f.name, nargs="?", default=argparse.SUPPRESS, help=spec.help, metavar="ROOT"
            )
        elif spec.switch:
            parser.add_argument(
                flag_of(f, spec),
                dest=f.name,
                action="store_const",
                const=not spec.invert,
                default=argparse.SUPPRESS,
                help=spec.help,
            )
        else:
            choices = getattr(spec.parse, "choices", None)
            parser.add_argument(
                flag_of(f, spec),
                dest=f.name,
                type=_arg_type(spec.parse),
                action="append" if spec.repeat else "store",
                default=argparse.SUPPRESS,
                metavar=spec.metavar or ("{" + ",".join(choices) + "}" if choices else None),
                help=_help(spec),
            )


def build_parser() -> Parser:
    parser = Parser(prog="h2stream", description="HTTP/2 server for streaming large data.")
    parser.add_argument("--version", action="version", version=f"h2stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve a directory (and an app) over HTTP/2")
    add_config_options(serve)
    check = commands.add_parser(
        "check-config", help="validate a TOML config file (and its --app) and exit"
    )
    check.add_argument("file", help="the TOML file")
    top = commands.add_parser("top", help="live view of a server's /metrics (see --metrics-bind)")
    from h2stream.observe.top import add_arguments as add_top_arguments

    add_top_arguments(top)
    parser.commands = {"serve": serve, "check-config": check, "top": top}
    return parser


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f, _ in option_fields()}
    values = {name: value for name, value in vars(args).items() if name in names}
    if "binds" in values:
        values["binds"] = tuple(values["binds"])
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "top":
        from h2stream.observe.top import main as top_main

        return top_main(args)
    try:
        config = load_config(cli_values(args), args.config)
    except ConfigError as exc:
        parser.exit(EXIT_USAGE, f"h2stream: error: {exc}\n")
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        # With --app, the directory serves unmatched paths only when ROOT was given.
        serve_root = config.app is None or "root" in cli_values(args)
        if config.workers > 1 or config.supervise:
            from h2stream.runtime.supervisor import ConfigSource, supervise

            return supervise(config, ConfigSource(cli_values(args), args.config, serve_root))
        context = WorkerContext(config)
        handler = build_handler(config, config.app, serve_root, context.zstd)
        if config.pid_file:
            write_pid_file(config.pid_file)
        try:
            return run(config, handler, context)
        finally:
            if config.pid_file:
                remove_pid_file(config.pid_file)
    except (StartupError, TLSError, ValueError, PidFileError) as exc:
        print(f"h2stream: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 0


def check_config(path: str) -> int:
    """What ``serve --config FILE`` would refuse, refused with the same exit code; the app is
    imported too (as gunicorn's --check-config does), since a typo there stops every worker."""
    try:
        config = load_config({}, path, environ={})
    except ConfigError as exc:
        print(f"h2stream: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config.app is not None:
        try:
            load_app(config.app, config.interface)
        except ValueError as exc:
            print(f"h2stream: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    print(f"{path}: ok ({len(config.binds)} listener(s), root {config.root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
