"""The ASGI callables' shapes, as the spec defines them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The ASGI version and the HTTP spec version we implement: 2.4 is the one where send() after
# a disconnect raises OSError, so frameworks stop polling receive() for http.disconnect.
ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}
