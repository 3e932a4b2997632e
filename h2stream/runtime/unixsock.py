"""Unix domain socket listeners (``--bind unix:/run/h2stream.sock``).

A local proxy (HAProxy, nginx, a sidecar) reaches the server through a file instead of a port:
no TCP handshake or port to manage, and access controlled by the file's mode and owner.

The file outlives a server that was killed: binding again then fails with EADDRINUSE. A file
left behind is replaced only when it is a socket and nothing answers on it (connect() is
refused); a live server's socket, or any file that is not a socket, is never removed. On exit
the file is removed only if it is still the one this server made (same device and inode), so
a newer server that already replaced it keeps its own. Abstract sockets (``unix:@name``) have
no file: none of this applies to them.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import socket
import stat
from collections.abc import Callable
from typing import Any

BACKLOG = 1024


class UnixSocketFile:
    """A listening Unix socket bound by this process, and the file it made."""

    def __init__(self, path: str, mode: int, owner: str | None) -> None:
        self.path = path
        self.abstract = path.startswith("@")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._identity: tuple[int, int] | None = None
        try:
            self._bind()
            if not self.abstract:
                # Before listen(): nobody can connect while the mode is still the umask's.
                _chown(path, owner)
                os.chmod(path, mode)
                st = os.lstat(path)
                self._identity = (st.st_dev, st.st_ino)
            self.sock.listen(BACKLOG)
            self.sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    def _bind(self) -> None:
        address = "\0" + self.path[1:] if self.abstract else self.path
        try:
            self.sock.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.abstract:
                raise
            _remove_stale(self.path)
            self.sock.bind(address)

    def close(self) -> None:
        """Close the socket and remove its file if it is still ours."""
        self.sock.close()
        identity, self._identity = self._identity, None
        if identity is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == identity:
                os.unlink(self.path)


def _remove_stale(path: str) -> None:
    """Remove ``path`` if it is a socket nobody listens on; otherwise raise EADDRINUSE."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # gone meanwhile
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket: not replaced")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # stale: a server that died left it
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # A full accept queue (EAGAIN) or a timeout: something is there, just busy.
            raise OSError(errno.EADDRINUSE, f"{path} is in use ({exc.strerror or exc})") from exc
    raise OSError(errno.EADDRINUSE, f"another server answers on {path}")


def _chown(path: str, owner: str | None) -> None:
    if not owner:
        return
    user, _, group = owner.partition(":")
    uid = _lookup(user, pwd.getpwnam, "user") if user else -1
    gid = _lookup(group, grp.getgrnam, "group") if group else -1
    os.chown(path, uid, gid)


def _lookup(name: str, by_name: Callable[[str], Any], what: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        entry = by_name(name)
    except KeyError:
        raise OSError(errno.EINVAL, f"unknown {what} {name!r}") from None
    return int(entry[2])
