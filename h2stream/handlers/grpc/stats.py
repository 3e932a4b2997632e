"""Per-method gRPC counters of this process, read by the metrics collector at scrape time.

Tables of plain ints keyed by text, like the other tables a metrics snapshot carries, so the
snapshots of several workers add up by key. A call adds to them once, as it ends.
"""

from __future__ import annotations

# "method status" -> calls; "method" -> messages or message bytes.
KEY_SEPARATOR = " "


class GrpcStats:
    __slots__ = ("bytes_in", "bytes_out", "calls", "messages_in", "messages_out")

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.messages_in: dict[str, int] = {}
        self.messages_out: dict[str, int] = {}
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}

    def call_ended(
        self,
        method: str,
        status: str,
        messages_in: int,
        bytes_in: int,
        messages_out: int,
        bytes_out: int,
    ) -> None:
        key = method + KEY_SEPARATOR + status
        calls = self.calls
        calls[key] = calls.get(key, 0) + 1
        for table, value in (
            (self.messages_in, messages_in),
            (self.bytes_in, bytes_in),
            (self.messages_out, messages_out),
            (self.bytes_out, bytes_out),
        ):
            table[method] = table.get(method, 0) + value

    def tables(self) -> dict[str, dict[str, int]]:
        """Copies, named as the metrics snapshot names its tables."""
        return {
            "grpc_calls": dict(self.calls),
            "grpc_messages_in": dict(self.messages_in),
            "grpc_messages_out": dict(self.messages_out),
            "grpc_bytes_in": dict(self.bytes_in),
            "grpc_bytes_out": dict(self.bytes_out),
        }


GRPC_STATS = GrpcStats()
