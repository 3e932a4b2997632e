"""Flood budgets that a peer could game (issue 19): the small-WINDOW_UPDATE credit earned by
DATA we send has a ceiling, and the reset budget counts resets against requests opened, not
against stream ids the client chooses."""

from __future__ import annotations

import pytest

from h2stream.config import Config
from h2stream.core.limits import WINDOW_UPDATE, FloodError, FloodLimits


def test_window_update_credit_is_banked_up_to_one_second_of_budget() -> None:
    limits = FloodLimits(Config(max_small_window_updates_per_second=1000))
    for _ in range(6400):
        limits.data_sent(1)  # a 100 MiB download in 16 KiB frames
    for _ in range(2000):  # the bank (1,000) plus the budget (1,000)
        limits.hit(WINDOW_UPDATE)
    with pytest.raises(FloodError):
        limits.hit(WINDOW_UPDATE)


def test_window_update_credit_still_covers_acks_of_data_in_flight() -> None:
    limits = FloodLimits(Config(max_small_window_updates_per_second=10))
    for _ in range(10_000):
        limits.data_sent(4)
        for _ in range(8):  # a stream and a connection update per frame (HAProxy)
            limits.hit(WINDOW_UPDATE)


def test_resets_are_judged_against_requests_opened_not_stream_ids() -> None:
    limits = FloodLimits(Config(reset_budget=256))
    # A client starting at stream 1,000,001: ids say 500,000 requests; it opened few.
    with pytest.raises(FloodError):
        for _ in range(10_000):
            limits.opened += 1
            limits.peer_reset()
    assert limits.opened == 2 * 256 + 1


def test_resets_we_are_provoked_into_share_the_budget() -> None:
    limits = FloodLimits(Config(reset_budget=10))
    for _ in range(100):
        limits.opened += 2
        limits.peer_reset()  # half the requests reset by the peer: within the budget
    with pytest.raises(FloodError, match="provoked_reset"):
        for _ in range(20):
            limits.provoked_reset()
