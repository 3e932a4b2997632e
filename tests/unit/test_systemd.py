"""systemd's environment (h2stream.runtime.systemd): LISTEN_FDS for this pid only, names from
LISTEN_FDNAMES, the variables removed, and only listening stream sockets taken."""

from __future__ import annotations

import os
import socket

import pytest

from h2stream.runtime.systemd import ActivationError, describe, listen_fds, listen_sockets


def test_listen_fds_for_this_pid_with_names() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "web::local"}
    assert listen_fds(env, 42) == [(3, "web"), (4, "unknown"), (5, "local")]
    assert listen_fds({**env, "LISTEN_FDNAMES": "web"}, 42)[1:] == [(4, "unknown"), (5, "unknown")]
    assert listen_fds(env, 43) == []  # inherited from a parent: not ours
    assert listen_fds({}, 42) == []
    with pytest.raises(ActivationError):
        listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "two"}, 42)


FD = 250  # the sockets' first fd here; systemd's is 3, which pytest may be using


def _at_fd(sock: socket.socket, fd: int) -> None:
    os.dup2(sock.fileno(), fd)
    sock.close()


def test_listen_sockets_takes_listening_stream_sockets() -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    port = tcp.getsockname()[1]
    try:
        _at_fd(tcp, FD)
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
        (activated,) = listen_sockets(env, FD)
        assert env == {}, "the variables must not reach a child"
        assert activated.name == "web" and describe(activated.sock) == f"127.0.0.1:{port}"
        assert not os.get_inheritable(FD) and not activated.sock.getblocking()
        activated.sock.detach()
        # Not listening: refused with a reason.
        _at_fd(socket.socket(), FD)
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
        with pytest.raises(ActivationError, match="not a listening stream socket"):
            listen_sockets(env, FD)
    finally:
        os.close(FD)
