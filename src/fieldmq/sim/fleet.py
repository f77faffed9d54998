"""Which devices make up a fleet: parsing ``--mix``, naming and seeding devices, and
splitting them between processes. Pure and deterministic from the run seed."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .profiles import PROFILES
from .signals import derive_seed

__all__ = ["DEFAULT_MIX", "DeviceSpec", "build_fleet", "parse_mix", "split"]

DEFAULT_MIX: Mapping[str, int] = {"sensor": 6, "camera": 2, "gateway": 1, "controller": 1}


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device: its id (also its topic level), profile, fault group
    (the profile name: devices of a group share a fault proxy), seed and the offset
    of its first reading within its interval (spreads the fleet's load)."""

    device_id: str
    profile: str
    seed: int
    offset: float

    @property
    def group(self) -> str:
        return self.profile


def parse_mix(text: str) -> dict[str, int]:
    """``"sensor=30,camera=10"`` -> ``{"sensor": 30, "camera": 10}``.

    Raises ``ValueError`` saying what is wrong: unknown profile, missing ``=``,
    a count that is not a non-negative integer, a profile given twice, all zero.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("--mix is empty; write e.g. sensor=30,camera=10")
    mix: dict[str, int] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ValueError(f"--mix {text!r} has an empty item; write e.g. sensor=30,camera=10")
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--mix item {item!r} needs PROFILE=COUNT, e.g. sensor=30")
        if name not in PROFILES:
            raise ValueError(
                f"--mix: unknown profile {name!r}; known profiles: {', '.join(PROFILES)}"
            )
        if name in mix:
            raise ValueError(f"--mix names {name!r} twice")
        try:
            n = int(count.strip())
        except ValueError:
            raise ValueError(
                f"--mix: the count for {name!r} must be a whole number, got {count.strip()!r}"
            ) from None
        if n < 0:
            raise ValueError(f"--mix: the count for {name!r} must be >= 0, got {n}")
        mix[name] = n
    if sum(mix.values()) == 0:
        raise ValueError(f"--mix {text!r} has no devices")
    return mix


def _apportion(mix: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` devices in proportion to ``mix`` (largest remainder)."""
    weight = sum(mix.values())
    exact = {name: total * w / weight for name, w in mix.items()}
    counts = {name: int(v) for name, v in exact.items()}
    left = total - sum(counts.values())
    order = sorted(mix, key=lambda n: (-(exact[n] - counts[n]), list(mix).index(n)))
    for name in order[:left]:
        counts[name] += 1
    return counts


def build_fleet(
    *, seed: int, devices: int | None = None, mix: Mapping[str, int] | None = None
) -> list[DeviceSpec]:
    """The fleet for ``seed``: ``devices`` in total split in proportion to ``mix``
    (weights); without ``devices`` the mix gives the counts; without ``mix`` the
    default 6:2:1:1 sensor/camera/gateway/controller mix is used."""
    if devices is not None and (isinstance(devices, bool) or devices < 1):
        raise ValueError(f"--devices must be >= 1, got {devices!r}")
    mix = dict(mix or DEFAULT_MIX)
    for name in mix:
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
    counts = _apportion(mix, devices) if devices is not None else dict(mix)
    fleet: list[DeviceSpec] = []
    for name in PROFILES:
        interval = PROFILES[name].interval
        for n in range(1, counts.get(name, 0) + 1):
            device_id = f"{name}-{n:03d}"
            dseed = derive_seed(seed, device_id)
            offset = random.Random(derive_seed(dseed, "offset")).uniform(0.0, interval)
            fleet.append(DeviceSpec(device_id, name, dseed, offset))
    return fleet


def split(fleet: Sequence[DeviceSpec], parts: int) -> list[list[DeviceSpec]]:
    """Deal the devices round-robin into ``parts`` non-empty lists (fewer if the
    fleet is smaller), so every process gets a similar mix of profiles."""
    if parts < 1:
        raise ValueError(f"--processes must be >= 1, got {parts!r}")
    parts = min(parts, len(fleet)) or 1
    out: list[list[DeviceSpec]] = [[] for _ in range(parts)]
    for i, spec in enumerate(fleet):
        out[i % parts].append(spec)
    return out
