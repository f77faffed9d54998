"""--mix parsing, fleet building and splitting, durations and scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldmq.sim.fleet import build_fleet, parse_mix, split
from fieldmq.sim.scenario import (
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    parse_duration,
    parse_scenario,
)


def test_parse_mix() -> None:
    """A mix is PROFILE=COUNT pairs separated by commas."""
    assert parse_mix("sensor=30, camera=10,gateway=0") == {"sensor": 30, "camera": 10,
                                                           "gateway": 0}


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("sensor", "PROFILE=COUNT"),
    ("sensr=3", "unknown profile 'sensr'; known profiles: sensor, camera"),
    ("sensor=x", "whole number"),
    ("sensor=-1", ">= 0"),
    ("sensor=1,sensor=2", "twice"),
    ("sensor=0", "no devices"),
    ("sensor=1,,camera=2", "empty item"),
])
def test_parse_mix_errors(text: str, message: str) -> None:
    """A bad mix is refused with a message that says what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_mix(text)


def test_build_fleet_counts_and_ids() -> None:
    """--devices splits by the mix's weights; without it the mix gives the counts."""
    fleet = build_fleet(seed=1, devices=50, mix={"sensor": 30, "camera": 10, "gateway": 5,
                                                 "controller": 5})
    counts = {p: sum(d.profile == p for d in fleet) for p in ("sensor", "camera", "gateway",
                                                               "controller")}
    assert counts == {"sensor": 30, "camera": 10, "gateway": 5, "controller": 5}
    assert fleet[0].device_id == "sensor-001"
    assert len({d.device_id for d in fleet}) == 50
    weighted = build_fleet(seed=1, devices=7, mix={"sensor": 1, "camera": 1})
    assert sorted(d.profile for d in weighted).count("sensor") in (3, 4)
    assert len(build_fleet(seed=1, mix={"camera": 3})) == 3
    assert len(build_fleet(seed=1, devices=10)) == 10
    with pytest.raises(ValueError, match="--devices"):
        build_fleet(seed=1, devices=0)


def test_offsets_spread_within_the_interval() -> None:
    """First readings are spread over the interval, not all at once."""
    fleet = build_fleet(seed=9, mix={"camera": 20})
    offsets = [d.offset for d in fleet]
    assert all(0 <= o <= 5.0 for o in offsets)
    assert max(offsets) - min(offsets) > 2.5


def test_split_round_robin() -> None:
    """Devices are dealt to processes round-robin; never an empty process."""
    fleet = build_fleet(seed=1, devices=10)
    parts = split(fleet, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sorted(d.device_id for p in parts for d in p) == sorted(d.device_id for d in fleet)
    assert len(split(fleet[:2], 8)) == 2
    with pytest.raises(ValueError, match="processes"):
        split(fleet, 0)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("1h30m", 5400.0), ("250ms", 0.25),
    (12, 12.0), ("2m 30s", 150.0),
])
def test_parse_duration(text: object, seconds: float) -> None:
    """Durations accept seconds and ms/s/m/h/d units, combined."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "5s10", "nan", "inf", True, None])
def test_parse_duration_errors(text: object) -> None:
    """A bad duration is refused with an example of a good one."""
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_builtin_scenarios_load() -> None:
    """The shipped scenarios load from the package and are valid."""
    assert {"outage", "flaky-4g", "power-cycle"} <= set(builtin_scenarios())
    outage = load_scenario("outage")
    assert outage.needs_broker and outage.duration == 1200.0
    assert outage.speed == 20.0 and outage.warmup == 300.0  # one wall-clock minute
    assert [s.action for s in outage.steps][:2] == ["broker-stop", "broker-start"]
    assert min(s.at for s in outage.steps) > outage.warmup
    flaky = load_scenario("flaky-4g")
    assert not flaky.needs_broker and "gateway" in flaky.network_groups
    power = load_scenario("power-cycle")
    assert {s.action for s in power.steps} == {"device-kill", "device-restart"}


def test_for_adds_the_undo_step_and_scaling() -> None:
    """'for' adds the step that undoes the fault; scaled() multiplies every time."""
    sc = parse_scenario({"duration": "60s", "step": [
        {"at": "10s", "action": "latency", "group": "camera", "ms": 200, "for": "5s"},
        {"at": "2s", "action": "device-kill", "devices": ["sensor-00*"], "for": 3},
    ]})
    assert [(s.at, s.action, s.group) for s in sc.steps] == [
        (2.0, "device-kill", "all"), (5.0, "device-restart", "all"),
        (10.0, "latency", "camera"), (15.0, "pass", "camera")]
    assert sc.steps[0].selects("sensor-003", "sensor")
    assert not sc.steps[0].selects("camera-003", "camera")
    half = sc.scaled(0.5)
    assert [s.at for s in half.steps] == [1.0, 2.5, 5.0, 7.5] and half.duration == 30.0


def test_speed_and_warmup() -> None:
    """'speed' and 'warmup' are read; scaled() scales the warm-up but not the speed."""
    sc = parse_scenario({"duration": "10m", "speed": 15, "warmup": "2m"})
    assert (sc.speed, sc.warmup) == (15.0, 120.0)
    half = sc.scaled(0.5)
    assert (half.speed, half.warmup, half.duration) == (15.0, 60.0, 300.0)
    plain = parse_scenario({})
    assert (plain.speed, plain.warmup) == (1.0, 0.0)


@pytest.mark.parametrize(("data", "message"), [
    ({"step": [{"at": "1s", "action": "explode"}]}, "unknown action 'explode'"),
    ({"step": [{"at": "1s"}]}, "needs 'at' and 'action'"),
    ({"step": [{"at": "soon", "action": "reset"}]}, "step 1: bad 'at'"),
    ({"step": [{"at": 1, "action": "latency"}]}, "needs ms"),
    ({"step": [{"at": 1, "action": "reset", "ms": 3}]}, "takes no 'ms'"),
    ({"step": [{"at": 1, "action": "reset", "group": "toaster"}]}, "unknown group 'toaster'"),
    ({"step": [{"at": 1, "action": "broker-stop", "group": "camera"}]}, "acts on the broker"),
    ({"step": [{"at": 1, "action": "pass", "for": "3s"}]}, "cannot take 'for'"),
    ({"step": [{"at": 1, "action": "reset", "colour": 3}]}, "unknown key"),
    ({"duration": "5s", "step": [{"at": 9, "action": "reset"}]}, "after the duration"),
    ({"steps": []}, "unknown key"),
    ({"speed": 0}, "'speed' must be a number > 0"),
    ({"speed": "fast"}, "'speed' must be a number > 0"),
    ({"warmup": "soon"}, "bad warmup"),
    ({"duration": "1m", "warmup": "1m"}, "must end before the duration"),
])
def test_scenario_errors(data: dict[str, object], message: str) -> None:
    """A bad scenario is refused with the step and the problem named."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data, source="test.toml")


def test_load_scenario_errors(tmp_path: Path) -> None:
    """Unknown names list the built-ins; missing or invalid files are named."""
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'; built-in scenarios: "):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
    good = tmp_path / "mine.toml"
    good.write_text('[[step]]\nat = "1s"\naction = "blackhole"\ngroup = "gateway"\n')
    assert load_scenario(good).name == "mine"
