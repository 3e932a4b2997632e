"""The one frozen Config: every limit and switch of the server, with its default and its reason.

Each field is also an option. Its metadata gives the CLI flag and help, and the same name is the
key in a TOML file (``--config``) and, upper-cased behind ``H2STREAM_``, an environment
variable. :func:`load_config` merges them: CLI > environment > file > defaults. Unknown keys
are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

DEFAULT_BIND = "127.0.0.1:8080"
ENV_PREFIX = "H2STREAM_"


class ConfigError(ValueError):
    """A bad option value or file, worded for the operator."""


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int
    # A Unix domain socket's path instead (``unix:/run/h2stream.sock``; ``@name``: abstract).
    path: str | None = None
    # This listener expects a PROXY protocol header (``HOST:PORT proxy-protocol``, as nginx's
    # ``listen ... proxy_protocol``); ``--proxy-protocol`` sets it for every listener.
    proxy: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            address = f"unix:{self.path}"
        elif ":" in self.host:
            address = f"[{self.host}]:{self.port}"
        else:
            address = f"{self.host}:{self.port}"
        return address + (f" {PROXY_BIND_OPTION}" if self.proxy else "")


def proxied(config: Config, bind: Bind | None) -> bool:
    """Whether the listener of ``bind`` (None: one handed over by systemd) expects a PROXY
    header: its own option, or --proxy-protocol for every listener."""
    return config.proxy_protocol or (bind is not None and bind.proxy)


# The one option a --bind value may carry after its address.
PROXY_BIND_OPTION = "proxy-protocol"


_Parser = TypeVar("_Parser", bound=Callable[[str], Any])


def _accepts(what: str) -> Callable[[_Parser], _Parser]:
    """Mark a parser of text (an address, a path, a media type) with what it accepts: every
    option's parser checks its value (tests/unit/test_config_ranges.py holds each field to it)."""

    def mark(parse: _Parser) -> _Parser:
        parse.accepts = what  # type: ignore[attr-defined]
        return parse

    return mark


@_accepts(
    "HOST:PORT, [IPV6]:PORT (port 0..65535) or unix:PATH, optionally followed by proxy-protocol"
)
def parse_bind(text: str) -> Bind:
    """Parse ``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``, each optionally followed by
    ``proxy-protocol``; raise ValueError with a readable message."""
    words = text.split()
    if not words:
        raise ValueError(f"bad bind {text!r}: expected HOST:PORT")
    address, options = words[0], words[1:]
    unknown = [o for o in options if o.replace("_", "-") != PROXY_BIND_OPTION]
    if unknown:
        raise ValueError(f"bad bind {text!r}: unknown option {unknown[0]!r} (proxy-protocol?)")
    bind = _parse_address(address)
    return dataclasses.replace(bind, proxy=True) if options else bind


def _parse_address(text: str) -> Bind:
    if text.startswith("unix:"):
        return _parse_unix_bind(text)
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


# sun_path holds 108 bytes with its terminating NUL.
UNIX_PATH_MAX = 107


def _parse_unix_bind(text: str) -> Bind:
    """``unix:PATH`` (made absolute, so every process means the same file) or ``unix:@NAME``
    (Linux's abstract namespace: no file, no mode, nothing left behind)."""
    path = text[len("unix:") :]
    if not path or path == "@":
        raise ValueError(f"bad bind {text!r}: expected unix:/PATH or unix:@NAME")
    if not path.startswith("@"):
        path = os.path.abspath(path)
    if len(path.encode()) > UNIX_PATH_MAX:
        raise ValueError(f"bad bind {text!r}: a socket path has at most {UNIX_PATH_MAX} bytes")
    return Bind("", 0, path)


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _int_range(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``low..high`` (0 turns a limit off where ``low`` is 0)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}, got {value}")
        return value

    return _ranged(parse, low, high)


def _ranged(
    parse: Callable[[str], Any], low: float, high: float, unit: str = ""
) -> Callable[[str], Any]:
    """Mark ``parse`` with the range it checks, so the range can be shown and tested."""
    parse.low = low  # type: ignore[attr-defined]
    parse.high = high  # type: ignore[attr-defined]
    parse.unit = unit  # type: ignore[attr-defined]
    return parse


def value_text(parse: Callable[[str], Any], value: float) -> str:
    """A value as error messages show it and the parser reads it back: 16384, 0.5, and file
    modes in octal (0660) for a parser ranged with the unit ``octal``."""
    unit = getattr(parse, "unit", "")
    if unit == "octal":
        return f"{'-' if value < 0 else ''}0{abs(int(value)):o}" if value else "0"
    return f"{value:g}" if isinstance(value, float) or unit == "seconds" else str(value)


def _show(parse: Callable[[str], Any], value: float) -> str:
    """A bound as an operator would type it: ``16K`` rather than 16384 where exact."""
    if getattr(parse, "unit", "") == "bytes":
        for suffix, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if value >= scale and value % scale == 0:
                return f"{int(value) // scale}{suffix}"
    return value_text(parse, value)


