"""Route pattern compilation, matching and precedence (pure)."""

from __future__ import annotations

import itertools

import pytest

from fieldmq.router.patterns import best_match, compile_pattern
from fieldmq.topics import matches


@pytest.mark.parametrize(
    ("pattern", "topic_filter"),
    [
        ("sensors/{device_id}/data", "sensors/+/data"),
        ("a/{rest:#}", "a/#"),
        ("a/+/#", "a/+/#"),
        ("v1.0/{id}", "v1.0/+"),
        ("#", "#"),
        ("{x}", "+"),
        ("$SYS/broker/{name}", "$SYS/broker/+"),
    ],
)
def test_filter(pattern: str, topic_filter: str) -> None:
    """Each pattern compiles to the MQTT filter that the broker is asked for."""
    assert compile_pattern(pattern).filter == topic_filter


@pytest.mark.parametrize(
    ("pattern", "topic", "params"),
    [
        ("sensors/{device_id}/data", "sensors/d-1/data", {"device_id": "d-1"}),
        ("sensors/{device_id}/data", "sensors/d-1/other", None),
        ("sensors/{device_id}/data", "sensors/d-1/data/x", None),
        ("sensors/{device_id}/data", "sensors/data", None),
        ("v1.0/{id}", "v1.0/7", {"id": "7"}),
        ("v1.0/{id}", "v1X0/7", None),
        ("a.*/{id}", "abc/7", None),
        ("a.*/{id}", "a.*/7", {"id": "7"}),
        ("a/{rest:#}", "a/b/c", {"rest": "b/c"}),
        ("a/{rest:#}", "a", {"rest": ""}),
        ("a/{rest:#}", "a/", {"rest": ""}),
        ("a/#", "a/b", {}),
        ("sensors/+/data", "sensors/x/data", {}),
        ("{x}/{y}", "1/2", {"x": "1", "y": "2"}),
        ("{x}", "", {"x": ""}),
        ("#", "$SYS/x", None),
        ("{x}/y", "$SYS/y", None),
        ("$SYS/{x}", "$SYS/y", {"x": "y"}),
    ],
)
def test_match(pattern: str, topic: str, params: dict[str, str] | None) -> None:
    """Parameters are captured; literal text is compared exactly, never as a regex."""
    assert compile_pattern(pattern).match(topic) == params


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "empty"),
        ("a/v{id}", "whole level"),
        ("a/{id}x", "whole level"),
        ("a/{}", "identifier"),
        ("a/{1x}", "identifier"),
        ("a/{class}", "keyword"),
        ("{a}/{a}", "twice"),
        ("{a:#}/b", "must be last"),
        ("a/#/b", "last level"),
        ("a/b+", "whole level"),
        ("a/{x:+}", "{name:#}"),
        ("$share/g/a", "shared=True"),
    ],
)
def test_bad_patterns(pattern: str, fragment: str) -> None:
    """Bad patterns are rejected with a message that says what is wrong."""
    with pytest.raises(ValueError, match="invalid route pattern") as info:
        compile_pattern(pattern)
    assert fragment in str(info.value)


def test_non_string_pattern() -> None:
    """A pattern that is not a str is a TypeError."""
    with pytest.raises(TypeError, match="must be a str"):
        compile_pattern(b"a/b")


PATTERNS = ["a/b/c", "a/b/{x}", "a/{x}/c", "a/+/+", "a/b/#", "a/{rest:#}", "#", "{x}/b/c",
            "a/b", "a/{x}", "+/#"]
TOPICS = ["a/b/c", "a/b/x", "a/x/c", "a/b", "a", "x/b/c", "a/b/c/d", "z"]


@pytest.mark.parametrize("topic", TOPICS)
def test_precedence_agrees_with_mqtt_and_prefers_specific(topic: str) -> None:
    """The winner matches in MQTT terms and no other match has a smaller rank."""
    compiled = {i: compile_pattern(p) for i, p in enumerate(PATTERNS)}
    found = best_match(compiled, topic)
    matching = [i for i, p in compiled.items() if matches(p.filter, topic)]
    assert (found is None) == (not matching)
    if found is not None:
        assert found[0] in matching
        assert all(compiled[found[0]].rank <= compiled[i].rank for i in matching)


@pytest.mark.parametrize(
    ("topic", "winner"),
    [
        ("a/b/c", "a/b/c"),
        ("a/b/x", "a/b/{x}"),
        ("a/x/c", "a/{x}/c"),
        ("a/x/y", "a/+/+"),
        ("a/b/c/d", "a/b/#"),
        ("a/b", "a/b"),
        ("a/q", "a/{x}"),
        ("a/q/r/s", "a/{rest:#}"),
        ("x/b/c", "{x}/b/c"),
        ("z", "+/#"),
        ("z/y/x/w", "+/#"),
    ],
)
def test_precedence_examples(topic: str, winner: str) -> None:
    """Left-most literal wins; one level beats many; shorter beats a trailing '#'."""
    compiled = {i: compile_pattern(p) for i, p in enumerate(PATTERNS)}
    found = best_match(compiled, topic)
    assert found is not None
    assert PATTERNS[found[0]] == winner


def test_precedence_independent_of_registration_order() -> None:
    """Any registration order gives the same winners."""
    base = {p: compile_pattern(p) for p in PATTERNS}
    expected = {}
    for topic in TOPICS:
        f = best_match(dict(enumerate(base.values())), topic)
        expected[topic] = None if f is None else list(base)[f[0]]
    for order in itertools.islice(itertools.permutations(PATTERNS), 0, 200, 7):
        compiled = dict(enumerate(base[p] for p in order))
        for topic in TOPICS:
            f = best_match(compiled, topic)
            assert (None if f is None else order[f[0]]) == expected[topic]
