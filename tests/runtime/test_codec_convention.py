"""The JSON-or-raw payload codec and the group/device/kind/name topic convention."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldmq.runtime.codec import decode, encode
from fieldmq.runtime.convention import (
    DeviceTopics,
    TopicParts,
    build_topic,
    fleet_filter,
    parse_topic,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@given(json_values)
def test_json_values_round_trip(value: object) -> None:
    """Numbers, bools, None, lists and dicts come back equal."""
    assert decode(encode(value)) == value


@given(st.binary())
def test_bytes_are_kept_byte_exact(data: bytes) -> None:
    """Bytes are encoded unchanged; non-UTF-8 bytes decode to the same bytes."""
    assert encode(data) == data
    assert encode(bytearray(data)) == data
    assert encode(memoryview(data)) == data
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        assert decode(data) == data


def test_strings_are_raw_text() -> None:
    """A str is written as text and non-JSON text decodes to itself."""
    assert encode("open") == b"open"
    assert decode(b"open") == "open"
    assert encode("température") == "température".encode()
    assert decode("température".encode()) == "température"


def test_json_looking_strings() -> None:
    """'42' comes back as 42 unless encoded with as_json=True."""
    assert decode(encode("42")) == 42
    assert decode(encode("42", as_json=True)) == "42"


def test_json_first_then_raw() -> None:
    """Valid JSON parses; anything else is the raw value (seed 04)."""
    assert decode(b'{"t": 21.5}') == {"t": 21.5}
    assert decode(b"21.5") == 21.5
    assert decode(b"key1=value1 key2=value2") == "key1=value1 key2=value2"
    assert decode(b"") == ""
    assert decode(b"NaN") == "NaN"
    assert decode(b"\xff\x00") == b"\xff\x00"


def test_unencodable_values() -> None:
    """NaN and arbitrary objects raise with a message saying what is accepted."""
    with pytest.raises(ValueError, match="NaN"):
        encode(math.nan)
    with pytest.raises(TypeError, match="use bytes, str"):
        encode(object())


def test_device_topics() -> None:
    """DeviceTopics builds the three kinds and the status topics."""
    t = DeviceTopics("cm", "alecto1")
    assert t.data("temperature") == "cm/alecto1/data/temperature"
    assert t.action("set") == "cm/alecto1/action/set"
    assert t.online == "cm/alecto1/status/online"
    assert t.heartbeat == "cm/alecto1/status/heartbeat"
    assert t.actions() == "cm/alecto1/action/#"
    assert t.data("env/humidity") == "cm/alecto1/data/env/humidity"


def test_build_rejects_bad_levels() -> None:
    """Wildcards, slashes in single levels, empty levels and unknown kinds are refused."""
    for args in [("a/b", "d", "data", "n"), ("g", "+", "data", "n"), ("g", "d", "dta", "n"),
                 ("g", "d", "data", ""), ("g", "d", "data", "a//b"), ("", "d", "data", "n")]:
        with pytest.raises(ValueError):
            build_topic(*args)
    with pytest.raises(ValueError):
        DeviceTopics("g", "d#")


def test_parse_topic() -> None:
    """Convention topics parse into parts; others give None."""
    assert parse_topic("z-wave/fgk101-1/data/status") == TopicParts(
        "z-wave", "fgk101-1", "data", "status")
    assert parse_topic("cm/lcd/status/heartbeat") == TopicParts("cm", "lcd", "status", "heartbeat")
    assert str(parse_topic("a/b/data/c/d")) == "a/b/data/c/d"
    assert parse_topic("a/b/other/c") is None
    assert parse_topic("a/b/data") is None
    assert parse_topic("/b/data/c") is None


def test_fleet_filter() -> None:
    """Filters default to wildcards for the levels not given."""
    assert fleet_filter("plant1", kind="status", name="online") == "plant1/+/status/online"
    assert fleet_filter() == "+/+/+/#"
    with pytest.raises(ValueError):
        fleet_filter(kind="nope")
