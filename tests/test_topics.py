"""Topic names and filters (MQTT 3.1.1 / 5 section 4.7): validation and matching, no broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldmq.topics import (
    MAX_TOPIC_BYTES,
    matches,
    split_shared,
    validate_filter,
    validate_topic,
)

# (filter, topic, expected)
MATCH_TABLE: list[tuple[str, str, bool]] = [
    # exact names
    ("a", "a", True),
    ("a", "b", False),
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/b", "a", False),
    ("a", "a/b", False),
    ("A", "a", False),  # case sensitive
    ("a b", "a b", True),  # spaces are ordinary characters
    ("température/é", "température/é", True),
    # single-level wildcard
    ("+", "a", True),
    ("+", "a/b", False),
    ("+", "/", False),
    ("+", "/a", False),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+", "a", False),
    ("a/+", "a/", True),  # '+' matches an empty level
    ("+/+", "a/b", True),
    ("+/+", "/b", True),
    ("+/+", "a/", True),
    ("+/+", "/", True),
    ("+/+", "a", False),
    ("+/+", "a/b/c", False),
    ("/+", "/a", True),
    ("/+", "a", False),
    ("+/b", "a/b", True),
    ("+/b", "a/c", False),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/b/d", False),
    ("a/+/c", "a/b/c/d", False),
    # multi-level wildcard
    ("#", "a", True),
    ("#", "a/b/c", True),
    ("#", "/", True),
    ("#", "/a", True),
    ("a/#", "a", True),  # '#' also matches the parent level
    ("a/#", "a/", True),
    ("a/#", "a/b", True),
    ("a/#", "a/b/c/d", True),
    ("a/#", "b", False),
    ("a/#", "ab", False),
    ("a/#", "b/a", False),
    ("a/b/#", "a", False),
    ("a/b/#", "a/b", True),
    ("/#", "/", True),
    ("/#", "/a/b", True),
    ("/#", "a", False),
    ("a/+/#", "a/b", True),
    ("a/+/#", "a/b/c/d", True),
    ("a/+/#", "a", False),
    ("a/+/#", "a/", True),
    ("+/#", "a", True),
    ("+/#", "a/b/c", True),
    # empty levels and trailing slashes are real levels
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
    ("a/+/b", "a//b", True),
    ("a/", "a/", True),
    ("a/", "a", False),
    ("a", "a/", False),
    ("//", "//", True),
    ("+/+/+", "//", True),
    # $-topics are not matched by a leading wildcard
    ("#", "$SYS", False),
    ("#", "$SYS/broker/load", False),
    ("+", "$SYS", False),
    ("+/broker/#", "$SYS/broker/load", False),
    ("+/#", "$SYS/x", False),
    ("$SYS/#", "$SYS", True),
    ("$SYS/#", "$SYS/broker/load", True),
    ("$SYS/+/load", "$SYS/broker/load", True),
    ("$SYS/broker/load", "$SYS/broker/load", True),
    ("$SYS", "$SYS", True),
    ("a/#", "a/$SYS", True),  # '$' matters only at the first level
    ("a/+", "a/$x", True),
    ("#", "a$", True),
    # shared subscriptions: the prefix is ignored for matching
    ("$share/g/a/+", "a/b", True),
    ("$share/g/#", "a/b", True),
    ("$share/g/#", "$SYS/x", False),
    ("$share/g/a", "a", True),
    ("$share/g/a", "$share/g/a", False),
    ("$share/g/+/b", "x/b", True),
    ("$share/g/+/b", "x/c", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_matches_table(topic_filter: str, topic: str, expected: bool) -> None:
    """matches() follows the MQTT 4.7 rules for every row of the table."""
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_matches_table_filters_are_valid(topic_filter: str, topic: str, expected: bool) -> None:
    """Every filter in the matcher table is itself a valid filter."""
    assert validate_filter(topic_filter) == topic_filter


VALID_TOPICS = ["a", "/", "a/b", "a//b", "a/", "/a", "$SYS/x", "température", "x" * 65535,
                "é" * (65535 // 2), "a b", "日本/語"]


@pytest.mark.parametrize("topic", VALID_TOPICS, ids=lambda t: t[:20])
def test_validate_topic_accepts(topic: str) -> None:
    """Valid topic names are returned unchanged."""
    assert validate_topic(topic) == topic


@pytest.mark.parametrize(
    ("topic", "needle"),
    [
        ("", "empty"),
        ("a/+", "wildcards"),
        ("+", "wildcards"),
        ("a/#", "wildcards"),
        ("#", "wildcards"),
        ("a+b", "wildcards"),
        ("a#", "wildcards"),
        ("a\x00b", "NUL"),
        ("\x00", "NUL"),
        ("x" * 65536, "65535"),
        ("é" * 32768, "65535"),  # 32768 characters but 65536 UTF-8 bytes
        ("\ud800", "UTF-8"),  # lone surrogate cannot be encoded
    ],
    ids=lambda v: repr(v)[:20],
)
def test_validate_topic_rejects(topic: str, needle: str) -> None:
    """Invalid topic names raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=needle):
        validate_topic(topic)


