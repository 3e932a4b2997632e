"""caddy (Debian caddy 2.6): file_server, h2c enabled, GOMAXPROCS=1, admin endpoint off."""

from __future__ import annotations

from bench.servers.base import TLS, Context, Launch, Server, first_line, missing_binary

CADDY = "/usr/bin/caddy"

_CADDYFILE = """\
{{
	admin off
	auto_https off
	storage file_system {work}/storage
	servers {{
		protocols h1 h2 h2c
	}}
}}
{scheme}://127.0.0.1:{port} {{
	{tls}
	root * {root}
	file_server
}}
"""


class Caddy(Server):
    name = "caddy"
    software = "caddy"
    # ~12k req/s on B-1k here (5k on TLS): the full 200,000 requests would take a minute.
    slow = True
    notes = (
        "GOMAXPROCS=1 (one worker like the others); protocols h1 h2 h2c: caddy serves h2c only "
        "when asked",
    )

    def unavailable(self) -> str | None:
        return missing_binary(CADDY)

    def version(self) -> str:
        return "caddy " + first_line([CADDY, "version"])

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        tls = proto == TLS
        path = ctx.workdir / "Caddyfile"
        path.write_text(
            _CADDYFILE.format(
                work=ctx.workdir,
                scheme="https" if tls else "http",
                port=port,
                tls=f"tls {ctx.cert} {ctx.key}" if tls else "",
                root=ctx.root,
            )
        )
        # HOME and XDG_*: caddy autosaves its config and keeps state there; keep it in the temp dir.
        env = {
            "GOMAXPROCS": "1",
            "HOME": str(ctx.workdir),
            "XDG_CONFIG_HOME": str(ctx.workdir / "config"),
            "XDG_DATA_HOME": str(ctx.workdir / "data"),
        }
        argv = [CADDY, "run", "--config", str(path), "--adapter", "caddyfile"]
        return Launch(argv, env=env, start_timeout=15.0)
