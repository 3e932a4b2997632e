"""Every option's value is checked where it is read, from the CLI, the environment and a TOML
file alike: a number outside its field's range is one error naming the option and the range.

The fields are walked, not listed: an option added later with an unchecked parser (``str``,
an unranged ``parse_size``) fails ``test_every_option_declares_what_it_accepts``, and a ranged
one is held to its range here without anyone writing a test for it.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from h2stream.cli import build_parser, cli_values
from h2stream.config import (
    ENV_PREFIX,
    Config,
    ConfigError,
    OptionSpec,
    flag_of,
    load_config,
    option_fields,
    parse_bind,
    read_config_file,
    read_environment,
    value_text,
)

HINTS = typing.get_type_hints(Config)
FIELDS = {f.name: (f, spec) for f, spec in option_fields()}


def _numeric(name: str) -> bool:
    kind = HINTS[name]
    return kind in (int, float)


NUMERIC = sorted(name for name in FIELDS if _numeric(name))


def _text(name: str, value: float) -> str:
    """``value`` as the option's text: exact (repr for fractions), octal for file modes."""
    parse = FIELDS[name][1].parse
    if HINTS[name] is float:
        return repr(float(value))
    return value_text(parse, int(value))


def _outside(name: str) -> list[str]:
    """Values just below and just above the field's range, as text."""
    parse = FIELDS[name][1].parse
    step = 1 if HINTS[name] is int else 0.001
    return [_text(name, parse.low - step), _text(name, parse.high + step)]


def _bounds(name: str) -> list[str]:
    parse = FIELDS[name][1].parse
    return [_text(name, parse.low), _text(name, parse.high)]


def _range_shown(name: str) -> str:
    """The range as the error message must show it."""
    parse = FIELDS[name][1].parse
    return f"{value_text(parse, parse.low)}..{value_text(parse, parse.high)}"


def _env_name(name: str) -> str:
    return ENV_PREFIX + ("BIND" if name == "binds" else name.upper())


def _from_cli(name: str, text: str) -> Any:
    f, spec = FIELDS[name]
    values = cli_values(build_parser().parse_args(["serve", flag_of(f, spec), text]))
    value = values[name]
    return value[0] if spec.repeat else value


def _from_env(name: str, text: str) -> Any:
    return read_environment({_env_name(name): text})[name]


def _toml_value(text: str) -> str:
    """A TOML number where the text is one (``16384``, ``0.5``), else a TOML string (a file
    mode in octal, ``0660``, is no TOML number)."""
    try:
        tomllib.loads(f"x = {text}")
    except tomllib.TOMLDecodeError:
        return f'"{text}"'
    return text


def _from_file(name: str, text: str, tmp_path: Path) -> Any:
    path = tmp_path / "h2stream.toml"
    path.write_text(f"{name} = {_toml_value(text)}\n")
    return read_config_file(str(path))[name]


# --------------------------------------------------------------------------- declarations


def _declares(name: str, spec: OptionSpec) -> bool:
    if _numeric(name):
        return hasattr(spec.parse, "low") and hasattr(spec.parse, "high")
    return any(hasattr(spec.parse, mark) for mark in ("accepts", "choices", "low"))


def test_every_option_declares_what_it_accepts() -> None:
    """A number has a range (``_int_range``, ``_size_range``, ``_seconds_range``); anything
    else a checking parser (``_choice``, ``parse_bool``, or one marked ``_accepts``)."""
    unchecked = [name for name, (_, spec) in FIELDS.items() if not _declares(name, spec)]
    assert not unchecked, f"options whose values nothing checks: {unchecked}"


def test_the_walk_sees_every_kind_of_field() -> None:
    """The walk below is not vacuous: it covers the options issue 19 found unchecked."""
    for name in ("max_send_frame_size", "write_quantum", "max_frame_size", "max_header_list_size"):
        assert name in NUMERIC
    assert len(NUMERIC) >= 40


@pytest.mark.parametrize("name", NUMERIC)
def test_every_default_is_within_its_range(name: str) -> None:
    f, spec = FIELDS[name]
    assert spec.parse.low <= f.default <= spec.parse.high


