"""Observability: metrics and their listener, the access log, and the live view (top).
Called through counters and stream observers; never calls back into the server."""
