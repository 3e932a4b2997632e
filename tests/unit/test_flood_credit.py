"""The PING budget's credit for DATA sent: a client that pings as data arrives (grpc-go) is
served, and a download cannot bank credit for a ping flood later."""

from __future__ import annotations

import pytest

from h2stream.config import Config
from h2stream.core.limits import PING, FloodError, FloodLimits


def test_a_ping_per_turn_of_data_is_never_a_flood() -> None:
    limits = FloodLimits(Config(max_pings_per_second=10))
    for _ in range(10_000):
        limits.data_sent(4)
        limits.hit(PING)  # within one window: only the credit keeps this under budget


def test_banked_credit_is_capped_at_one_window_of_budget() -> None:
    limits = FloodLimits(Config(max_pings_per_second=10))
    for _ in range(10_000):
        limits.data_sent(4)  # a long download, no pings
    for _ in range(20):  # the bank (10) plus the budget (10)
        limits.hit(PING)
    with pytest.raises(FloodError):
        limits.hit(PING)
