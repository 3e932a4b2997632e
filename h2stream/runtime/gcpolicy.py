"""The garbage collector's schedule in a serving process.

CPython collects its youngest generation every 700 container objects allocated and not yet
freed, and walks the older ones every tenth and hundredth time. A small request makes dozens
(its exchange and fields, an ASGI scope, a Task and its coroutine), so under load the
collector ran every few requests, mostly to find nothing: the objects of a finished request
are freed by reference counting, and the long-lived ones (modules, the app, the config) were
scanned again and again. Raw ASGI B-1k over h2c spent about a tenth of the worker's CPU there.

Once a worker listens, :func:`tune` moves everything alive then to the permanent generation
(``gc.freeze``: never scanned again) and collects the youngest generation every
``--gc-threshold`` allocations instead of 700. What only a cycle frees (h2's connection
objects, an HTTP/1.1 parser and its connection) waits longer, so a closed connection drops
its buffers itself first (a flood's partial header block: 21 MiB of RSS waited for the
collector in a CI run on 3.13 before it did); the idle trim (memory.py) still runs a full
collection once the worker has no connection.
"""

from __future__ import annotations

import gc


def tune(threshold: int) -> None:
    """Freeze what startup made and collect every ``threshold`` allocations (0: leave the
    collector as Python set it)."""
    if not threshold:
        return
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
