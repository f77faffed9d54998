"""Scenario files: a timeline of faults, in TOML (parsed with the standard library's
``tomllib``). Pure: parsing and validation only; :mod:`.simulation` runs them.

.. code-block:: toml

    name = "outage"
    description = "the broker goes away for 20 s"
    duration = "60s"            # default run length (--duration overrides)
    speed = 1                   # simulated seconds per wall-clock second (--speed)
    warmup = "0s"               # no anomaly is injected before (--warmup)

    [[step]]
    at = "10s"
    action = "broker-stop"
    for = "20s"                 # adds the undoing step (broker-start) at 30 s

    [[step]]
    at = "40s"
    action = "latency"
    group = "gateway"           # a profile name, or "all" (the default)
    ms = 300
    for = "10s"                 # adds "pass" at 50 s

Actions are listed in :data:`ACTIONS`; ``docs/simulator.md`` is the reference.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .profiles import PROFILES

__all__ = [
    "ACTIONS",
    "BROKER_ACTIONS",
    "DEVICE_ACTIONS",
    "NETWORK_ACTIONS",
    "Scenario",
    "ScenarioError",
    "Step",
    "builtin_scenarios",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]

BROKER_ACTIONS = ("broker-stop", "broker-start", "broker-kill", "broker-restart")
NETWORK_ACTIONS = ("pass", "latency", "bandwidth", "blackhole", "reset", "refuse")
DEVICE_ACTIONS = ("device-kill", "device-restart")
ACTIONS = BROKER_ACTIONS + NETWORK_ACTIONS + DEVICE_ACTIONS
_UNDO = {
    "broker-stop": "broker-start", "broker-kill": "broker-start",
    "latency": "pass", "bandwidth": "pass", "blackhole": "pass", "reset": "pass",
    "refuse": "pass", "device-kill": "device-restart",
}
_STEP_KEYS = {"at", "action", "group", "devices", "ms", "bytes_per_s", "for"}
_TOP_KEYS = {"name", "description", "duration", "speed", "warmup", "step"}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and step."""


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"1.5m"``, ``"1h30m"``, ``"250ms"``.

    Raises ``ValueError`` for anything else, negative values included.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad {what} {value!r}: write e.g. 30s, 10m, 1h30m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for m in _DURATION_RE.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"bad {what} {value!r}: write a number of seconds or e.g. 30s, 10m, 1h30m"
                ) from None
    else:
        raise ValueError(f"bad {what} {value!r}: write e.g. 30s, 10m, 1h30m")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad {what} {value!r}: must be a finite, non-negative time")
    return seconds


@dataclass(frozen=True, slots=True)
class Step:
    """One timeline step: at ``at`` seconds from the start, do ``action`` to ``group``
    (``"all"`` or a profile name). ``value`` is milliseconds for ``latency`` and bytes
    per second for ``bandwidth``; ``devices`` are glob patterns on device ids that
    narrow a device action (empty: the whole group)."""

    at: float
    action: str
    group: str = "all"
    value: float | None = None
    devices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        target = "" if self.action in BROKER_ACTIONS else f" {self.group}"
        if self.devices:
            target += f" [{','.join(self.devices)}]"
        extra = "" if self.value is None else f" {self.value:g}"
        return f"{self.action}{target}{extra}"

    def selects(self, device_id: str, group: str) -> bool:
        """Whether a device action applies to this device."""
        if self.group not in ("all", group):
            return False
        return not self.devices or any(fnmatch.fnmatchcase(device_id, p) for p in self.devices)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named timeline of :class:`Step`; ``duration`` is the default run length (in
    simulated seconds), ``speed`` how many simulated seconds pass per wall-clock second,
    ``warmup`` how long devices report before the first anomaly may start."""

    name: str
    steps: tuple[Step, ...] = ()
    duration: float | None = None
    description: str = ""
    source: str = field(default="", compare=False)
    speed: float = 1.0
    warmup: float = 0.0

    @property
    def needs_broker(self) -> bool:
        """The scenario stops or kills the broker: the simulator must run it."""
        return any(s.action in BROKER_ACTIONS for s in self.steps)

    @property
    def network_groups(self) -> frozenset[str]:
        """Groups whose link the scenario changes (``"all"`` means every group)."""
        return frozenset(s.group for s in self.steps if s.action in NETWORK_ACTIONS)

    @property
    def end(self) -> float:
        """Time of the last step (0 without steps)."""
        return max((s.at for s in self.steps), default=0.0)

    def scaled(self, factor: float) -> Scenario:
        """The same timeline with every time (warm-up included) multiplied by
        ``factor`` (> 0); the clock's ``speed`` is unchanged."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"time scale must be a positive number, got {factor!r}")
        return replace(
            self,
            steps=tuple(replace(s, at=s.at * factor) for s in self.steps),
            duration=None if self.duration is None else self.duration * factor,
            warmup=self.warmup * factor,
        )


