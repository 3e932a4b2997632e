"""The one frozen Config: every limit and switch of the server, with its default and its reason.

Each field is also an option. Its metadata gives the CLI flag and help, and the same name is the
key in a TOML file (``--config``) and, upper-cased behind ``H2STREAM_``, an environment
variable. :func:`load_config` merges them: CLI > environment > file > defaults. Unknown keys
are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
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


def _int_range(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``low..high`` (compression levels)."""

    def parse(text: str) -> int:
        value = parse_positive_int(text)
        if value > high or value < low:
            raise ValueError(f"expected {low}..{high}, got {value}")
        return value

    return _ranged(parse, low, high)


def _ranged(parse: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """Mark ``parse`` with the range it checks, so the range can be shown and tested."""
    parse.low = low  # type: ignore[attr-defined]
    parse.high = high  # type: ignore[attr-defined]
    return parse


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


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


HTTP_VERSIONS = ("1.1", "2")


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
        value = parse_size(text)
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high} bytes, got {value}")
        return value

    return _ranged(parse, low, high)


def _seconds_range(low: float, high: float) -> Callable[[str], float]:
    """Seconds in ``low..high`` (0 turns a timeout off when ``low`` is 0)."""

    def parse(text: str) -> float:
        value = parse_seconds(text)
        if not low <= value <= high:
            raise ValueError(f"expected {low:g}..{high:g} seconds, got {value:g}")
        return value

    return _ranged(parse, low, high)


MAX_WORKERS = 1024