def range_text(parse: Callable[[str], Any]) -> str | None:
    """``16K..16777215 bytes``: the range a ranged parser checks (None for other parsers)."""
    if not hasattr(parse, "low"):
        return None
    unit = getattr(parse, "unit", "")
    shown = f"{_show(parse, parse.low)}..{_show(parse, parse.high)}"  # type: ignore[attr-defined]
    return f"{shown} {unit}" if unit in ("bytes", "seconds") else shown


def parse_count(text: str) -> int:
    """A whole number, 0 allowed (for limits where 0 means off or automatic)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
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


@_accepts("true or false (also 1/0, yes/no, on/off)")
def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


HTTP_VERSIONS = ("1.1", "2")


@_accepts("1.1,2, 2 or 1.1")
def parse_http_versions(text: str) -> str:
    """``1.1,2``, ``2`` or ``1.1`` (HTTP/1.0 comes with 1.1), normalised to that order (a
    string, so it crosses to worker processes like any other option)."""
    names = {part.strip().lower().removeprefix("http/") for part in text.split(",")}
    names.discard("")
    unknown = names - set(HTTP_VERSIONS)
    if unknown or not names:
        raise ValueError(f"expected 1.1, 2 or 1.1,2, got {text!r}")
    return ",".join(v for v in HTTP_VERSIONS if v in names)


def _size_range(low: int, high: int) -> Callable[[str], int]:
    """A byte count in ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = parse_size(text)
        except ValueError:
            raise ValueError(
                f"expected a size {low}..{high} bytes (K, M, G suffixes allowed), got {text!r}"
            ) from None
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high} bytes, got {value}")
        return value

    return _ranged(parse, low, high, "bytes")


def _seconds_range(low: float, high: float) -> Callable[[str], float]:
    """Seconds in ``low..high`` (0 turns a timeout off when ``low`` is 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected {low:g}..{high:g} seconds, got {text!r}") from None
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"expected {low:g}..{high:g} seconds, got {value:g}")
        return value

    return _ranged(parse, low, high, "seconds")


# -- edge options (PROXY protocol, Unix sockets, per-client limits) ------------------------


def parse_cidr(text: str) -> str:
    """A network (``10.0.0.0/8``, ``2001:db8::/32``, or one address), normalised."""
    import ipaddress  # here, not at import: only this option needs it

    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValueError(f"expected a network such as 10.0.0.0/8, got {text!r}") from None


parse_cidr.accepts = "a network in CIDR notation (10.0.0.0/8, 2001:db8::/32) or an address"  # type: ignore[attr-defined]


def parse_mode(text: str) -> int:
    """File permissions in octal (``660``, ``0660``, ``0o660``), 0..0777."""
    try:
        value = int(text.strip().lower().removeprefix("0o"), 8)
    except ValueError:
        raise ValueError(f"expected an octal mode like 0660, got {text!r}") from None
    if not 0 <= value <= 0o777:
        raise ValueError(f"expected an octal mode 0..0777, got {text!r}")
    return value


_ranged(parse_mode, 0, 0o777, "octal")


def parse_owner(text: str) -> str:
    """``USER``, ``USER:GROUP`` or ``:GROUP`` (names or numeric ids; looked up at bind)."""
    user, _, group = text.partition(":")
    names = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")
    if not (user or group) or any(p and not names.fullmatch(p) for p in (user, group)):
        raise ValueError(f"expected USER, USER:GROUP or :GROUP, got {text!r}")
    return text


parse_owner.accepts = "USER, USER:GROUP or :GROUP (names or numeric ids)"  # type: ignore[attr-defined]


def _rate_range(low: float, high: float) -> Callable[[str], float]:
    """Events per second in ``low..high`` (fractions allowed: 0.5 is one every 2 s)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a rate per second, got {text!r}") from None
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"expected {low:g}..{high:g} per second, got {value:g}")
        return value

    return _ranged(parse, low, high)


MAX_WORKERS = 1024


def parse_workers(text: str) -> int:
    """A worker count, or ``auto``: the cores this process may run on (affinity, cpusets)."""
    if text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return _worker_count(text)


_worker_count = _int_range(1, MAX_WORKERS)
_ranged(parse_workers, 1, MAX_WORKERS)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text.lower()

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


# Bounds from RFC 9113: SETTINGS_MAX_FRAME_SIZE (section 6.5.2) and flow-control windows
# (section 6.9.1). Client stream ids are the odd numbers below 2^31, so a connection carries
# at most 2^30 requests.
MIN_FRAME_SIZE = 1 << 14
MAX_FRAME_SIZE = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1
MAX_STREAMS_PER_CONNECTION = 1 << 30
# Timeouts: 0 turns one off; nothing an operator means waits longer than a day.
MAX_TIMEOUT = 86400.0
# Per-second flood budgets: a billion is "never", and still a number the counters hold.
MAX_RATE = 1_000_000_000


@_accepts("a path")
def parse_path(text: str) -> str:
    """A file or directory name; whether it exists is checked once all options are merged
    (a relative one in a config file is taken from the file's directory first)."""
    if not text or "\0" in text:
        raise ValueError(f"expected a path, got {text!r}")
    return text


