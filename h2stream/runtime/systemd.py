"""systemd's side of a service: socket activation (``LISTEN_FDS``) and ``sd_notify``.

Socket activation (sd_listen_fds(3)): systemd (or ``systemd-socket-activate``) binds the
listening sockets itself and starts the service with them open from fd 3 on, ``LISTEN_FDS``
saying how many, ``LISTEN_PID`` for which process (a child that inherits the environment must
not take them too) and ``LISTEN_FDNAMES`` their names (``FileDescriptorName=``). The sockets
exist before the service does, so connections made while it starts or restarts wait in their
accept queues instead of being refused, and a port below 1024 needs no privilege.

``sd_notify`` (``Type=notify``): READY once the service accepts, RELOADING while a SIGHUP
reload runs, STOPPING when the drain begins.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
# sd_listen_fds_with_names(3): a socket without a FileDescriptorName.
UNNAMED = "unknown"


class ActivationError(ValueError):
    """The sockets systemd passed cannot be served, worded for the operator."""


@dataclass(frozen=True)
class ActivatedSocket:
    sock: socket.socket
    name: str


def listen_fds(
    environ: Mapping[str, str], pid: int, start: int = LISTEN_FDS_START
) -> list[tuple[int, str]]:
    """The fds and names ``environ`` passes to process ``pid`` ([] when none are for it);
    they are numbered from ``start`` (3, after stdin, stdout and stderr)."""
    if environ.get("LISTEN_PID", "").strip() != str(pid):
        return []
    text = environ.get("LISTEN_FDS", "").strip()
    if not text.isdigit():
        raise ActivationError(f"LISTEN_FDS={text!r}: expected a number")
    count = int(text)
    if count > 4096:
        raise ActivationError(f"LISTEN_FDS={count}: more sockets than any service listens on")
    names = environ.get("LISTEN_FDNAMES", "").split(":") if "LISTEN_FDNAMES" in environ else []
    return [
        (start + index, names[index] if index < len(names) and names[index] else UNNAMED)
        for index in range(count)
    ]


def listen_sockets(
    environ: MutableMapping[str, str] | None = None, start: int = LISTEN_FDS_START
) -> list[ActivatedSocket]:
    """The listening sockets systemd passed to this process, each checked to be a listening
    stream socket, close-on-exec and non-blocking. The variables are removed from the
    environment either way (as sd_listen_fds(1) does), so no child takes them for its own."""
    environ = os.environ if environ is None else environ
    try:
        fds = listen_fds(environ, os.getpid(), start)
    finally:
        for name in _VARIABLES:
            environ.pop(name, None)
    activated = []
    for fd, name in fds:
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ActivationError(f"systemd socket fd {fd} ({name}): {exc.strerror}") from exc
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.detach()
            raise ActivationError(
                f"systemd socket fd {fd} ({name}) is not a listening stream socket "
                "(ListenStream= in the .socket unit, and Accept=no)"
            )
        sock.setblocking(False)
        activated.append(ActivatedSocket(sock, name))
    return activated


def describe(sock: socket.socket) -> str:
    """A listening socket's address as the announce lines show it."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(address, bytes):
            address = address.decode(errors="replace")
        return "unix:" + ("@" + address[1:] if address.startswith("\0") else address)
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``) about READY/RELOADING/STOPPING; a no-op elsewhere."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]  # an abstract socket
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
    ):
        sock.sendto(state.encode(), path)