@pytest.mark.parametrize(
    "name", sorted(n for n in FIELDS if not _numeric(n) and FIELDS[n][0].default is not None)
)
def test_every_other_default_passes_its_own_check(name: str) -> None:
    f, spec = FIELDS[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    items = default if spec.repeat else (default,)
    for item in items:
        if isinstance(item, bool):
            spec.parse(str(item).lower())
        else:
            spec.parse(str(item))


# --------------------------------------------------------------------------- the walk


@pytest.mark.parametrize("name", NUMERIC)
def test_outside_the_range_is_refused_from_the_cli(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    f, spec = FIELDS[name]
    for text in _outside(name):
        with pytest.raises(SystemExit) as exited:
            _from_cli(name, text)
        assert exited.value.code == 2
        lines = capsys.readouterr().err.splitlines()
        assert lines[0].startswith(f"h2stream: error: argument {flag_of(f, spec)}: "), lines
        assert _range_shown(name) in lines[0], lines
        assert lines[1:] == ["try 'h2stream serve --help'"], lines


@pytest.mark.parametrize("name", NUMERIC)
def test_outside_the_range_is_refused_from_the_environment(name: str) -> None:
    for text in _outside(name):
        with pytest.raises(ConfigError) as refused:
            _from_env(name, text)
        message = str(refused.value)
        assert _env_name(name) in message and _range_shown(name) in message, message
        assert "\n" not in message


@pytest.mark.parametrize("name", NUMERIC)
def test_outside_the_range_is_refused_from_a_file(name: str, tmp_path: Path) -> None:
    for text in _outside(name):
        with pytest.raises(ConfigError) as refused:
            _from_file(name, text, tmp_path)
        message = str(refused.value)
        assert f": {name}: " in message and _range_shown(name) in message, message
        assert "\n" not in message


@pytest.mark.parametrize("name", NUMERIC)
def test_the_bounds_themselves_are_accepted_everywhere(name: str, tmp_path: Path) -> None:
    parse = FIELDS[name][1].parse
    for text, expected in zip(_bounds(name), (parse.low, parse.high), strict=True):
        assert _from_cli(name, text) == expected
        assert _from_env(name, text) == expected
        assert _from_file(name, text, tmp_path) == expected


@pytest.mark.parametrize(
    "name", [n for n in NUMERIC if getattr(FIELDS[n][1].parse, "unit", "") == "octal"]
)
def test_an_octal_toml_number_is_the_mode_it_spells(name: str, tmp_path: Path) -> None:
    """``0o660`` in a file arrives as the number 432: it must mean 0o660, not 0o432."""
    high = FIELDS[name][1].parse.high
    assert _from_file(name, f"0o{high:o}", tmp_path) == high


def test_sizes_take_suffixes_within_the_range() -> None:
    assert _from_env("max_frame_size", "16K") == 16384
    assert _from_cli("max_send_frame_size", "1M") == 1 << 20
    with pytest.raises(ConfigError, match=r"16384\.\.16777215"):
        _from_env("max_frame_size", "16M")  # one byte over the RFC 9113 bound


# --------------------------------------------------------------------------- text options


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("app", "myapp"),
        ("app", "my-app:app"),
        ("app", "myapp:app()"),
        ("root_path", "api"),
        ("compress_types", "text"),
        ("compress_types", "*/*"),
        ("binds", "localhost"),
        ("http", "3"),
        ("loop", "tokio"),
        ("access_log", ""),
    ],
)
def test_text_options_are_checked_too(name: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=_env_name(name)):
        _from_env(name, bad)


def test_root_path_loses_its_trailing_slash() -> None:
    assert _from_env("root_path", "/api/") == "/api"
    assert _from_env("root_path", "") == ""


# --------------------------------------------------------------------------- across fields


def test_the_metrics_listener_cannot_share_a_data_address(tmp_path: Path) -> None:
    bind = parse_bind("127.0.0.1:9100")
    with pytest.raises(ConfigError, match="also a --bind"):
        load_config({"root": str(tmp_path), "binds": (bind,), "metrics_bind": bind}, environ={})
    port_zero = parse_bind("127.0.0.1:0")
    config = load_config(
        {"root": str(tmp_path), "binds": (port_zero,), "metrics_bind": port_zero}, environ={}
    )
    assert config.metrics_bind == port_zero
