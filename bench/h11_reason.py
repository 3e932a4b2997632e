"""Run hypercorn with a reason phrase in its HTTP/1.1 status lines (``HTTP/1.1 200 OK``).

hypercorn writes ``HTTP/1.1 200 `` (h11's default empty reason, which RFC 9112 allows), and
``h2load --h1`` counts such a response as failed with no status (its parser takes the status
from the reason-phrase callback). Filling in the standard phrase changes nothing but the status
line's few bytes, so hypercorn can be measured by the same client as every other server.

The harness copies this file beside the app and runs it in place of ``python -m hypercorn``
with the same arguments.
"""

from __future__ import annotations

import contextlib
import sys
from http import HTTPStatus
from typing import Any

import h11
from hypercorn.__main__ import main

_plain_init = h11.Response.__init__


def _init_with_reason(self: h11.Response, **kwargs: Any) -> None:
    # A status without a standard phrase keeps the empty one.
    if not kwargs.get("reason"):
        with contextlib.suppress(ValueError):
            kwargs["reason"] = HTTPStatus(kwargs["status_code"]).phrase.encode()
    _plain_init(self, **kwargs)


h11.Response.__init__ = _init_with_reason  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
