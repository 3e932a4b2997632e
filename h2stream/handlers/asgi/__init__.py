"""ASGI 3 applications (Starlette, FastAPI, ...) served on the exchange interface.

One exchange per request and one Task per request (the app's coroutine). ``await send()``
returns once the chunk is framed into the peer's window, request body credit goes back as
``receive()`` hands chunks to the app, and files named by ``http.response.pathsend`` or
``http.response.zerocopysend`` leave by the same zero-copy/copy rules as static files.
"""

from h2stream.handlers.asgi.channel import ClientDisconnected
from h2stream.handlers.asgi.detect import is_asgi_app
from h2stream.handlers.asgi.handler import AsgiHandler
from h2stream.handlers.asgi.lifespan import Lifespan, LifespanFailure

__all__ = ["AsgiHandler", "ClientDisconnected", "Lifespan", "LifespanFailure", "is_asgi_app"]
