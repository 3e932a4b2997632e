"""The directory handler: GET and HEAD of files under ROOT, answered without a Task per request."""

from __future__ import annotations

from .bodies import FileBody
from .files import ALLOW, FileRoot, OpenFile, plan_file_response
from .session import Session, StreamState

_REASONS = {
    400: b"bad request\n",
    403: b"forbidden\n",
    404: b"not found\n",
    405: b"method not allowed\n",
}


class StaticFiles:
    """Serves ROOT. Call it as a session handler."""

    def __init__(self, root: str) -> None:
        self.root = FileRoot(root)

    def __call__(
        self, session: Session, stream: StreamState, headers: list[tuple[bytes, bytes]]
    ) -> None:
        method = stream.method
        head = method == b"HEAD"
        if method != b"GET" and not head:
            session.respond_bytes(stream, 405, _REASONS[405], extra=[ALLOW])
            return
        opened = self.root.open(stream.path)
        if not isinstance(opened, OpenFile):
            session.respond_bytes(stream, opened, _REASONS.get(opened, b"error\n"), head=head)
            return
        try:
            plan = plan_file_response(method, headers, opened)
        except BaseException:
            opened.close()
            raise
        if plan.length == 0:
            opened.close()
            session.respond(stream, plan.status, plan.headers, None)
            return
        session.respond(
            stream, plan.status, plan.headers, FileBody(opened.fd, plan.offset, plan.length, opened)
        )
