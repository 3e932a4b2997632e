"""The one frozen Config: every limit and switch of the server, with its default and its reason.

Each field is also an option. Its metadata gives the CLI flag and help, and the same name is the
key in a TOML file (``--config``) and, upper-cased behind ``H2STREAM_``, an environment
variable. :func:`load_config` merges them: CLI > environment > file > defaults. Unknown keys
are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BIND = "127.0.0.1:8080"
ENV_PREFIX = "H2STREAM_"


class ConfigError(ValueError):
    """A bad option value or file, worded for the operator."""


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(text: str) -> Bind:
    """Parse ``HOST:PORT`` or ``[V6]:PORT``; raise ValueError with a readable message."""
    host: str
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ValueError(f"bad bind {text!r}: expected [IPV6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad bind {text!r}: expected HOST:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad bind {text!r}: port must be 0..65535")
    return Bind(host, int(port_text))


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def parse_size(text: str) -> int:
    """A byte count, with an optional K/M/G/T suffix (powers of 1024): ``64K``, ``10G``."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(cleaned[-1:], 1)
    digits = cleaned[:-1] if scale != 1 else cleaned
    if not digits.isdigit():
        raise ValueError(f"expected a size like 65536, 64K or 10G, got {text!r}")
    return int(digits) * scale


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text.lower()

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """How one Config field is set from the CLI, a file and the environment."""

    help: str
    parse: Callable[[str], Any] = str
    flag: str | None = None  # default: --field-name
    metavar: str | None = None
    repeat: bool = False  # the flag may repeat; the value is a tuple
    switch: bool = False  # a bare flag setting True (or False with ``invert``)
    invert: bool = False
    positional: bool = False


def option(default: Any, help: str, **spec: Any) -> Any:
    if isinstance(default, tuple | list):
        frozen = tuple(default)
        return field(default_factory=lambda: frozen, metadata={"option": OptionSpec(help, **spec)})
    return field(default=default, metadata={"option": OptionSpec(help, **spec)})


@dataclass(frozen=True, slots=True)
class Config:
    root: str = option(".", "directory to serve (default: the current one)", positional=True)
    binds: tuple[Bind, ...] = option(
        (parse_bind(DEFAULT_BIND),),
        f"listen address HOST:PORT, may repeat (default {DEFAULT_BIND}; port 0 picks one)",
        parse=parse_bind,
        flag="--bind",
        metavar="HOST:PORT",
        repeat=True,
    )
    app: str | None = option(
        None,
        "serve an h2stream.App MODULE:ATTR; unmatched paths fall through to ROOT if given",
        metavar="MODULE:ATTR",
    )
    certfile: str | None = option(None, "TLS certificate chain (enables TLS)", metavar="PEM")
    keyfile: str | None = option(None, "TLS private key", metavar="PEM")
    self_signed: bool = option(
        False, "TLS with a throwaway localhost certificate", switch=True, parse=parse_bool
    )
    # Zero-copy bodies on h2c; off forces the bounded copy path (always used on TLS).
    sendfile: bool = option(
        True,
        "never zero-copy; use the bounded copy path",
        flag="--no-sendfile",
        switch=True,
        invert=True,
        parse=parse_bool,
    )
    loop: str = option("auto", "event loop", parse=_choice("auto", "uvloop", "asyncio"))
    log_level: str = option(
        "info", "log level", parse=_choice("debug", "info", "warning", "error", "critical")
    )

    # HTTP/2 settings we advertise. 128 concurrent streams is what nginx and h2o choose.
    max_concurrent_streams: int = option(
        128, "SETTINGS_MAX_CONCURRENT_STREAMS", parse=parse_positive_int, metavar="N"
    )
    # Caps a request's decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE): 64 KiB as h2o.
    max_header_list_size: int = option(
        65536, "SETTINGS_MAX_HEADER_LIST_SIZE in bytes", parse=parse_size, metavar="BYTES"
    )
    # Initial stream window for request bodies: small, so an upload cannot fill memory.
    initial_window_size: int = option(
        65535, "SETTINGS_INITIAL_WINDOW_SIZE for request bodies", parse=parse_size, metavar="BYTES"
    )
    # The largest frame we accept; our DATA frames follow the peer's value, not this one.
    max_frame_size: int = option(
        16384, "SETTINGS_MAX_FRAME_SIZE we accept", parse=parse_size, metavar="BYTES"
    )
    # Our connection-level receive window: uploads on many streams share it.
    connection_window_size: int = option(
        1 << 24, "connection-level receive window", parse=parse_size, metavar="BYTES"
    )
    # Largest DATA frame we send even if the peer allows more (RFC 9113 allows up to 16 MiB):
    # bounds the bytes one frame may need on the copy path.
    max_send_frame_size: int = option(
        1 << 18, "largest DATA frame we send", parse=parse_size, metavar="BYTES"
    )
    # Payload bytes one stream may send per scheduler turn before the next ready stream goes:
    # the fairness quantum between streams of one connection.
    stream_turn_bytes: int = option(
        1 << 16, "fairness quantum between streams", parse=parse_size, metavar="BYTES"
    )
    # Bytes one write turn may send before yielding to the loop, so reads (WINDOW_UPDATE,
    # new requests) and other connections get their turn.
    write_quantum: int = option(
        4 << 20, "bytes per connection write turn", parse=parse_size, metavar="BYTES"
    )
    # Seconds in-flight streams get to finish after SIGTERM/SIGINT before connections close.
    graceful_timeout: float = option(
        10.0,
        "how long in-flight streams may finish after SIGTERM/SIGINT",
        parse=parse_seconds,
        metavar="SECONDS",
    )

    # -- streaming, compression, uploads (issue 4) --------------------------------------

    # -- observability (issue 5) ----------------------------------------------------------

    # -- hardening limits (issue 6) -------------------------------------------------------

    # -- operations (issue 7) -------------------------------------------------------------

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def tls(self) -> bool:
        return self.self_signed or self.certfile is not None