def _step(raw: object, where: str) -> list[Step]:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: a step must be a table ([[step]])")
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"a step has {', '.join(sorted(_STEP_KEYS))}"
        )
    if "at" not in raw or "action" not in raw:
        raise ScenarioError(f"{where}: a step needs 'at' and 'action'")
    try:
        at = parse_duration(raw["at"], what="'at'")
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    action = raw["action"]
    if action not in ACTIONS:
        raise ScenarioError(
            f"{where}: unknown action {action!r}; actions: {', '.join(ACTIONS)}"
        )
    group = raw.get("group", "all")
    if group != "all" and group not in PROFILES:
        raise ScenarioError(
            f"{where}: unknown group {group!r}; use 'all' or a profile: {', '.join(PROFILES)}"
        )
    if action in BROKER_ACTIONS and ("group" in raw or "devices" in raw):
        raise ScenarioError(f"{where}: {action} acts on the broker; remove 'group'/'devices'")
    devices = raw.get("devices", [])
    if isinstance(devices, str):
        devices = [devices]
    if not isinstance(devices, list) or not all(isinstance(d, str) and d for d in devices):
        raise ScenarioError(f"{where}: 'devices' must be a list of glob patterns")
    if devices and action not in DEVICE_ACTIONS:
        raise ScenarioError(f"{where}: 'devices' only applies to {', '.join(DEVICE_ACTIONS)}")
    value: float | None = None
    need = {"latency": "ms", "bandwidth": "bytes_per_s"}.get(action)
    for key in ("ms", "bytes_per_s"):
        if key in raw and key != need:
            raise ScenarioError(f"{where}: {action!r} takes no {key!r}")
    if need is not None:
        v = raw.get(need)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ScenarioError(f"{where}: {action!r} needs {need} = <number>")
        if not (math.isfinite(v) and (v >= 0 if need == "ms" else v > 0)):
            raise ScenarioError(f"{where}: {need} must be {'>= 0' if need == 'ms' else '> 0'}")
        value = float(v)
    step = Step(at=at, action=action, group=group, value=value, devices=tuple(devices))
    steps = [step]
    if "for" in raw:
        if action not in _UNDO:
            raise ScenarioError(f"{where}: {action!r} cannot take 'for' (nothing to undo)")
        try:
            length = parse_duration(raw["for"], what="'for'")
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        steps.append(Step(at=at + length, action=_UNDO[action], group=group,
                          devices=tuple(devices)))
    return steps


def parse_scenario(data: Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Build a :class:`Scenario` from parsed TOML; ``ScenarioError`` names the problem."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"a scenario has {', '.join(sorted(_TOP_KEYS))}"
        )
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{source}: 'name' must be a non-empty string")
    duration = None
    if "duration" in data:
        try:
            duration = parse_duration(data["duration"])
        except ValueError as exc:
            raise ScenarioError(f"{source}: {exc}") from None
        if duration <= 0:
            raise ScenarioError(f"{source}: duration must be > 0")
    raw_steps = data.get("step", [])
    if not isinstance(raw_steps, list):
        raise ScenarioError(f"{source}: steps are written as [[step]] tables")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps, 1):
        steps.extend(_step(raw, f"{source}, step {i}"))
    steps.sort(key=lambda s: s.at)  # stable: ties keep the file's order
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{source}: 'description' must be a string")
    speed = data.get("speed", 1.0)
    if (isinstance(speed, bool) or not isinstance(speed, (int, float))
            or not (math.isfinite(speed) and speed > 0)):
        raise ScenarioError(f"{source}: 'speed' must be a number > 0, got {speed!r}")
    try:
        warmup = parse_duration(data.get("warmup", 0), what="warmup")
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    if duration is not None and warmup >= duration:
        raise ScenarioError(f"{source}: the warm-up ({warmup:g}s) must end before the "
                            f"duration ({duration:g}s)")
    scenario = Scenario(name=name, steps=tuple(steps), duration=duration,
                        description=description, source=source, speed=float(speed),
                        warmup=warmup)
    if duration is not None and scenario.end > duration:
        raise ScenarioError(
            f"{source}: a step at {scenario.end:g}s is after the duration ({duration:g}s)"
        )
    return scenario


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with fieldmq."""
    root = resources.files("fieldmq.sim.scenarios")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``"outage"``) or a TOML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or path.exists() or "/" in text:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScenarioError(f"scenario file {text!r} not found") from None
        except OSError as exc:
            raise ScenarioError(f"scenario file {text!r} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"scenario file {text!r} is not valid TOML: {exc}") from None
        return parse_scenario(data, source=text)
    resource = resources.files("fieldmq.sim.scenarios").joinpath(f"{text}.toml")
    if not resource.is_file():
        raise ScenarioError(
            f"unknown scenario {text!r}; built-in scenarios: {', '.join(builtin_scenarios())} "
            "(or give the path of a .toml file)"
        )
    return parse_scenario(tomllib.loads(resource.read_text(encoding="utf-8")), source=text)


def check_groups(scenario: Scenario, groups: Sequence[str]) -> list[Step]:
    """The steps that target a group with no device in ``groups`` (to warn about)."""
    present = set(groups)
    return [s for s in scenario.steps
            if s.action not in BROKER_ACTIONS and s.group != "all" and s.group not in present]
