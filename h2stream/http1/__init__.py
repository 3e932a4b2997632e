"""HTTP/1.1 and HTTP/1.0 with no I/O: bytes in, exchanges for the handlers, response bytes out.

Parsing is llhttp's (through ``httptools``); this package adds the server's rules around it
(keep-alive, pipelining order, the smuggling defences llhttp leaves to the application, limits)
and implements :class:`~h2stream.core.exchange.Exchange` per request, so every handler serves
HTTP/1.1 unchanged.

Why llhttp and not h11: on a mix of browser, curl and h2load GETs and small POSTs (Content-Length
and chunked), one request per read, httptools parsed 317k requests/s (3.2 us each) against
h11's 8.5k (118 us each, its response cycle included; 15k pipelined), medians of 7 on a
shared 2-core machine, 2026-12-06. At B-1k's 30k requests/s h11 alone would take a core.
"""
