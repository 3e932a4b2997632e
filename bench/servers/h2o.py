"""h2o (Debian h2o 2.2.5): one thread, file.dir, h2c by prior knowledge or TLS."""

from __future__ import annotations

from bench.servers.base import TLS, WITH_H1, Context, Launch, Server, first_line, missing_binary

H2O_BIN = "/usr/bin/h2o"

_CONFIG = """\
user: root
num-threads: 1
error-log: {work}/error.log
listen:
  host: 127.0.0.1
  port: {port}
{tls}hosts:
  "default":
    paths:
      /:
        file.dir: {root}
"""

# OCSP stapling off: it would spawn a fetcher that fails on a self-signed certificate.
_TLS = """\
  ssl:
    certificate-file: {cert}
    key-file: {key}
    ocsp-update-interval: 0
"""


class H2O(Server):
    name = "h2o"
    software = "h2o"
    # One cleartext listener answers both h2c prior knowledge and HTTP/1.1.
    protos = WITH_H1
    notes = (
        "user: root: started as root, h2o would switch to nobody, which cannot read the "
        "harness's 0700 temp dirs",
    )

    def unavailable(self) -> str | None:
        return missing_binary(H2O_BIN)

    def version(self) -> str:
        return first_line([H2O_BIN, "--version"])

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        tls = _TLS.format(cert=ctx.cert, key=ctx.key) if proto == TLS else ""
        path = ctx.workdir / "h2o.conf"
        path.write_text(_CONFIG.format(work=ctx.workdir, port=port, tls=tls, root=ctx.root))
        return Launch([H2O_BIN, "-c", str(path)], start_timeout=10.0)