@_accepts("MODULE:ATTR, such as myapp:app or pkg.web:application")
def parse_app_spec(text: str) -> str:
    """The syntax of ``--app``; whether the module imports is checked when it is loaded."""
    module, sep, attr = text.partition(":")
    names = module.split(".")
    if not sep or not all(name.isidentifier() for name in names) or not attr.isidentifier():
        raise ValueError(f"expected MODULE:ATTR, such as myapp:app, got {text!r}")
    return text


@_accepts("a URL path prefix such as /api, or nothing")
def parse_root_path(text: str) -> str:
    """ASGI root_path: empty or ``/prefix``; a trailing slash is dropped (the request path
    that follows it starts with one)."""
    if (text and not text.startswith("/")) or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"expected a path prefix such as /api, got {text!r}")
    return text.rstrip("/")


# RFC 6838 restricted names; the subtype may be *, or *+suffix (application/*+json).
_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]*"
_MEDIA_RANGE = re.compile(rf"{_NAME}/(\*|\*\+{_NAME}|{_NAME})")


@_accepts("a media type such as text/html, or a pattern: text/* or application/*+json")
def parse_media_type(text: str) -> str:
    lowered = text.strip().lower()
    if not _MEDIA_RANGE.fullmatch(lowered):
        raise ValueError(f"expected a media type such as text/html or text/*, got {text!r}")
    return lowered


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
    root: str = option(
        ".", "directory to serve (default: the current one)", positional=True, parse=parse_path
    )
    binds: tuple[Bind, ...] = option(
        (parse_bind(DEFAULT_BIND),),
        f"listen address HOST:PORT or unix:PATH, may repeat (default {DEFAULT_BIND}; port 0 "
        "picks one); 'HOST:PORT proxy-protocol' expects PROXY headers on that listener",
        parse=parse_bind,
        flag="--bind",
        metavar="HOST:PORT",
        repeat=True,
    )
    app: str | None = option(
        None,
        "serve an h2stream.App (unmatched paths fall through to ROOT if given) or an ASGI 3 "
        "app MODULE:ATTR",
        metavar="MODULE:ATTR",
        parse=parse_app_spec,
    )
    # -- ASGI applications --------------------------------------------------------------
    # auto tells an h2stream.App from an ASGI 3 callable; forcing one gives a clear error
    # instead of a guess when an object could pass for either.
    interface: str = option(
        "auto",
        "what --app is: auto detects an h2stream.App or an ASGI 3 application",
        parse=_choice("auto", "asgi", "native"),
    )
    # auto runs the lifespan protocol and carries on without it if the app does not speak
    # it (as uvicorn does); on makes any lifespan error fatal; off never sends it.
    lifespan: str = option(
        "auto", "ASGI lifespan startup/shutdown", parse=_choice("auto", "on", "off")
    )
    # Behind a proxy that strips a prefix, the app still builds its URLs with it.
    root_path: str = option(
        "",
        "ASGI root_path: the prefix the app is mounted at",
        metavar="PATH",
        parse=parse_root_path,
    )
    certfile: str | None = option(
        None, "TLS certificate chain (enables TLS)", metavar="PEM", parse=parse_path
    )
    keyfile: str | None = option(None, "TLS private key", metavar="PEM", parse=parse_path)
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
    # Zero-copy costs two syscalls and a TCP push per DATA frame, the copy path one preadv per
    # run and one write per run (or per frame when the window cut the run short) plus copying:
    # below about 20 KiB frames the copy wins (README "Zero-copy or copy" has the figures).
    zero_copy_min_frame: int = option(
        20480,
        "on h2c, DATA frames smaller than this go by the copy path; 0 = always zero-copy",
        parse=_size_range(0, MAX_FRAME_SIZE),
        metavar="BYTES",
    )
    # While a worker's only connection waits for its peer's WINDOW_UPDATE, poll the socket
    # this long before sleeping in the event loop: waking a halted vCPU costs more than the
    # wait on loopback or a LAN (busypoll.py; README "Flow control and latency").
    busy_poll_us: int = option(
        50,
        "microseconds to poll for a peer's credit before sleeping (TLS peeks); 0 = never",
        parse=_int_range(0, 100_000),
        metavar="MICROSECONDS",
    )
    # Collect the youngest generation every this many allocations once listening, after
    # freezing what startup made (runtime/gcpolicy.py); Python's own 700 cost raw ASGI B-1k
    # about a tenth of its CPU.
    gc_threshold: int = option(
        20_000,
        "allocations between collections of the youngest generation once serving; "
        "0 = Python's default",
        parse=_int_range(0, 10_000_000),
        metavar="N",
    )
    loop: str = option("auto", "event loop", parse=_choice("auto", "uvloop", "asyncio"))
    log_level: str = option(
        "info", "log level", parse=_choice("debug", "info", "warning", "error", "critical")
    )

    # HTTP/2 settings we advertise. 128 concurrent streams is what nginx and h2o choose.
    max_concurrent_streams: int = option(
        128, "SETTINGS_MAX_CONCURRENT_STREAMS", parse=_int_range(1, 65_536), metavar="N"
    )
    # Caps a request's decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE): 64 KiB as h2o.
    max_header_list_size: int = option(
        65536,
        "SETTINGS_MAX_HEADER_LIST_SIZE in bytes",
        parse=_size_range(4096, 1 << 20),
        metavar="BYTES",
    )
    # Initial stream window for request bodies: small, so an upload cannot fill memory.
    initial_window_size: int = option(
        65535,
        "SETTINGS_INITIAL_WINDOW_SIZE for request bodies",
        parse=_size_range(1, MAX_WINDOW),
        metavar="BYTES",
    )
    # The largest frame we accept; our DATA frames follow the peer's value, not this one.
    max_frame_size: int = option(
        16384,
        "SETTINGS_MAX_FRAME_SIZE we accept",
        parse=_size_range(MIN_FRAME_SIZE, MAX_FRAME_SIZE),
        metavar="BYTES",
    )
    # Our connection-level receive window: uploads on many streams share it.
    connection_window_size: int = option(
        1 << 24,
        "connection-level receive window",
        parse=_size_range(65_535, MAX_WINDOW),
        metavar="BYTES",
    )
    # Largest DATA frame we send even if the peer allows more (RFC 9113 allows up to 16 MiB):
    # bounds the bytes one frame may need on the copy path.
    max_send_frame_size: int = option(
        1 << 18,
        "largest DATA frame we send",
        parse=_size_range(1024, MAX_FRAME_SIZE),
        metavar="BYTES",
    )
    # Payload bytes one stream may send per scheduler turn before the next ready stream goes:
    # the fairness quantum between streams of one connection.
    stream_turn_bytes: int = option(
        1 << 16,
        "fairness quantum between streams",
        parse=_size_range(1024, 1 << 30),
        metavar="BYTES",
    )
    # Bytes one write turn may send before yielding to the loop, so reads (WINDOW_UPDATE,
    # new requests) and other connections get their turn.
    write_quantum: int = option(
        4 << 20,
        "bytes per connection write turn",
        parse=_size_range(16384, 1 << 30),
        metavar="BYTES",
    )
    # Seconds in-flight streams get to finish after SIGTERM/SIGINT before connections close.
    graceful_timeout: float = option(
        10.0,
        "how long in-flight streams may finish after SIGTERM/SIGINT",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )

    # -- streaming, compression, uploads --------------------------------------------
    # /_h2stream/bytes/N, /_h2stream/sink and /_h2stream/ndjson (see synthetic.py).
    builtin_endpoints: bool = option(
        True,
        "turn off the /_h2stream/ benchmark endpoints",
        flag="--no-builtin-endpoints",
        switch=True,
        invert=True,
        parse=parse_bool,
    )
    # Bodies are streamed under flow control, so this bounds how long one upload may go on,
    # not memory (a handler holds at most one stream window unless it buffers with body()).
    # 1 GiB lets h2load -d upload benchmarks run with large files.
    max_request_body: int = option(
        1 << 30,
        "largest request body; larger gets 413",
        parse=_size_range(0, 1 << 40),
        metavar="BYTES",
    )
    compression: bool = option(
        True,
        "never compress responses (precompressed siblings are not served either)",
        flag="--no-compression",
        switch=True,
        invert=True,
        parse=parse_bool,
    )
    # Chosen for throughput (README "The application API", measured on NDJSON): zstd level 1
    # compressed 1.5x as much per CPU-second as level 3 at the same ratio; gzip level 1 2.3x
    # level 6 for a 15% larger body (nginx's default is 1 too).
    zstd_level: int = option(1, "zstd compression level", parse=_int_range(1, 19), metavar="N")
    gzip_level: int = option(
        1, "gzip (fallback) compression level", parse=_int_range(1, 9), metavar="N"
    )
    # A zstd context holds about 0.5 MiB; compressing is CPU work on the worker's one thread,
    # so a few contexts keep it busy and more only cost memory (compressors.py, measured).
    max_zstd_contexts: int = option(
        4,
        "zstd streams compressing at once per worker (others wait their turn)",
        parse=_int_range(1, 256),
        metavar="N",
    )
    # Below ~1 KiB the saving is a few hundred bytes at most, less than the CPU it costs.
    compress_min_size: int = option(
        1024,
        "smallest body of known length that is compressed",
        parse=_size_range(0, 1 << 30),
        metavar="BYTES",
    )
    compress_types: tuple[str, ...] = option(
        (
            "text/*",
            "application/json",
            "application/*+json",
            "application/x-ndjson",
            "application/javascript",
            "application/xml",
            "application/*+xml",
            "image/svg+xml",
            "application/wasm",
        ),
        "compressible media type (may repeat; replaces the default list; text/* and "
        "application/*+json patterns allowed)",
        flag="--compress-type",
        metavar="TYPE",
        repeat=True,
        parse=parse_media_type,
    )

    # -- observability ----------------------------------------------------------------
    # A separate plain-HTTP/1.1 listener for /metrics, /healthz and /readyz; off by default.
    metrics_bind: Bind | None = option(
        None,
        "serve /metrics (Prometheus), /healthz and /readyz over HTTP/1.1 on HOST:PORT",
        parse=parse_bind,
        metavar="HOST:PORT",
    )
    # Off by default: benchmarks should not pay for a line per stream.
    access_log: str | None = option(
        None,
        "write an access log line per stream to PATH (- for stdout)",
        metavar="PATH|-",
        parse=parse_path,
    )
    access_log_format: str = option(
        "combined", "access log line format", parse=_choice("combined", "json")
    )

    # -- directory listing --------------------------------------------------------------
    # Off by default, as in nginx and h2o: a listing publishes every name in ROOT, which an
    # operator should choose. Hidden names and symlinks leading out of ROOT are never listed.
    directory_listing: bool = option(
        False,
        "list a directory that has no index.html (HTML, or JSON for accept: application/json)",
        switch=True,
        parse=parse_bool,
    )
    # Files up to 64 KiB served from memory, revalidated by one lstat per read (an open,
    # fstat, read and close saved per request); 0 turns it off. nginx's open_file_cache
    # keeps fds and metadata, not content; h2o has none.
    small_file_cache: int = option(
        1 << 20,
        "bytes of small files (up to 64 KiB each) kept in memory, 0 for none",
        parse=_size_range(0, 1 << 30),
        metavar="SIZE",
    )

    # -- hardening limits -------------------------------------------------------------
    # Each limit below fires into STATS.limit_events under its kind (see limits.py, README).
    # Timeouts: 0 turns one off. They are checked by one timer per worker (timeouts.py), so
    # they fire within a quarter of the smallest timeout (at most a second) after expiry.
    # Slowloris before HTTP/2: the TLS handshake, and then the connection preface (or an
    # h2c Upgrade request head), must arrive within this; h2o's idle timeout is 10 s.
    preface_timeout: float = option(
        10.0,
        "seconds for the TLS handshake and the client preface",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )
    # Slowloris in HTTP/2: a header block (HEADERS + CONTINUATION) left unfinished this long
    # ends the connection with GOAWAY(ENHANCE_YOUR_CALM) (nginx: client_header_timeout 60 s).
    header_timeout: float = option(
        10.0,
        "seconds to finish a header block once begun",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )
    # A connection with no open stream and no new request this long gets GOAWAY(NO_ERROR);
    # PINGs do not count as activity (nginx keepalive_timeout 75 s, h2o 10 s).
    idle_timeout: float = option(
        60.0,
        "close connections idle this long (GOAWAY NO_ERROR)",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )
    # Zero-window and slow-read holds (CVE-2019-9511/9517 family): a stream parked on a zero
    # window this long is reset with CANCEL (the peer broke no rule; we give up the response);
    # a connection whose output does not move this long (unread socket, or no connection
    # window) is closed. nginx send_timeout is 60 s and closes the connection.
    send_timeout: float = option(
        60.0,
        "seconds a response may wait for the peer's window or reads",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )
    # Lifetime cap: GOAWAY(NO_ERROR) after this many streams, so long-lived connections rotate
    # (and h2's closed-stream table stays small). nginx keepalive_requests is 1000; h2load
    # benchmarks run 20,000 per connection, so ours is higher. 0: no cap.
    max_requests_per_connection: int = option(
        100_000,
        "streams per connection before GOAWAY rotates it (0: no cap)",
        parse=_int_range(0, MAX_STREAMS_PER_CONNECTION),
        metavar="N",
    )
    # Connections one worker holds at once; more are answered SETTINGS + GOAWAY(NO_ERROR) and
    # closed at once, never an EMFILE. 0: automatic, (RLIMIT_NOFILE - 64) / 4 (the soft limit
    # is raised to the hard one first), which also bounds any explicit value. The fds left
    # after two per connection bound the worker's open streams (each may hold a file): past
    # that a stream is refused (REFUSED_STREAM, kind "fd_budget"). See limits.WorkerBudget.
    max_connections: int = option(
        0,
        "connections per worker (0: from the fd limit)",
        parse=_int_range(0, 1 << 20),
        metavar="N",
    )
    # Bytes queued in the transport for a peer that does not read. By design at most about
    # 768 KiB is ever queued (a 256 KiB flush plus one 256 KiB frame plus the ACKs of one
    # read); over this the connection is aborted (a GOAWAY could not be delivered anyway).
    max_connection_buffer: int = option(
        4 << 20,
        "bytes queued for an unread socket before abort",
        parse=_size_range(64 << 10, 1 << 30),
        metavar="BYTES",
    )
    # CONTINUATION floods and HPACK: a header block's raw size and frame count while it is
    # collected (the decoded size is max_header_list_size). nginx caps the decoded list at
    # 32 KiB (large_client_header_buffers 4 8k), h2o the raw block at 417,792 bytes.
    max_header_block_size: int = option(
        65536, "raw bytes of one header block", parse=_size_range(1024, 1 << 24), metavar="BYTES"
    )
    max_header_block_frames: int = option(
        16,
        "frames (HEADERS + CONTINUATION) in one header block",
        parse=_int_range(1, 1024),
        metavar="N",
    )
    # Control-frame floods (CVE-2019-9512/9515/9518): frames per second per connection that
    # cost work but carry no request; one more within the second is GOAWAY(ENHANCE_YOUR_CALM).
    # Real clients send a handful per connection.
    max_pings_per_second: int = option(
        100, "PING frames per second per connection", parse=_int_range(1, MAX_RATE), metavar="N"
    )
    max_settings_per_second: int = option(
        100, "SETTINGS frames per second per connection", parse=_int_range(1, MAX_RATE), metavar="N"
    )
    # Browsers that use the RFC 7540 tree send a few per request.
    max_priority_per_second: int = option(
        1000,
        "PRIORITY frames per second per connection",
        parse=_int_range(1, MAX_RATE),
        metavar="N",
    )
    # Only increments under 1 KiB count (data dribble, CVE-2019-9511); real clients top up by
    # several KiB, so a fast download acked frame by frame never trips this.
    max_small_window_updates_per_second: int = option(
        1000,
        "WINDOW_UPDATEs under 1 KiB per second per connection",
        parse=_int_range(1, MAX_RATE),
        metavar="N",
    )
    # Empty DATA frames without END_STREAM, and unknown extension frames (CVE-2019-9518).
    max_empty_frames_per_second: int = option(
        100,
        "empty or unknown frames per second per connection",
        parse=_int_range(1, MAX_RATE),
        metavar="N",
    )
    # Rapid reset (CVE-2023-44487): a connection may reset half the streams it opens plus this
    # many (two full MAX_CONCURRENT_STREAMS windows cancelled) before GOAWAY(ENHANCE_YOUR_CALM).
    # h2o penalises connections that reset more than half their requests the same way; nginx
    # refuses streams past 2 x concurrent streams per read.
    reset_budget: int = option(
        256,
        "peer resets beyond half the requests before GOAWAY",
        parse=_int_range(0, MAX_STREAMS_PER_CONNECTION),
        metavar="N",
    )
    # Header fields in one HTTP/2 header block: decoding stops past it and the connection
    # ends with GOAWAY(ENHANCE_YOUR_CALM) (the HPACK state cannot be trusted after a partial
    # decode). A block of 1,500 tiny fields cost 7.6 ms of decoding, 512 about 2.6 ms;
    # browsers send about 20. Apache's LimitRequestFields is 100; nginx and h2o cap only the
    # size.
    max_header_fields: int = option(
        512,
        "header fields in one HTTP/2 header block (GOAWAY past it)",
        parse=_int_range(16, 10_000),
        metavar="N",
    )
    # Work one read of one connection may do before the worker turns to others: a frame costs
    # one unit, a header block one more per 64 bytes (HPACK decoding). The rest waits for the
    # next loop turn with reading paused, so a connection flooding valid requests or tiny
    # frames delays others by one turn (a few milliseconds), not by its whole read (600 GETs
    # of 5.8 KB written at once held others 112 ms at the median). A 256 KiB read of 16 KiB
    # DATA frames is 16 units; h2load's 100 GETs per read are about 100.
    read_turn_units: int = option(
        256,
        "work units (frames) one HTTP/2 read may process per loop turn",
        parse=_int_range(16, 1 << 20),
        metavar="N",
    )
    # A request body that stops arriving before anything was answered (HEADERS and no DATA,
    # or DATA that stops) resets its stream with CANCEL after this; a connection left with no
    # stream gets GOAWAY. nginx client_body_timeout is 60 s. 0: off.
    request_body_timeout: float = option(
        60.0,
        "seconds an HTTP/2 request body may pause before its stream is reset (0: off)",
        parse=_seconds_range(0, 86_400),
        metavar="SECONDS",
    )

    # -- HTTP/1.1 ------------------------------------------------------------------------
    # Every listener speaks HTTP/1.1 and HTTP/2 (the first bytes, or TLS ALPN, decide); "2"
    # alone keeps the HTTP/2-only server that answers HTTP/1.x with 505.
    http: str = option(
        "1.1,2",
        "protocols a listener speaks: 1.1,2 (default), 2 or 1.1",
        parse=parse_http_versions,
        metavar="1.1,2",
    )
    # Request line plus header block, as nginx's large_client_header_buffers (4 x 8 KiB) bound
    # them: a request line alone over this is 414, a head over it 431.
    http1_max_head_size: int = option(
        16384,
        "bytes of an HTTP/1.1 request line and header block",
        parse=_size_range(1024, 1 << 20),
        metavar="BYTES",
    )
    # Header fields in one HTTP/1.1 request (h2o 100, Apache 100): more is 431.
    http1_max_headers: int = option(
        100, "header fields in one HTTP/1.1 request", parse=_int_range(1, 1000), metavar="N"
    )
    # Pipelined requests read ahead of the one being answered; past this, reading pauses and
    # TCP holds the rest (a client cannot make us queue requests without bound).
    http1_pipeline_depth: int = option(
        16,
        "HTTP/1.1 pipelined requests read ahead of the one answered",
        parse=_int_range(1, 1024),
        metavar="N",
    )
    # A request body that stops arriving this long (slow POST) closes the connection with
    # 408 when nothing was answered yet (nginx client_body_timeout 60 s).
    http1_body_timeout: float = option(
        60.0,
        "seconds an HTTP/1.1 request body may pause",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )
    # Idle keep-alive connections are closed after this (nginx keepalive_timeout 75 s, h2o
    # 10 s); shorter than HTTP/2's idle timeout since a browser opens six of them per origin.
    http1_keepalive_timeout: float = option(
        15.0,
        "seconds an idle HTTP/1.1 keep-alive connection is kept",
        parse=_seconds_range(0, MAX_TIMEOUT),
        metavar="SECONDS",
    )

    # -- gRPC (h2stream.handlers.grpc) ----------------------------------------------------
    # grpc's own default receive limit. A request message is held whole until its handler
    # reads it, so this bounds what one call can make the server hold.
    grpc_max_message_size: int = option(
        4 << 20,
        "largest gRPC request message; larger is RESOURCE_EXHAUSTED",
        parse=_size_range(1024, 1 << 30),
        metavar="BYTES",
    )
    # A handler's exception text can name internals, so INTERNAL carries a generic message
    # unless the operator asks for the text (while debugging).
    grpc_expose_errors: bool = option(
        False,
        "send a failing gRPC handler's exception text in grpc-message",
        switch=True,
        parse=parse_bool,
    )

    # -- edge: PROXY protocol, Unix sockets, per-client limits --------------------------
    # Behind an L4 balancer (HAProxy send-proxy/send-proxy-v2, AWS NLB) every connection
    # starts with a PROXY header naming the client: the access log, request ids, metrics and
    # the per-client limits then see the client, not the balancer. Required on every
    # listener when on (a connection without a valid header is closed and counted); off by
    # default, since anyone who can connect could otherwise claim any address.
    proxy_protocol: bool = option(
        False,
        "every listener expects a PROXY protocol header (v1 or v2) before the client's bytes",
        switch=True,
        parse=parse_bool,
    )
    # The balancers' networks: a PROXY connection from anywhere else is closed and counted
    # (kind "untrusted"), so a client that reaches the port directly cannot claim an address.
    # Empty: any source (the listener is reachable from the balancers only).
    proxy_protocol_from: tuple[str, ...] = option(
        (),
        "accept PROXY headers only from this network (CIDR, may repeat)",
        parse=parse_cidr,
        metavar="CIDR",
        repeat=True,
    )
    # A balancer writes the header with its first packet; a connection that has not finished
    # it by then is a scanner or a slowloris (nginx proxy_protocol_timeout is 30 s).
    proxy_header_timeout: float = option(
        5.0,
        "seconds for a connection's PROXY header to arrive",
        parse=_seconds_range(0.1, 300.0),
        metavar="SECONDS",
    )
    # --bind unix:PATH sockets: readable and writable by the owner and the group, so a proxy
    # in the group (haproxy, www-data) may connect and nobody else.
    unix_socket_mode: int = option(
        0o660, "permissions of --bind unix: socket files (octal)", parse=parse_mode, metavar="MODE"
    )
    unix_socket_owner: str | None = option(
        None,
        "owner of --bind unix: socket files (needs the right to chown)",
        parse=parse_owner,
        metavar="USER[:GROUP]",
    )
    # Per client address (the PROXY header's, else the peer's; IPv6 by /64): one client must
    # not take every slot of --max-connections, nor open connections as fast as it can (each
    # costs a handshake and the accept path). Off by default: behind a balancer without the
    # PROXY protocol every connection has the balancer's address. Past a limit a connection
    # is answered in its own protocol (503 + Retry-After, or SETTINGS + GOAWAY) and closed.
    max_connections_per_client: int = option(
        0,
        "connections one client address may hold at once (0: no limit)",
        parse=_int_range(0, 1 << 20),
        metavar="N",
    )
    new_connections_per_second_per_client: float = option(
        0.0,
        "new connections per second one client address may open, on average (0: no limit)",
        parse=_rate_range(0.0, 1e6),
        metavar="RATE",
    )
    # The token bucket's depth: a browser opens several connections at once, then none.
    new_connections_burst_per_client: int = option(
        0,
        "new connections one client may open at once beyond the rate (0: one second's worth)",
        parse=_int_range(0, 1 << 20),
        metavar="N",
    )
    # Addresses remembered for their rate bucket once their last connection closed: an LRU,
    # so spoofed or countless addresses cost at most this many entries (about 150 bytes each)
    # plus those with a connection open.
    client_table_size: int = option(
        16384,
        "client addresses remembered per worker for the per-client rate (an LRU)",
        parse=_int_range(16, 1 << 24),
        metavar="N",
    )

    # -- operations -------------------------------------------------------------------
    # More than one worker (or --supervise) runs a supervisor: each worker accepts on its own
    # SO_REUSEPORT socket of every --bind; dead workers restart; SIGHUP reloads without downtime.
    workers: int = option(
        1, "worker processes, or auto: one per core", parse=parse_workers, metavar="N|auto"
    )
    supervise: bool = option(
        False,
        "run the supervisor even with one worker (restarts, SIGHUP reloads)",
        switch=True,
        parse=parse_bool,
    )
    pid_file: str | None = option(
        None, "write the main process id here", metavar="FILE", parse=parse_path
    )
    # A reload whose new workers do not all listen within this time is abandoned (old ones stay).
    worker_start_timeout: float = option(
        30.0,
        "how long new workers may take to listen",
        parse=_seconds_range(1, 3600),
        metavar="SECONDS",
    )

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
        if isinstance(value, int) and getattr(spec.parse, "unit", "") == "octal":
            value = f"0o{value:o}"  # TOML's 0o660 arrives as the number 432, already the mode
        if isinstance(value, int | float | str):
            return spec.parse(str(value))
        raise ValueError(f"unsupported value {value!r}")
    except ValueError as exc:
        raise ConfigError(f"{source}: {name}: {exc}") from None


