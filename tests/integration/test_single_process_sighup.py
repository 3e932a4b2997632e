"""SIGHUP to a single server process (no supervisor) never stops it: downloads in flight go on,
and what one process can renew for new connections is renewed (the TLS certificate, the access
log after a rotation), or the signal is ignored, and the log says which.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

from support.clients import request, tls_socket
from support.commands import require
from support.curl import curl_command
from support.downloads import HashedDownload
from support.polling import wait_until
from support.servers import ServerProcess

from h2stream.runtime.tls import make_self_signed

# 1 MiB at 512 KiB/s: about two seconds in flight, the SIGHUP lands in the middle.
FILE = "mib.bin"
RATE = "512K"


def _slow_download(url: str, *options: str) -> HashedDownload:
    command = curl_command("--limit-rate", RATE, *options, f"{url}/{FILE}", max_time=30)
    download = HashedDownload(command, timeout=40, progress_at=64 << 10)
    assert download.progress.wait(10), "the download never started"
    return download


def _certificate_digest(port: int) -> str:
    with tls_socket(port) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_sighup_on_cleartext_is_ignored_and_cuts_nothing(
    files_root: Path, digests: dict[str, str]
) -> None:
    server = ServerProcess(files_root)
    try:
        download = _slow_download(server.url, "--http2-prior-knowledge")
        server.signal(signal.SIGHUP)
        assert server.wait_for_log("SIGHUP ignored", timeout=10), server.log_text()
        fetched = download.fetched()
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.sha256 == digests[FILE]
        assert server.proc.poll() is None, "SIGHUP stopped the server"
        assert request(server.port, "/kib.bin").status == 200
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0


def test_sighup_over_tls_renews_the_certificate_for_new_connections(
    files_root: Path, digests: dict[str, str], tmp_path: Path
) -> None:
    require("openssl")
    certfile, keyfile = make_self_signed(str(tmp_path))
    access_log = tmp_path / "access.log"
    server = ServerProcess(
        files_root, "--certfile", certfile, "--keyfile", keyfile, "--access-log", str(access_log)
    )
    try:
        before = _certificate_digest(server.port)
        download = _slow_download(server.url, "--http2", "-k")
        # Renewed in place (certbot), and the access log rotated away (logrotate).
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        new_cert, new_key = make_self_signed(str(renewed))
        Path(new_cert).replace(certfile)
        Path(new_key).replace(keyfile)
        access_log.rename(tmp_path / "access.log.1")
        server.signal(signal.SIGHUP)
        assert server.wait_for_log("reloaded the TLS certificate", timeout=10), server.log_text()
        assert "reopened the access log" in server.log_text()
        after = _certificate_digest(server.port)
        assert after != before, "new connections still get the old certificate"
        fetched = download.fetched()
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.sha256 == digests[FILE]
        assert request(server.port, "/kib.bin", tls=True).status == 200
        assert wait_until(lambda: access_log.exists() and "/kib.bin" in access_log.read_text())
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0


def test_a_bad_renewal_keeps_the_old_certificate(files_root: Path, tmp_path: Path) -> None:
    require("openssl")
    certfile, keyfile = make_self_signed(str(tmp_path))
    server = ServerProcess(files_root, "--certfile", certfile, "--keyfile", keyfile)
    try:
        before = _certificate_digest(server.port)
        Path(certfile).write_text("not a certificate\n")
        server.signal(signal.SIGHUP)
        assert server.wait_for_log("the certificate stays as it was", timeout=10)
        assert _certificate_digest(server.port) == before
        assert server.proc.poll() is None
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
