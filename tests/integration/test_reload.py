"""SIGHUP: a zero-downtime restart. New workers (fresh interpreters, the config file read
again) start and accept before the old ones drain; no request fails meanwhile.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from support.clients import RawH2Client, request, tls_socket
from support.commands import require
from support.h2load import H2load, assert_all_succeeded
from support.polling import wait_until
from support.servers import ServerProcess, wait_for_workers, worker_pids

from h2stream.runtime.tls import make_self_signed


def test_sighup_during_long_downloads_fails_no_request(
    server_factory: Callable[..., ServerProcess],
) -> None:
    require("h2load")
    server = server_factory("--workers", "2", "--graceful-timeout", "30")
    old = wait_for_workers(server.pid, 2)
    # Long downloads: 8 x 256 MiB with 16 KiB stream windows (flow control binds on every
    # frame: about 2.5 s here, against about 1 s for a reload), all in flight from the start.
    # h2load opens no new connection after a GOAWAY, so every request of a connection must be
    # on the wire before the drain: -n 8 -c 4 -m 2.
    downloads = H2load(
        "-n", "8", "-c", "4", "-m", "2", "-w", "14", f"{server.url}/f256m.bin", timeout=90
    )
    # Fresh connections throughout the reload: 3 new connections a second for 4 s, two
    # requests each; some land on old workers just before they drain, some on new ones.
    arrivals = H2load(
        "-r", "3", "-c", "12", "-n", "24", "-m", "2", f"{server.url}/mib.bin", timeout=90
    )
    time.sleep(0.7)
    assert downloads.running(), "the downloads ended before the reload: not a test"
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("reloaded: pids", timeout=30), server.log_text()
    reloaded_while_downloading = downloads.running()
    new = wait_for_workers(server.pid, 2, without=old)
    assert_all_succeeded(downloads.result(), expected=8)
    assert_all_succeeded(arrivals.result(), expected=24)
    assert reloaded_while_downloading, "the new workers took over after the downloads ended"
    # The old workers drained and exited; the new ones serve.
    assert wait_until(lambda: not any(psutil.pid_exists(p) for p in old), 20)
    assert new.isdisjoint(old)
    client = RawH2Client(server.port)
    try:
        stream_id = client.request("/hello.txt")
        assert client.until(lambda: client.responses[stream_id].ended)
        assert client.responses[stream_id].status == 200
    finally:
        client.close()


def test_sighup_rereads_the_config_file_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "only-first.txt").write_text("1\n")
    (second / "only-second.txt").write_text("2\n")
    config = tmp_path / "h2stream.toml"
    config.write_text(f'root = "{first}"\nbind = ["127.0.0.1:0"]\nworkers = 2\n')
    server = ServerProcess.exact("serve", "--config", str(config))
    try:
        old = wait_for_workers(server.pid, 2)
        assert request(server.port, "/only-first.txt").status == 200
        # A broken file: logged, and the running workers stay.
        config.write_text(f'root = "{second}"\nbind = ["127.0.0.1:0"]\nworkers = 2\nbogus = 1\n')
        server.signal(signal.SIGHUP)
        assert server.wait_for_log("reload abandoned"), server.log_text()
        assert "unknown key 'bogus'" in server.log_text()
        assert worker_pids(server.pid) == old
        # A good one: new root, one worker more; the port (chosen at start) stays.
        config.write_text(f'root = "{second}"\nbind = ["127.0.0.1:0"]\nworkers = 3\n')
        server.signal(signal.SIGHUP)
        assert server.wait_for_log("reloaded: pids"), server.log_text()
        new = wait_for_workers(server.pid, 3, without=old)
        assert len(new) == 3
        assert request(server.port, "/only-second.txt").status == 200
        assert request(server.port, "/only-first.txt").status == 404
    finally:
        server.stop()
    assert server.proc.returncode == 0


def _certificate_digest(port: int) -> str:
    with tls_socket(port) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_sighup_loads_renewed_tls_certificates(files_root: Path, tmp_path: Path) -> None:
    require("openssl")
    certfile, keyfile = make_self_signed(str(tmp_path))
    server = ServerProcess(files_root, "--supervise", "--certfile", certfile, "--keyfile", keyfile)
    try:
        assert server.url.startswith("https:"), "no TLS listener"
        port = server.port
        before = _certificate_digest(port)
        # Renewed in place, as certbot or an operator would: same paths, new certificate.
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        new_cert, new_key = make_self_signed(str(renewed))
        Path(new_cert).replace(certfile)
        Path(new_key).replace(keyfile)
        assert _certificate_digest(port) == before  # nothing changes until SIGHUP
        server.signal(signal.SIGHUP)
        after = wait_until(lambda: (d := _certificate_digest(port)) != before and d, 30)
        assert after, "the renewed certificate was never served"
        assert request(port, "/hello.txt", tls=True).status == 200
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
