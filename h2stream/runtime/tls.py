"""TLS for h2: a server context with ALPN ``h2`` and RFC 9113 section 9.2's requirements, and a
throwaway self-signed certificate for localhost made with the ``openssl`` command.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# TLS 1.2 suites allowed by RFC 9113 section 9.2.2 (ephemeral key exchange, AEAD only).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


# The most plaintext one TLS record carries (RFC 8446 section 5.1; 2**14 in TLS 1.2 too).
RECORD_PLAINTEXT = 16384


class RecordSizedReads(ssl.SSLObject):
    """An SSLObject whose reads ask for at most one record's plaintext.

    uvloop's SSL layer (asyncio's too) reads what it decrypts with ``read(256 KiB)``, and the
    ``bytes`` that call makes is above glibc's mmap threshold: a read of a record, however
    small (a WINDOW_UPDATE), cost an mmap, an mremap to shrink it and an munmap, plus a page
    fault, until glibc happened to raise its threshold (when a read that found nothing freed
    a whole buffer). OpenSSL returns one record's plaintext per read (it pipelines reads
    only when asked to, and ssl never asks), so asking for 16 KiB loses nothing (the caller
    reads again while data is pending) and the buffer comes from the heap.
    Window-bound TLS downloads: 13% less server CPU per byte (README "Flow control and
    latency").
    """

    __slots__ = ()

    def read(self, len: int = 1024, buffer: WriteableBuffer | None = None) -> bytes:
        if buffer is None:
            return self._sslobj.read(len if len < RECORD_PLAINTEXT else RECORD_PLAINTEXT)  # type: ignore[attr-defined]
        return self._sslobj.read(len, buffer)  # type: ignore[attr-defined]


class TLSError(Exception):
    """A certificate or key that cannot be used; the message is meant for the operator."""


def server_context(
    certfile: str, keyfile: str, protocols: tuple[str, ...] = ("h2", "http/1.1")
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sslobject_class = RecordSizedReads
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # h2 first, then http/1.1 (RFC 7301: the server picks by its own order). A client that
    # offers neither completes the handshake without ALPN and speaks HTTP/1.1 (or, on an
    # HTTP/2-only listener, is refused with a 505: see protocol.py), never a handshake alert.
    context.set_alpn_protocols([p for p in ("h2", "http/1.1") if p in protocols])
    for path in (certfile, keyfile):
        if not os.path.isfile(path):
            raise TLSError(f"cannot read {path}: no such file")
        if not os.access(path, os.R_OK):
            raise TLSError(f"cannot read {path}: permission denied")
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"cannot load certificate {certfile} with key {keyfile}: {exc}") from exc
    return context


def alpn_protocols(http: str) -> tuple[str, ...]:
    """The ALPN names offered for a listener's ``http`` versions ("1.1,2"), h2 first."""
    versions = http.split(",")
    return tuple(name for v, name in (("2", "h2"), ("1.1", "http/1.1")) if v in versions)


def make_self_signed(directory: str | None = None) -> tuple[str, str]:
    """Write a fresh self-signed certificate for localhost; return (certfile, keyfile)."""
    # Imported here, not at start: shutil brings bz2 and lzma, with tempfile 0.5 MiB that a
    # worker at rest does without (README "Memory").
    import shutil
    import tempfile

    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSError("--self-signed needs the openssl command (Debian package openssl)")
    directory = directory or tempfile.mkdtemp(prefix="h2stream-tls-")
    certfile = os.path.join(directory, "cert.pem")
    keyfile = os.path.join(directory, "key.pem")
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "7", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        "-keyout", keyfile, "-out", certfile,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise TLSError(f"openssl could not make a certificate: {result.stderr.strip()}")
    return certfile, keyfile
