"""A throwaway self-signed certificate for the TLS scenarios, made by the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed(directory: Path) -> tuple[Path, Path] | str:
    """Write cert.pem and key.pem (P-256, CN=localhost, 2 days) or return why it could not.

    The key is written as PKCS#8 ("BEGIN PRIVATE KEY"), the form every peer accepts: granian
    takes PKCS#8 only.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        return "openssl not installed"
    cert, key = directory / "cert.pem", directory / "key.pem"
    argv = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "2", "-nodes",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return f"openssl failed: {done.stderr.strip()[-300:]}"
    return cert, key
