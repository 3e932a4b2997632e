"""The one frozen Config: every limit and switch of the server, with its default and its reason."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DEFAULT_BIND = "127.0.0.1:8080"


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


@dataclass(frozen=True, slots=True)
class Config:
    root: str = "."
    binds: tuple[Bind, ...] = field(default_factory=lambda: (parse_bind(DEFAULT_BIND),))
    certfile: str | None = None
    keyfile: str | None = None
    self_signed: bool = False
    # Zero-copy bodies on h2c; off forces the bounded copy path (always used on TLS).
    sendfile: bool = True
    loop: str = "auto"
    log_level: str = "info"

    # HTTP/2 settings we advertise. 128 concurrent streams is what nginx and h2o choose.
    max_concurrent_streams: int = 128
    # Caps a request's decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE): 64 KiB as h2o.
    max_header_list_size: int = 65536
    # Initial stream window for request bodies: small, so an upload cannot fill memory.
    initial_window_size: int = 65535
    # The largest frame we accept; our DATA frames follow the peer's value, not this one.
    max_frame_size: int = 16384

    # Our connection-level receive window: uploads on many streams share it.
    connection_window_size: int = 1 << 24
    # Largest DATA frame we send even if the peer allows more (RFC 9113 allows up to 16 MiB):
    # bounds the bytes one frame may need on the copy path.
    max_send_frame_size: int = 1 << 18
    # Payload bytes one stream may send per scheduler turn before the next ready stream goes:
    # the fairness quantum between streams of one connection.
    stream_turn_bytes: int = 1 << 16

    # Seconds in-flight streams get to finish after SIGTERM/SIGINT before connections close.
    graceful_timeout: float = 10.0
    # Bytes one write turn may send before yielding to the loop, so reads (WINDOW_UPDATE,
    # new requests) and other connections get their turn.
    write_quantum: int = 4 * 1024 * 1024

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def tls(self) -> bool:
        return self.self_signed or self.certfile is not None
