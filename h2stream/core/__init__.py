"""The protocol core, with no asyncio: the HTTP/2 session, the adapter around h2 (the only
module that knows h2's internals), frame headers, header validation, flood accounting, and the
exchange interface every handler speaks."""
