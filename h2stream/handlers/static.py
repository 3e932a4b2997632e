"""The directory handler: GET and HEAD of files under ROOT, answered without a Task per request.

With an :class:`~h2stream.body.encoding.EncodingPolicy`, files of compressible types are negotiated:
a precompressed sibling (``name.zst``, ``name.gz``) that the client accepts is served zero-copy
with the original's content type and its own length and etag; otherwise the file is compressed
as the window opens (64 KiB read at a time). Range requests get the identity file. Every
other file costs the hot path one dict lookup (is this content type compressible?).
"""

from __future__ import annotations

from h2stream.body.bodies import FileBody
from h2stream.body.encoding import VARY, CompressedBody, EncodingPolicy, encoded_headers
from h2stream.body.sources import FileSource
from h2stream.core.exchange import Exchange, Headers
from h2stream.core.framing import BytesBody
from h2stream.core.stats import STATS
from h2stream.handlers.files import ALLOW, FileRoot, OpenFile, content_type_for, plan_file_response
from h2stream.handlers.listing import FORBIDDEN_HINT, HINT, DirectoryListing
from h2stream.handlers.smallfiles import CachedFile, SmallFiles

_REASONS = {
    400: b"bad request\n",
    403: b"forbidden\n",
    404: b"not found\n",
    405: b"method not allowed\n",
    406: b"not acceptable\n",
}
_SIBLING_SUFFIX = {"zstd": b".zst", "gzip": b".gz"}