def read_config_file(path: str) -> dict[str, Any]:
    """Option values from a TOML file; unknown keys are errors that name the key."""
    import tomllib  # here, not at import: 0.4 MiB of every worker's memory otherwise

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
            raise ConfigError(f"config file {path}: unknown key {key!r}{_file_hint(key)}")
        values[name] = _coerce(key, spec, value, f"config file {path}")
    return _relative_to(os.path.dirname(os.path.abspath(path)), values)


# Fields naming a file or directory. In a config file a relative one is taken from the file's
# own directory, not the working directory: a service's working directory is usually ``/``,
# and a file checked with check-config must mean the same wherever it is run from.
_PATH_FIELDS = ("root", "certfile", "keyfile", "pid_file", "access_log")


def _relative_to(base: str, values: dict[str, Any]) -> dict[str, Any]:
    for name in _PATH_FIELDS:
        value = values.get(name)
        if isinstance(value, str) and value != "-" and not os.path.isabs(value):
            values[name] = os.path.normpath(os.path.join(base, value))
    return values


def nearest_key(key: str) -> tuple[str, bool] | None:
    """The valid key an unknown one most likely meant, and whether it was a negative flag.

    A negative flag (``no-compression``) is not a key: the key is the option it turns off
    (``compression = false``); for that the second item is True.
    """
    specs = {f.name.replace("_", "-"): spec for f, spec in option_fields()}
    dashed = key.strip().lower().replace("_", "-")
    for name, spec in specs.items():
        if spec.invert and spec.flag == "--" + dashed:
            return name, True
    if dashed.startswith("no-") and specs.get(dashed[3:], OptionSpec("")).parse is parse_bool:
        return dashed[3:], True
    import difflib  # here, not at import: only an error needs it

    close = difflib.get_close_matches(dashed, [*specs, "bind"], n=1, cutoff=0.6)
    return (close[0], False) if close else None


