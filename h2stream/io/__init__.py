"""The I/O layer: the asyncio protocol (sniffing, pause/resume), the one writer, read-ahead,
busy polling and connection timeouts."""