@pytest.mark.parametrize("value", [None, b"a/b", 1, ["a"], 1.5])
@pytest.mark.parametrize("func", [validate_topic, validate_filter])
def test_validate_rejects_non_str(func: object, value: object) -> None:
    """A non-string topic or filter raises TypeError naming the type."""
    assert callable(func)
    with pytest.raises(TypeError, match=type(value).__name__):
        func(value)


def test_topic_length_limit_is_in_bytes() -> None:
    """The 65535 limit counts UTF-8 bytes, exactly at the boundary."""
    assert MAX_TOPIC_BYTES == 65535
    validate_topic("a" * 65533 + "é")  # 65535 bytes
    with pytest.raises(ValueError, match="65536 bytes"):
        validate_topic("a" * 65534 + "é")


VALID_FILTERS = ["#", "+", "a/#", "a/+", "+/+", "a/+/#", "/#", "+/", "a//b", "a/+/c",
                 "$SYS/#", "$share/g/#", "$share/g/a/+", "$share", "$shared/x", "a/$share/x",
                 "x" * 65535]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=lambda t: t[:20])
def test_validate_filter_accepts(topic_filter: str) -> None:
    """Valid filters (including shared subscriptions) are returned unchanged."""
    assert validate_filter(topic_filter) == topic_filter


@pytest.mark.parametrize(
    ("topic_filter", "needle"),
    [
        ("", "empty"),
        ("a/#/b", "'#'"),
        ("#/a", "'#'"),
        ("a#", "'#'"),
        ("a/b#", "'#'"),
        ("##", "'#'"),
        ("a/#/", "'#'"),
        ("+a", "'\\+'"),
        ("a+", "'\\+'"),
        ("a/+b/c", "'\\+'"),
        ("++", "'\\+'"),
        ("a\x00", "NUL"),
        ("x" * 65536, "65535"),
        ("$share/", "shared subscription"),
        ("$share/g", "shared subscription"),
        ("$share/g/", "shared subscription"),
        ("$share//a", "shared subscription"),
        ("$share/g+/a", "group"),
        ("$share/g#/a", "group"),
        ("$share/+/a", "group"),
        ("$share/g/a#", "'#'"),
        ("$share/g/#/a", "'#'"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_validate_filter_rejects(topic_filter: str, needle: str) -> None:
    """Invalid filters raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=needle):
        validate_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a/b", (None, "a/b")),
        ("#", (None, "#")),
        ("$share/g/a/b", ("g", "a/b")),
        ("$share/group-1/#", ("group-1", "#")),
        ("$share/g/$SYS/#", ("g", "$SYS/#")),
        ("$share", (None, "$share")),
        ("$SHARE/g/a", (None, "$SHARE/g/a")),  # the prefix is case sensitive
    ],
)
def test_split_shared(topic_filter: str, expected: tuple[str | None, str]) -> None:
    """split_shared separates the group from the filter only for '$share/'."""
    assert split_shared(topic_filter) == expected


# -- properties ----------------------------------------------------------------------------

_level = st.text(
    alphabet=st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs",)),
    max_size=5,
)
_topics = st.lists(_level, min_size=1, max_size=6).map("/".join).filter(bool)


@given(_topics)
def test_property_filter_equal_to_topic_matches(topic: str) -> None:
    """A filter equal to a valid topic name always matches that topic."""
    validate_topic(topic)
    assert matches(topic, topic)


@given(_topics)
def test_property_hash_matches_every_non_dollar_topic(topic: str) -> None:
    """'#' matches every topic not starting with '$' and no topic starting with '$'."""
    assert matches("#", topic) is (not topic.startswith("$"))


@given(_topics)
def test_property_plus_per_level_matches_same_depth(topic: str) -> None:
    """A filter of one '+' per level matches every non-'$' topic of that depth."""
    depth = topic.count("/") + 1
    flt = "/".join(["+"] * depth)
    assert matches(flt, topic) is (not topic.startswith("$"))
    assert not matches(flt + "/+", topic)


@given(_topics, _topics)
def test_property_prefix_hash(prefix: str, rest: str) -> None:
    """'p/#' matches p itself and every topic below p."""
    assert matches(prefix + "/#", prefix)
    assert matches(prefix + "/#", prefix + "/" + rest)
