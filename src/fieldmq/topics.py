"""Topic names and filters: validation and matching, without I/O.

Rules follow MQTT 3.1.1 section 4.7 and MQTT 5 section 4.7:

* a topic *name* (what you publish to) is 1..65535 UTF-8 bytes, has no ``+``, ``#``
  or NUL character;
* a topic *filter* (what you subscribe to) may use ``+`` for exactly one level and
  ``#`` as the last level for any number of levels (including none: ``a/#``
  matches ``a``);
* filters starting with a wildcard never match names starting with ``$``
  (``$SYS/...``, ``$share`` is a subscription prefix, not a topic);
* ``$share/<group>/<filter>`` is a shared subscription; :func:`split_shared`
  separates the group from the filter that is matched.
"""

from __future__ import annotations

__all__ = [
    "MAX_TOPIC_BYTES",
    "matches",
    "split_shared",
    "validate_filter",
    "validate_topic",
]

MAX_TOPIC_BYTES = 65535


def _check_text(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if value == "":
        raise ValueError(f"{what} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters: {value!r}")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid UTF-8 ({exc.reason}): {value!r}") from exc
    if len(encoded) > MAX_TOPIC_BYTES:
        raise ValueError(
            f"{what} is {len(encoded)} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}"
        )
    return encoded


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name to publish to, else raise.

    Raises ``TypeError`` for a non-string and ``ValueError`` naming the problem
    (empty, too long, wildcard characters, NUL).
    """
    _check_text(topic, "topic")
    assert isinstance(topic, str)
    if "+" in topic or "#" in topic:
        raise ValueError(
            f"cannot publish to {topic!r}: wildcards '+' and '#' are only allowed in "
            "subscription filters"
        )
    return topic


def validate_filter(topic_filter: object) -> str:
    """Return ``topic_filter`` if it is a valid subscription filter, else raise."""
    _check_text(topic_filter, "topic filter")
    assert isinstance(topic_filter, str)
    _, inner = split_shared(topic_filter)
    levels = inner.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(
                f"invalid topic filter {topic_filter!r}: '#' must be a whole level and the last one"
            )
        if "+" in level and level != "+":
            raise ValueError(
                f"invalid topic filter {topic_filter!r}: '+' must occupy a whole level"
            )
    return topic_filter


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """Split ``$share/group/filter`` into ``("group", "filter")``; others give ``(None, f)``."""
    if not topic_filter.startswith("$share/"):
        return None, topic_filter
    parts = topic_filter.split("/", 2)
    if len(parts) < 3 or not parts[1] or not parts[2]:
        raise ValueError(
            f"invalid shared subscription {topic_filter!r}: expected '$share/<group>/<filter>'"
        )
    group = parts[1]
    if "+" in group or "#" in group:
        raise ValueError(f"invalid shared subscription group {group!r}: no wildcards allowed")
    return group, parts[2]


def matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` (a name) matches ``topic_filter``. Pure; no validation.

    A ``$share/<group>/`` prefix on the filter is ignored for matching.
    """
    flt = split_shared(topic_filter)[1] if topic_filter.startswith("$share/") else topic_filter
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    f_levels = flt.split("/")
    t_levels = topic.split("/")
    n_t = len(t_levels)
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= n_t:
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == n_t
