"""h2's frame buffer with header blocks capped while they are collected.

h2 itself stops at 64 CONTINUATION frames, but each may be as large as SETTINGS_MAX_FRAME_SIZE,
and a block it has collected is decoded in one piece; and it checks a frame's length only once
the whole announced body has arrived. :class:`LimitedFrameBuffer` judges both as early as the
bytes allow, so a CONTINUATION flood (CVE-2024-27316 family) or a huge announced frame ends the
connection before anything grows. Every cap raises a typed error (:mod:`h2stream.core.limits`)
that h2 answers with GOAWAY like its own protocol errors.
"""

from __future__ import annotations

import logging
from typing import Any

import h2.exceptions
from h2.frame_buffer import CONTINUATION_BACKLOG, FrameBuffer
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame

from h2stream.core.limits import ContinuationLimitError, HeaderBlockError, limit_event

log = logging.getLogger("h2stream.limits")

# Frame types whose payload length is fixed by RFC 9113 (PRIORITY 5, RST_STREAM 4, PING 8,
# WINDOW_UPDATE 4); 6 for SETTINGS stands for "a multiple of 6".
_FIXED_LENGTH = {0x2: 5, 0x3: 4, 0x4: 6, 0x6: 8, 0x8: 4}
# Byte 3 of a frame header is its type: these two carry header blocks.
_HEADER_BLOCK_TYPES = (0x1, 0x9)


class LimitedFrameBuffer(FrameBuffer):
    """h2's frame buffer with the header block capped in raw bytes and in frames, and the
    work of one read bounded (see :attr:`turn_units`)."""

    def __init__(self, max_block_bytes: int, max_block_frames: int, turn_units: int = 0) -> None:
        super().__init__(server=True)
        self.max_block_bytes = max_block_bytes
        self.max_block_frames = max_block_frames
        self._block_bytes = 0
        self._block_frames = 0
        # Work one receive may do (0: unbounded): a frame costs one unit, a header block
        # fragment one more per 64 bytes (HPACK decoding, Huffman in pure Python, costs about
        # 0.3 us a byte: 64 bytes cost about what a whole small frame does). Frames past the
        # budget stay buffered for the next turn (:attr:`turn_over`), so one connection's read
        # of a few hundred KiB of tiny frames or large header blocks cannot hold the worker.
        self.turn_units = turn_units
        self._turn_left = turn_units or 1 << 62
        # The last receive stopped on the budget with whole frames still buffered.
        self.turn_over = False

    def add_data(self, data: Any) -> None:
        # Called once per receive_data(): a new turn's budget.
        self._turn_left = self.turn_units or 1 << 62
        self.turn_over = False
        super().add_data(data)

    def __next__(self) -> Frame:
        # h2 checks a frame's length only once its whole announced body has arrived, so a
        # peer could make us buffer up to 16 MiB first: check as soon as the header is here.
        data = self._data
        if len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if self._turn_left <= 0:
                # Out of budget: leave the rest for the next turn (if a frame is whole).
                self.turn_over = len(data) >= length + 9
                raise StopIteration
            kind = data[3]
            self._turn_left -= 1 + (length >> 6 if kind in _HEADER_BLOCK_TYPES else 0)
            self._validate_frame_length(length)
            # Frames of fixed size (and SETTINGS, a multiple of 6) are judged by their header
            # too, rather than after waiting for a body that may never come.
            fixed = _FIXED_LENGTH.get(kind)
            if fixed is not None and (length % 6 if fixed == 6 else length != fixed):
                raise h2.exceptions.FrameDataMissingError(
                    f"frame type {data[3]} with invalid length {length}"
                )
        return super().__next__()

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        cls = f.__class__
        if cls is ContinuationFrame:
            pending = self._headers_buffer
            if pending:
                assert isinstance(f, ContinuationFrame)
                self._block_bytes += len(f.data)
                self._block_frames += 1
                if self._block_frames > self.max_block_frames:
                    self._fire("header_block_frames")
                if self._block_bytes > self.max_block_bytes:
                    self._fire("header_block_size")
                if len(pending) >= CONTINUATION_BACKLOG and f.stream_id == pending[0].stream_id:
                    # h2's own cap (only reached if ours is set higher), raised here as h2
                    # would, with the same message and code, but typed.
                    raise ContinuationLimitError("Too many continuation frames received.")
        elif cls is HeadersFrame:
            assert isinstance(f, HeadersFrame)
            self._block_bytes = len(f.data)
            self._block_frames = 1
            if self._block_bytes > self.max_block_bytes:
                self._fire("header_block_size")
        return super()._update_header_buffer(f)

    def _fire(self, name: str) -> None:
        limit_event(name)
        log.info("header block over its cap (%s): GOAWAY(ENHANCE_YOUR_CALM)", name)
        raise HeaderBlockError(name)

    def header_block_pending(self) -> bool:
        """Whether the peer is part-way through a header block (or a frame that may be one)."""
        if self._headers_buffer:
            return True
        data = self._data
        # With fewer than 4 bytes buffered the type is not known yet.
        return bool(data) and (len(data) < 4 or data[3] in _HEADER_BLOCK_TYPES)
