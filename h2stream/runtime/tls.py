"""TLS for h2: a server context with ALPN ``h2`` and RFC 9113 section 9.2's requirements, and a
throwaway self-signed certificate for localhost made with the ``openssl`` command.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile

# TLS 1.2 suites allowed by RFC 9113 section 9.2.2 (ephemeral key exchange, AEAD only).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TLSError(Exception):
    """A certificate or key that cannot be used; the message is meant for the operator."""


def server_context(
    certfile: str, keyfile: str, protocols: tuple[str, ...] = ("h2", "http/1.1")
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
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