def _file_hint(key: str) -> str:
    near = nearest_key(key)
    if near is None:
        return ""
    return f" (did you mean {near[0]}{' = false' if near[1] else ''}?)"


def _env_hint(suffix: str) -> str:
    near = nearest_key(suffix)
    if near is None:
        return ""
    name = ENV_PREFIX + near[0].replace("-", "_").upper()
    return f" (did you mean {name}{'=false' if near[1] else ''}?)"


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
            raise ConfigError(f"environment: unknown variable {key}{_env_hint(suffix)}")
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
    if config.metrics_bind is not None and config.metrics_bind.path is not None:
        raise ConfigError("--metrics-bind takes HOST:PORT, not a Unix socket")
    if config.metrics_bind is not None and config.metrics_bind.proxy:
        raise ConfigError("--metrics-bind takes no proxy-protocol option")
    if config.proxy_protocol_from and not any(proxied(config, b) for b in config.binds):
        raise ConfigError("--proxy-protocol-from needs --proxy-protocol or a proxy-protocol bind")
    if config.pid_file and not os.path.isdir(os.path.dirname(os.path.abspath(config.pid_file))):
        raise ConfigError(f"pid file {config.pid_file!r}: its directory does not exist")
    _check_paths(config)
    _check_across_fields(config)
    return config.replace(root=os.path.abspath(config.root))


