"""Topic rewriting and filter relations (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldmq.bridge.mapping import TopicRewrite, filter_covers, filters_overlap, minimal_filters
from fieldmq.topics import matches


@pytest.mark.parametrize(
    ("source", "target", "topic", "expected"),
    [
        ("plant/+/data/#", "sites/gw/plant/+/data/#", "plant/p1/data/t/c",
         "sites/gw/plant/p1/data/t/c"),
        ("plant/+/data/#", "sites/gw/plant/+/data/#", "plant/p1/data", "sites/gw/plant/p1/data"),
        ("plant/+/data/#", "up/+/#", "plant/p1/data/t", "up/p1/t"),
        ("a/#", "b/#", "a/", "b/"),
        ("a/#", "b/#", "a//x", "b//x"),
        ("a/+/c", "x/+/y", "a//c", "x//y"),
        ("a/b", "c/d", "a/b", "c/d"),
        ("#", "#", "any/thing", "any/thing"),
        ("#", "up/#", "any/thing", "up/any/thing"),
        ("+/+", "+/x/+", "a/b", "a/x/b"),
    ],
)
def test_rewrite_fills_target_wildcards_in_order(
    source: str, target: str, topic: str, expected: str
) -> None:
    """Each target wildcard takes what the matching source wildcard matched."""
    assert TopicRewrite(source, target).rewrite(topic) == expected


@pytest.mark.parametrize(
    ("source", "target", "problem"),
    [
        ("a/+/c", "b/c", "same wildcards"),
        ("a/#", "b/+", "same wildcards"),
        ("a/+/#", "b/#/+", "'#' must be a whole level"),
        ("a/#", "#", "empty topic"),
        ("$share/g/a/#", "b/#", "shared subscriptions"),
        ("a/b#", "c", "'#' must be a whole level"),
        ("a/+", "$SYS/+", "must not start with"),
    ],
)
def test_rewrite_rejects_mismatched_patterns(source: str, target: str, problem: str) -> None:
    """A source and target that do not fit raise ValueError saying why."""
    with pytest.raises(ValueError, match=problem):
        TopicRewrite(source, target)


def test_rewrite_of_a_non_matching_topic_raises() -> None:
    """Rewriting a topic outside the source filter is an error, not a silent pass-through."""
    with pytest.raises(ValueError, match="does not match"):
        TopicRewrite("a/+", "b/+").rewrite("c/d")
    with pytest.raises(ValueError, match="does not match"):
        TopicRewrite("a/+", "a/+").rewrite("c/d")


@pytest.mark.parametrize(
    ("wide", "narrow", "covers"),
    [
        ("a/#", "a/b/c", True), ("a/#", "a", True), ("a/#", "a/+/#", True),
        ("a/+", "a/b", True), ("a/+", "a/+", True), ("a/+", "a/#", False),
        ("a/b", "a/+", False), ("#", "$SYS/x", False), ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/a", True), ("a/+", "a", False), ("a/+/c", "a/b/+", False),
    ],
)
def test_filter_covers(wide: str, narrow: str, covers: bool) -> None:
    """``filter_covers`` is true only when every topic of the narrow filter matches the wide."""
    assert filter_covers(wide, narrow) is covers


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a/+/c", "a/b/+", True), ("a/#", "b/#", False), ("#", "x", True),
        ("a/+", "a/b/c", False), ("a/+/#", "a", False), ("a/#", "a", True),
        ("#", "$SYS/#", False), ("+/x", "$SYS/x", False), ("$SYS/+", "$SYS/x", True),
    ],
)
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    """``filters_overlap`` is true when some topic matches both filters."""
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_minimal_filters_drops_duplicates_and_covered_filters() -> None:
    """Covered and repeated filters are left out; order is kept."""
    assert minimal_filters(["a/b", "x/+", "a/#", "x/+", "x/y"]) == ["x/+", "a/#"]
    assert minimal_filters(["a/+/c", "a/b/+"]) == ["a/+/c", "a/b/+"]


levels = st.sampled_from(["a", "b", "", "$x"])
filter_levels = st.sampled_from(["a", "b", "", "+"])


@st.composite
def filters(draw: st.DrawFn) -> str:
    parts = draw(st.lists(filter_levels, min_size=1, max_size=4))
    if draw(st.booleans()):
        parts.append("#")
    return "/".join(parts)


topics = st.lists(levels, min_size=1, max_size=5).map("/".join)


@given(filters(), filters(), topics)
def test_relations_agree_with_matching(a: str, b: str, topic: str) -> None:
    """A topic matching both filters implies overlap; coverage implies matching."""
    if matches(a, topic) and matches(b, topic):
        assert filters_overlap(a, b)
    if filter_covers(a, b) and matches(b, topic):
        assert matches(a, topic)


@given(filters(), topics)
def test_rewrite_identity_and_prefix_round_trip(flt: str, topic: str) -> None:
    """Prefixing and removing the prefix again gives the original topic back."""
    if not flt or not topic or not matches(flt, topic) or flt.startswith("#"):
        return
    there = TopicRewrite(flt, "pre/" + flt).rewrite(topic)
    assert there == "pre/" + topic
    assert TopicRewrite("pre/" + flt, flt).rewrite(there) == topic
