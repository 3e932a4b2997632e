"""TransportSink hands a large run of immutable parts to a plain transport as one list (one
writev, no joined copy); anything mutable, small, or over TLS is joined into one write."""

from __future__ import annotations

from typing import Any

from h2stream.io.readahead import ReadAheadBudget
from h2stream.io.sink import GATHER_MIN, CopyBuffers, TransportSink


class Transport:
    def __init__(self, tls: bool = False) -> None:
        self.tls = tls
        self.calls: list[tuple[str, Any]] = []

    def get_extra_info(self, name: str) -> Any:
        return object() if name == "ssl_object" and self.tls else None

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, parts: list[Any]) -> None:
        self.calls.append(("writelines", list(parts)))

    def get_write_buffer_size(self) -> int:
        return 0


def sink(transport: Transport) -> TransportSink:
    return TransportSink(transport, None, CopyBuffers(), ReadAheadBudget(), sendfile=False)  # type: ignore[arg-type]


PAYLOAD = b"p" * GATHER_MIN


def test_a_large_immutable_run_goes_as_a_list_in_order() -> None:
    transport = Transport()
    out = sink(transport)
    view = memoryview(PAYLOAD)
    out.write(b"head")
    out.write(view[:100])
    out.write(view[100:])
    out.flush()
    [(kind, parts)] = transport.calls
    assert kind == "writelines" and b"".join(parts) == b"head" + PAYLOAD
    # The payload was not copied: the transport holds views of the caller's bytes.
    assert any(isinstance(p, memoryview) and p.obj is PAYLOAD for p in parts)


def test_mutable_small_or_tls_runs_are_joined() -> None:
    for transport, parts in (
        (Transport(), [b"head", bytearray(PAYLOAD)]),
        (Transport(), [b"head", memoryview(bytearray(PAYLOAD))]),
        (Transport(), [b"head", b"small"]),
        (Transport(tls=True), [b"head", PAYLOAD]),
    ):
        out = sink(transport)
        for part in parts:
            out.write(part)
        out.flush()
        assert transport.calls == [("write", b"".join(bytes(p) for p in parts))]


def test_many_small_parts_are_joined() -> None:
    transport = Transport()
    out = sink(transport)
    parts = [b"h" * 9, b"x" * 300] * (GATHER_MIN // 300)
    for part in parts:
        out.write(part)
    out.flush()
    assert [kind for kind, _ in transport.calls] == ["write"]
    assert transport.calls[0][1] == b"".join(parts)