def _check_paths(config: Config) -> None:
    """Files the server opens once it starts, checked before: a typo is one error line, not a
    traceback after the listeners are up. Only what holds for every user is checked (a key
    file readable by root alone is fine when check-config runs as someone else)."""
    for what, path in (("certfile", config.certfile), ("keyfile", config.keyfile)):
        kind = _kind(path) if path is not None else "file"
        if kind == "missing":
            raise ConfigError(f"{what} {path!r}: no such file")
        if kind in ("directory", "other"):
            raise ConfigError(f"{what} {path!r} is not a file")
    for what, path in (("access log", config.access_log), ("pid file", config.pid_file)):
        if path is None or path == "-":
            continue
        if _kind(path) == "directory":
            raise ConfigError(f"{what} {path!r} is a directory")
        if _kind(os.path.dirname(os.path.abspath(path))) not in ("directory", "unknown"):
            raise ConfigError(f"{what} {path!r}: its directory does not exist")


def _kind(path: str) -> str:
    """``file``, ``directory``, ``other``, ``missing``, or ``unknown`` (not ours to look at)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:
        return "unknown"
    return "file" if stat.S_ISREG(mode) else "directory" if stat.S_ISDIR(mode) else "other"


def _check_across_fields(config: Config) -> None:
    """Values that are each in range but cannot work together."""
    metrics = config.metrics_bind
    if metrics is not None and metrics.port and metrics in config.binds:
        raise ConfigError(f"--metrics-bind {metrics} is also a --bind address")


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
