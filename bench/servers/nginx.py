"""nginx (Debian nginx-light 1.22): one process, its own prefix, sendfile off and on."""

from __future__ import annotations

from bench.servers.base import (
    H1,
    TLS,
    WITH_H1,
    Context,
    Launch,
    Server,
    first_line,
    missing_binary,
)

NGINX = "/usr/sbin/nginx"

# nginx 1.22 syntax: "http2" is a listen parameter (the "http2 on;" directive came in 1.25.1).
_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    sendfile {sendfile};
    keepalive_requests 100000000;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port}{listen_params};
        {tls_lines}
        root {root};
    }}
}}
"""


class Nginx(Server):
    name = "nginx"
    software = "nginx"
    sendfile = False
    protos = WITH_H1
    notes = (
        "keepalive_requests 100000000: nginx >= 1.19.7 ends an HTTP/2 connection after 1,000 "
        "requests (GOAWAY), which would fail B-1k's 20,000 requests per connection",
        "sendfile off: on this loopback nginx is faster copying than with sendfile",
        "worker_connections 4096 on h1 (1024 on h2): with 1024, C-many's 1,000 HTTP/1.1 "
        "connections make nginx reuse (close) some of them ('worker_connections are not enough')",
        "otherwise defaults: http2_max_concurrent_streams stays 128 (C-many's -m 100 fits), "
        "http2_chunk_size 8k (nginx's DATA frames stay 8 KiB even with -f)",
    )

    def unavailable(self) -> str | None:
        return missing_binary(NGINX)

    def version(self) -> str:
        return first_line([NGINX, "-v"])

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        tls = proto == TLS
        conf = _CONFIG.format(
            work=ctx.workdir,
            root=ctx.root,
            port=port,
            sendfile="on" if self.sendfile else "off",
            connections=4096 if proto == H1 else 1024,
            # nginx 1.22's "http2" on a cleartext listener means prior knowledge only: the h1
            # listener leaves it out to speak HTTP/1.1.
            listen_params="" if proto == H1 else (" ssl http2" if tls else " http2"),
            tls_lines=f"ssl_certificate {ctx.cert}; ssl_certificate_key {ctx.key};" if tls else "",
        )
        path = ctx.workdir / "nginx.conf"
        path.write_text(conf)
        # -e: the compiled-in error log (/var/log/nginx) is opened before the config is read.
        argv = [
            NGINX,
            "-p",
            str(ctx.workdir),
            "-e",
            str(ctx.workdir / "error.log"),
            "-c",
            str(path),
        ]
        return Launch(argv, start_timeout=10.0)


class NginxSendfile(Nginx):
    name = "nginx-sendfile"
    sendfile = True
    notes = (
        Nginx.notes[0],
        Nginx.notes[2],
        Nginx.notes[3],
        "sendfile on (h2c only; nginx copies on TLS). nginx 1.22 may drop the connection with "
        "'http2 flood detected' (error log, info level) under h2load's 1 GiB windows: such "
        "rounds are reported as failed",
    )
