"""The topic convention ``<group>/<device>/<kind>/<name>`` (seed 04).

``kind`` is one of:

* ``data`` -- measurements: ``plant1/pi-07/data/temperature``;
* ``status`` -- metadata about the device itself: ``plant1/pi-07/status/online``
  (retained, replaced by ``offline`` through the last will),
  ``plant1/pi-07/status/heartbeat``;
* ``action`` -- commands sent *to* the device: ``plant1/pi-07/action/reboot``.

``name`` may have several levels (``data/env/temperature``). Building and parsing
are pure and validated: no wildcard, empty level or leading ``/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..topics import validate_topic

__all__ = ["KINDS", "DeviceTopics", "TopicParts", "build_topic", "fleet_filter", "parse_topic"]

KINDS = ("data", "status", "action")


def _level(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if any(c in value for c in "/+#\0"):
        raise ValueError(f"{what} {value!r} must be one topic level (no '/', '+', '#')")
    return value


def _name(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"name must be a non-empty string, got {value!r}")
    for part in value.split("/"):
        _level(part, "each level of name")
    return value


@dataclass(frozen=True, slots=True)
class TopicParts:
    """A topic split along the convention."""

    group: str
    device: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.group}/{self.device}/{self.kind}/{self.name}"


def build_topic(group: str, device: str, kind: str, name: str) -> str:
    """``group/device/kind/name``, validated."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    topic = f"{_level(group, 'group')}/{_level(device, 'device')}/{kind}/{_name(name)}"
    return validate_topic(topic)


def parse_topic(topic: str) -> TopicParts | None:
    """Split a topic that follows the convention; ``None`` for one that does not."""
    parts = topic.split("/", 3)
    if len(parts) != 4 or parts[2] not in KINDS:
        return None
    try:
        _level(parts[0], "group")
        _level(parts[1], "device")
        _name(parts[3])
    except ValueError:
        return None
    return TopicParts(*parts)


def fleet_filter(
    group: str = "+", device: str = "+", kind: str = "+", name: str = "#"
) -> str:
    """A subscription filter over the convention, ``+`` / ``#`` where not given:
    ``fleet_filter("plant1", kind="status", name="online")`` is
    ``plant1/+/status/online``."""
    if kind != "+" and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} or '+', got {kind!r}")
    return f"{group}/{device}/{kind}/{name}"


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """The topics of one device: ``DeviceTopics("plant1", "pi-07").data("temp")``."""

    group: str
    device: str

    def __post_init__(self) -> None:
        _level(self.group, "group")
        _level(self.device, "device")

    def data(self, name: str) -> str:
        return build_topic(self.group, self.device, "data", name)

    def status(self, name: str) -> str:
        return build_topic(self.group, self.device, "status", name)

    def action(self, name: str) -> str:
        return build_topic(self.group, self.device, "action", name)

    @property
    def online(self) -> str:
        """``<group>/<device>/status/online``: retained ``online`` / ``offline``."""
        return self.status("online")

    @property
    def heartbeat(self) -> str:
        """``<group>/<device>/status/heartbeat``."""
        return self.status("heartbeat")

    def actions(self) -> str:
        """The filter for every action sent to this device."""
        return f"{self.group}/{self.device}/action/#"