class StaticFiles:
    """Serves ROOT: an exchange handler, answering synchronously."""

    def __init__(
        self,
        root: str,
        policy: EncodingPolicy | None = None,
        listing: bool = False,
        small_files: int = 0,
    ) -> None:
        """``small_files``: bytes of small files to keep in memory (0: none)."""
        self.root = FileRoot(root)
        self.policy = policy
        if small_files:
            # Compressible types are negotiated from the file (siblings, on-the-fly coding).
            excluded = policy.compressible if policy is not None else None
            self.root.content = SmallFiles(small_files, excluded)
        # Directories without an index: listed, or answered with how to turn listing on.
        self.listing = DirectoryListing(self.root) if listing else None

    def __call__(self, exchange: Exchange) -> None:
        method = exchange.method
        head = method == b"HEAD"
        if method != b"GET" and not head:
            exchange.respond_bytes(405, _REASONS[405], extra=[ALLOW])
            return
        opened = self.root.open(exchange.path, True)  # content_ok: small files from memory
        if not isinstance(opened, OpenFile):
            if opened == 404 or opened == 403:
                self._no_file(exchange, opened, head)
            else:
                exchange.respond_bytes(opened, _REASONS.get(opened, b"error\n"), head=head)
            return
        if type(opened) is CachedFile:
            plan = plan_file_response(method, exchange.headers, opened)
            body = None
            if plan.length == opened.size:
                body = BytesBody(opened.data)
            elif plan.length:
                body = BytesBody(opened.data[plan.offset : plan.offset + plan.length])
            exchange.respond(plan.status, plan.headers, body)
            return
        policy = self.policy
        if policy is not None and policy.compressible(opened.content_type):
            self._negotiated(exchange, opened, policy)
            return
        try:
            plan = plan_file_response(method, exchange.headers, opened)
        except BaseException:
            opened.close()
            raise
        if plan.length == 0:
            opened.close()
            exchange.respond(plan.status, plan.headers, None)
            return
        exchange.respond(
            plan.status, plan.headers, FileBody(opened.fd, plan.offset, plan.length, opened)
        )

    def _no_file(self, exchange: Exchange, status: int, head: bool) -> None:
        """A 404 or 403: a directory without an index is listed, or its answer says how."""
        found = self.root.directory(exchange.path)
        if found is None:
            exchange.respond_bytes(status, _REASONS[status], head=head)
        elif self.listing is not None:
            self.listing(exchange, *found)
        else:
            exchange.respond_bytes(status, HINT if status == 404 else FORBIDDEN_HINT, head=head)

    # -- content negotiation (compressible types only) -----------------------------------

    def _negotiated(self, exchange: Exchange, opened: OpenFile, policy: EncodingPolicy) -> None:
        headers = exchange.headers
        try:
            accept = has_range = None
            for name, value in headers:
                if name == b"accept-encoding":
                    accept = value
                elif name == b"range":
                    has_range = value
            coding = policy.select(accept, opened.size)
            refuses_identity = policy.refuses_identity(accept)
            if coding == "":
                opened.close()
                exchange.respond_bytes(
                    406, _REASONS[406], extra=[VARY], head=exchange.method == b"HEAD"
                )
                return
            if has_range is not None:
                if coding != "identity" and not refuses_identity:
                    coding = "identity"  # ranges are served from the identity representation
                elif coding != "identity":
                    # Identity refused: the range is ignored (RFC 9110 §14.2 allows it).
                    headers = [h for h in headers if h[0] != b"range"]
            if coding == "identity":
                self._identity(exchange, headers, opened)
                return
            accepted = policy.preference(accept).accepted
            for candidate in accepted if not refuses_identity else (coding,):
                sibling = self._sibling(exchange.path, candidate, opened)
                if sibling is not None:
                    opened.close()
                    self._precompressed(exchange, headers, opened, sibling, candidate)
                    return
            self._compress(exchange, headers, opened, coding, policy)
        except BaseException:
            opened.close()
            raise

    def _identity(self, exchange: Exchange, headers: Headers, opened: OpenFile) -> None:
        plan = plan_file_response(exchange.method, headers, opened)
        fields = [*plan.headers, VARY]
        if plan.length == 0:
            opened.close()
            exchange.respond(plan.status, fields, None)
            return
        body = FileBody(opened.fd, plan.offset, plan.length, opened)
        exchange.respond(plan.status, fields, body)

    def _sibling(self, raw_path: bytes, coding: str, original: OpenFile) -> OpenFile | None:
        """``name.zst`` / ``name.gz`` next to the file, when it is there and not stale."""
        path = raw_path.partition(b"?")[0].partition(b"#")[0]
        last = path.rpartition(b"/")[2]
        # A directory (its index was opened) has no sibling; neither has a name whose own
        # type differs from what was opened (an index reached without the trailing slash).
        if not last or content_type_for(last.decode("latin-1")) != original.content_type:
            return None
        opened = self.root.open(path + _SIBLING_SUFFIX[coding])
        if not isinstance(opened, OpenFile):
            return None
        if opened.mtime < original.mtime:
            opened.close()  # older than the file it compresses: stale, ignore it
            return None
        return opened

    def _precompressed(
        self,
        exchange: Exchange,
        headers: Headers,
        original: OpenFile,
        sibling: OpenFile,
        coding: str,
    ) -> None:
        try:
            plan = plan_file_response(exchange.method, headers, sibling)
        except BaseException:
            sibling.close()
            raise
        fields = [VARY]
        for name, value in plan.headers:
            if name == b"content-type":
                value = original._content_type_b
            elif name == b"accept-ranges":
                continue
            fields.append((name, value))
        if plan.status == 200:
            fields.append((b"content-encoding", coding.encode()))
            STATS.precompressed_responses += 1
        if plan.length == 0:
            sibling.close()
            exchange.respond(plan.status, fields, None)
            return
        body = FileBody(sibling.fd, plan.offset, plan.length, sibling)
        exchange.respond(plan.status, fields, body)

    def _compress(
        self,
        exchange: Exchange,
        headers: Headers,
        opened: OpenFile,
        coding: str,
        policy: EncodingPolicy,
    ) -> None:
        # Preconditions are evaluated against the variant's own etag (RFC 9110 §8.8.3).
        suffix = policy.etag_suffix[coding]
        variant = OpenFile(
            opened.fd,
            opened.size,
            opened.mtime,
            opened.etag[:-1] + suffix + '"',
            opened.last_modified,
            opened.content_type,
        )
        plan = plan_file_response(exchange.method, headers, variant)
        if plan.status != 200:
            opened.close()
            exchange.respond(plan.status, [*plan.headers, VARY], None)
            return
        fields = encoded_headers(plan.headers, coding)
        if exchange.method == b"HEAD":
            opened.close()
            exchange.respond(200, fields, None)
            return
        source = FileSource(opened.fd, 0, opened.size, opened)
        body = CompressedBody(source, policy.encoder(coding, opened.size))
        exchange.respond(200, fields, body)
