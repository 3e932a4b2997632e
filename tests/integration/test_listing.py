"""The directory listing: off by default with a 404 that says how to turn it on; when on,
HTML for browsers and JSON for ``accept: application/json``, names escaped, and nothing hidden
or outside ROOT shown."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.curl import curl_headers, run_curl
from support.servers import ServerProcess


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ROOT without index.html: files, a subdirectory, hidden names, awkward names, and
    symlinks leading inside and outside ROOT."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "deep.txt").write_text("deep\n")
    (root / "a.txt").write_text("hello\n")
    (root / "<b>&'x\".txt").write_text("escaped\n")
    (root / "space name.txt").write_text("space\n")
    (root / ".secret").write_text("hidden\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("hidden\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("private\n")
    os.symlink(outside, root / "escape")
    os.symlink(outside / "private.txt", root / "leak.txt")
    os.symlink(root / "a.txt", root / "alias.txt")
    os.symlink(root / "missing", root / "dangling")
    os.mkfifo(root / "pipe")
    return root


def get(server: ServerProcess, path: str, *options: str) -> tuple[int, bytes, dict[str, str]]:
    body, headers = curl_headers(*options, server.url + path)
    return int(headers[":status"]), body, headers


def test_off_by_default_and_the_404_says_how(
    server_factory: Callable[..., ServerProcess], tree: Path
) -> None:
    server = server_factory(root=tree)
    status, body, _ = get(server, "/")
    assert status == 404
    assert b"--directory-listing" in body and b"directory_listing = true" in body
    status, body, _ = get(server, "/sub/")
    assert status == 404 and b"--directory-listing" in body
    # A missing file is a plain 404: the hint is for directories only.
    status, body, _ = get(server, "/nothing.txt")
    assert status == 404 and b"directory" not in body


def test_html_listing_escapes_and_hides(
    server_factory: Callable[..., ServerProcess], tree: Path
) -> None:
    server = server_factory("--directory-listing", root=tree)
    status, body, headers = get(server, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert 'href="/a.txt"' in page and 'href="/sub/"' in page and 'href="/alias.txt"' in page
    assert 'href="/space%20name.txt"' in page
    # The awkward name: escaped as text, percent-encoded in the link, never raw markup.
    assert "&lt;b&gt;&amp;&#x27;x&quot;.txt" in page
    assert "<b>" not in page
    for never in (".secret", ".git", "escape", "leak.txt", "private", "dangling", "pipe"):
        assert never not in page, never
    # The escaped link works.
    link = page.split("&lt;b&gt;")[0].rsplit('href="', 1)[1].split('"')[0]
    status, body, _ = get(server, link)
    assert status == 200 and body == b"escaped\n"


def test_json_listing(server_factory: Callable[..., ServerProcess], tree: Path) -> None:
    server = server_factory("--directory-listing", root=tree)
    status, body, headers = get(server, "/sub/", "-H", "accept: application/json")
    assert status == 200 and headers["content-type"] == "application/json"
    document = json.loads(body)
    assert document["path"] == "/sub/"
    assert [e["name"] for e in document["entries"]] == ["deep.txt"]
    assert document["entries"][0] == {
        "name": "deep.txt",
        "type": "file",
        "size": 5,
        "mtime": document["entries"][0]["mtime"],
    }
    status, body, _ = get(server, "/", "-H", "accept: application/json")
    names = [e["name"] for e in json.loads(body)["entries"]]
    assert names == ["sub/", "<b>&'x\".txt", "a.txt", "alias.txt", "space name.txt"]


def test_hidden_and_outside_directories_are_never_listed(
    server_factory: Callable[..., ServerProcess], tree: Path
) -> None:
    server = server_factory("--directory-listing", root=tree)
    for path in ("/.git/", "/escape/", "/%2e%2e/", "/sub/../../", "/%2egit/"):
        status, body, _ = get(server, path, "--path-as-is")
        assert status == 404, path
        assert b"private" not in body and b"config" not in body, path
    # An index.html wins over the listing; HEAD gets headers only.
    (tree / "sub" / "index.html").write_text("<p>index</p>\n")
    result = run_curl("--http2-prior-knowledge", "-I", server.url + "/", text=True)
    assert result.returncode == 0 and " 200" in result.stdout.splitlines()[0]
    status, body, _ = get(server, "/sub/")
    assert body == b"<p>index</p>\n"


def test_the_flag_is_a_config_key(tmp_path: Path, tree: Path) -> None:
    config = tmp_path / "listing.toml"
    config.write_text(f'root = "{tree}"\nbind = ["127.0.0.1:0"]\ndirectory-listing = true\n')
    server = ServerProcess.exact("serve", "--config", str(config))
    try:
        status, body, _ = get(server, "/")
        assert status == 200 and b"a.txt" in body
    finally:
        server.stop()
