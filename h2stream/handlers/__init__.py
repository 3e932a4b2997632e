"""Handlers: static files, the built-in endpoints, the native app API, and the assembly of
them. They see only the exchange interface (h2stream.core.exchange), never a protocol."""