def parse_workers(text: str) -> int:
    """A worker count, or ``auto``: the cores this process may run on (affinity, cpusets)."""
    if text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    value = parse_positive_int(text)
    if value > MAX_WORKERS:
        raise ValueError(f"at most {MAX_WORKERS} workers, got {value}")
    return value


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
        "serve an h2stream.App (unmatched paths fall through to ROOT if given) or an ASGI 3 "
        "app MODULE:ATTR",
        metavar="MODULE:ATTR",
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
    root_path: str = option("", "ASGI root_path: the prefix the app is mounted at", metavar="PATH")
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
    # Zero-copy costs two syscalls and a TCP push per DATA frame, the copy path one preadv per
    # run and one write per run (or per frame when the window cut the run short) plus copying:
    # below about 20 KiB frames the copy wins (README "Zero-copy or copy" has the figures).
    zero_copy_min_frame: int = option(
        20480,
        "on h2c, DATA frames smaller than this go by the copy path; 0 = always zero-copy",
        parse=parse_size,
        metavar="BYTES",
    )
    # While a worker's only connection waits for its peer's WINDOW_UPDATE, poll the socket
    # this long before sleeping in the event loop: waking a halted vCPU costs more than the
    # wait on loopback or a LAN (busypoll.py; README "Flow control and latency").
    busy_poll_us: int = option(
        50,
        "on h2c, microseconds to poll for a peer's credit before sleeping; 0 = never poll",
        parse=parse_count,
        metavar="MICROSECONDS",
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
        1 << 30, "largest request body; larger gets 413", parse=parse_size, metavar="BYTES"
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
        parse=parse_positive_int,
        metavar="N",
    )
    # Below ~1 KiB the saving is a few hundred bytes at most, less than the CPU it costs.
    compress_min_size: int = option(
        1024, "smallest body of known length that is compressed", parse=parse_size, metavar="BYTES"
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
        None, "write an access log line per stream to PATH (- for stdout)", metavar="PATH|-"
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

    # -- hardening limits -------------------------------------------------------------
    # Each limit below fires into STATS.limit_events under its kind (see limits.py, README).
    # Timeouts: 0 turns one off. They are checked by one timer per worker (timeouts.py), so
    # they fire within a quarter of the smallest timeout (at most a second) after expiry.
    # Slowloris before HTTP/2: the TLS handshake, and then the connection preface (or an
    # h2c Upgrade request head), must arrive within this; h2o's idle timeout is 10 s.
    preface_timeout: float = option(
        10.0,
        "seconds for the TLS handshake and the client preface",
        parse=parse_seconds,
        metavar="SECONDS",
    )
    # Slowloris in HTTP/2: a header block (HEADERS + CONTINUATION) left unfinished this long
    # ends the connection with GOAWAY(ENHANCE_YOUR_CALM) (nginx: client_header_timeout 60 s).
    header_timeout: float = option(
        10.0,
        "seconds to finish a header block once begun",
        parse=parse_seconds,
        metavar="SECONDS",
    )
    # A connection with no open stream and no new request this long gets GOAWAY(NO_ERROR);
    # PINGs do not count as activity (nginx keepalive_timeout 75 s, h2o 10 s).
    idle_timeout: float = option(
        60.0,
        "close connections idle this long (GOAWAY NO_ERROR)",
        parse=parse_seconds,
        metavar="SECONDS",
    )
    # Zero-window and slow-read holds (CVE-2019-9511/9517 family): a stream parked on a zero
    # window this long is reset with CANCEL (the peer broke no rule; we give up the response);
    # a connection whose output does not move this long (unread socket, or no connection
    # window) is closed. nginx send_timeout is 60 s and closes the connection.
    send_timeout: float = option(
        60.0,
        "seconds a response may wait for the peer's window or reads",
        parse=parse_seconds,
        metavar="SECONDS",
    )
    # Lifetime cap: GOAWAY(NO_ERROR) after this many streams, so long-lived connections rotate
    # (and h2's closed-stream table stays small). nginx keepalive_requests is 1000; h2load
    # benchmarks run 20,000 per connection, so ours is higher. 0: no cap.
    max_requests_per_connection: int = option(
        100_000,
        "streams per connection before GOAWAY rotates it (0: no cap)",
        parse=parse_count,
        metavar="N",
    )
    # Connections one worker holds at once; more are answered SETTINGS + GOAWAY(NO_ERROR) and
    # closed at once, never an EMFILE. 0: automatic, (RLIMIT_NOFILE - 64) / 4 (the soft limit
    # is raised to the hard one first), which also bounds any explicit value. The fds left
    # after two per connection bound the worker's open streams (each may hold a file): past
    # that a stream is refused (REFUSED_STREAM, kind "fd_budget"). See limits.WorkerBudget.
    max_connections: int = option(
        0, "connections per worker (0: from the fd limit)", parse=parse_count, metavar="N"
    )
    # Bytes queued in the transport for a peer that does not read. By design at most about
    # 768 KiB is ever queued (a 256 KiB flush plus one 256 KiB frame plus the ACKs of one
    # read); over this the connection is aborted (a GOAWAY could not be delivered anyway).
    max_connection_buffer: int = option(
        4 << 20,
        "bytes queued for an unread socket before abort",
        parse=parse_size,
        metavar="BYTES",
    )
    # CONTINUATION floods and HPACK: a header block's raw size and frame count while it is
    # collected (the decoded size is max_header_list_size). nginx caps the decoded list at
    # 32 KiB (large_client_header_buffers 4 8k), h2o the raw block at 417,792 bytes.
    max_header_block_size: int = option(
        65536, "raw bytes of one header block", parse=parse_size, metavar="BYTES"
    )
    max_header_block_frames: int = option(
        16,
        "frames (HEADERS + CONTINUATION) in one header block",
        parse=parse_positive_int,
        metavar="N",
    )
    # Control-frame floods (CVE-2019-9512/9515/9518): frames per second per connection that
    # cost work but carry no request; one more within the second is GOAWAY(ENHANCE_YOUR_CALM).
    # Real clients send a handful per connection.
    max_pings_per_second: int = option(
        100, "PING frames per second per connection", parse=parse_positive_int, metavar="N"
    )
    max_settings_per_second: int = option(
        100, "SETTINGS frames per second per connection", parse=parse_positive_int, metavar="N"
    )
    # Browsers that use the RFC 7540 tree send a few per request.
    max_priority_per_second: int = option(
        1000, "PRIORITY frames per second per connection", parse=parse_positive_int, metavar="N"
    )
    # Only increments under 1 KiB count (data dribble, CVE-2019-9511); real clients top up by
    # several KiB, so a fast download acked frame by frame never trips this.
    max_small_window_updates_per_second: int = option(
        1000,
        "WINDOW_UPDATEs under 1 KiB per second per connection",
        parse=parse_positive_int,
        metavar="N",
    )
    # Empty DATA frames without END_STREAM, and unknown extension frames (CVE-2019-9518).
    max_empty_frames_per_second: int = option(
        100,
        "empty or unknown frames per second per connection",
        parse=parse_positive_int,
        metavar="N",
    )
    # Rapid reset (CVE-2023-44487): a connection may reset half the streams it opens plus this
    # many (two full MAX_CONCURRENT_STREAMS windows cancelled) before GOAWAY(ENHANCE_YOUR_CALM).
    # h2o penalises connections that reset more than half their requests the same way; nginx
    # refuses streams past 2 x concurrent streams per read.
    reset_budget: int = option(
        256,
        "peer resets beyond half the requests before GOAWAY",
        parse=parse_count,
        metavar="N",
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
        "bytes of an HTTP/1.1 request line and header block (1 KiB to 1 MiB)",
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
        parse=parse_seconds,
        metavar="SECONDS",
    )
    # Idle keep-alive connections are closed after this (nginx keepalive_timeout 75 s, h2o
    # 10 s); shorter than HTTP/2's idle timeout since a browser opens six of them per origin.
    http1_keepalive_timeout: float = option(
        15.0,
        "seconds an idle HTTP/1.1 keep-alive connection is kept",
        parse=parse_seconds,
        metavar="SECONDS",
    )

    # -- gRPC (h2stream.handlers.grpc) ----------------------------------------------------
    # grpc's own default receive limit. A request message is held whole until its handler
    # reads it, so this bounds what one call can make the server hold.
    grpc_max_message_size: int = option(
        4 << 20,
        "largest gRPC request message (1 KiB to 1 GiB); larger is RESOURCE_EXHAUSTED",
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
    pid_file: str | None = option(None, "write the main process id here", metavar="FILE")
    # A reload whose new workers do not all listen within this time is abandoned (old ones stay).
    worker_start_timeout: float = option(
        30.0, "how long new workers may take to listen", parse=parse_seconds, metavar="SECONDS"
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
    if config.pid_file and not os.path.isdir(os.path.dirname(os.path.abspath(config.pid_file))):
        raise ConfigError(f"pid file {config.pid_file!r}: its directory does not exist")
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
