"""The supervisor hands each worker its Config as JSON: every option must survive the trip,
whatever type later options add (see worker.encode_config)."""

from __future__ import annotations

import os
from pathlib import Path

from h2stream.config import Config, load_config, parse_bind, parse_workers
from h2stream.runtime.worker import decode_config, encode_config


def test_defaults_round_trip() -> None:
    config = Config()
    assert decode_config(encode_config(config)) == config


def test_every_kind_of_value_round_trips(tmp_path: Path) -> None:
    config = load_config(
        {
            "root": str(tmp_path),
            "binds": (parse_bind("127.0.0.1:0"), parse_bind("[::1]:8443")),
            "metrics_bind": parse_bind("127.0.0.1:9100"),
            "workers": 3,
            "supervise": True,
            "pid_file": str(tmp_path / "pid"),
            "graceful_timeout": 2.5,
            "sendfile": False,
        },
        environ={},
    )
    assert decode_config(encode_config(config)) == config


def test_workers_auto_is_the_usable_cores() -> None:
    assert parse_workers("auto") == len(os.sched_getaffinity(0))
    assert parse_workers("4") == 4
