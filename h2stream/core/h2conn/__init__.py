"""The h2 adapter: the only code that knows h2's, hpack's and hyperframe's internals.

- :mod:`.connection`: :class:`ServerConnection`, h2's connection with the narrow API the session
  calls (fast paths for complete GETs, small POSTs and WINDOW_UPDATEs, the accounting of the
  HEADERS and DATA frames the session writes itself, stream and window queries);
- :mod:`.framebuffer`: :class:`LimitedFrameBuffer`, h2's frame buffer with header blocks capped;
- :mod:`.headers`: HPACK, a decoder with fast paths and a stateless encoder for responses.

Everything else calls these: nothing else reads a private attribute of h2, swaps a class or
drives h2's stream and connection state machines.
"""

from h2stream.core.h2conn.connection import (
    BODY_ENDED,
    H2_CONFIG,
    REQUEST_ENDED,
    REQUEST_OPEN,
    ServerConnection,
    StreamHandle,
)
from h2stream.core.h2conn.framebuffer import LimitedFrameBuffer
from h2stream.core.h2conn.headers import (
    HeaderCompressionError,
    IndexedFastDecoder,
    ResponseHeaderEncoder,
    encode_fields,
)

__all__ = [
    "BODY_ENDED",
    "H2_CONFIG",
    "REQUEST_ENDED",
    "REQUEST_OPEN",
    "HeaderCompressionError",
    "IndexedFastDecoder",
    "LimitedFrameBuffer",
    "ResponseHeaderEncoder",
    "ServerConnection",
    "StreamHandle",
    "encode_fields",
]