def option_fields() -> list[tuple[dataclasses.Field[Any], OptionSpec]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(Config) if "option" in f.metadata]


def flag_of(f: dataclasses.Field[Any], spec: OptionSpec) -> str:
    return spec.flag or "--" + f.name.replace("_", "-")


def _coerce(name: str, spec: OptionSpec, value: Any, source: str) -> Any:
    """A value from a file (typed) or the environment (text) into the field's type."""
    try:
        if spec.repeat:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple):
                raise ValueError("expected a list")
            return tuple(spec.parse(str(item).strip()) for item in items)
        if isinstance(value, bool):
            if spec.parse is not parse_bool:
                raise ValueError(f"expected a value, got {value!r}")
            return value
        if isinstance(value, int | float | str):
            return spec.parse(str(value))
        raise ValueError(f"unsupported value {value!r}")
    except ValueError as exc:
        raise ConfigError(f"{source}: {name}: {exc}") from None


def read_config_file(path: str) -> dict[str, Any]:
    """Option values from a TOML file; unknown keys are errors that name the key."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    known = {f.name: spec for f, spec in option_fields()}
    aliases = {"bind": "binds"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key, key.replace("-", "_"))
        spec = known.get(name)
        if spec is None:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        values[name] = _coerce(key, spec, value, f"config file {path}")
    return values


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {f.name: spec for f, spec in option_fields()}
    aliases = {"BIND": "binds"}
    values: dict[str, Any] = {}
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        suffix = key[len(ENV_PREFIX) :]
        name = aliases.get(suffix, suffix.lower())
        spec = known.get(name)
        if spec is None:
            raise ConfigError(f"environment: unknown variable {key}")
        values[name] = _coerce(key, spec, text, "environment")
    return values


def validate(config: Config) -> Config:
    if not os.path.isdir(config.root):
        raise ConfigError(f"root {config.root!r} is not a directory")
    if (config.certfile is None) != (config.keyfile is None):
        raise ConfigError("--certfile and --keyfile go together")
    if config.self_signed and config.certfile is not None:
        raise ConfigError("--self-signed and --certfile exclude each other")
    if not config.binds:
        raise ConfigError("no --bind address")
    return config.replace(root=os.path.abspath(config.root))


def load_config(
    cli: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge defaults < file < environment < CLI, then validate."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    values: dict[str, Any] = {}
    if config_file:
        values.update(read_config_file(config_file))
    values.update(read_environment(environ))
    values.update(cli)
    return validate(Config(**values))
