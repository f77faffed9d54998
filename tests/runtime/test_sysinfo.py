"""Board probes: disk, temperature and throttling, through real files and a real
command standing in for the Pi's vcgencmd."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fieldmq.runtime.sysinfo import BoardProbe, parse_measure_temp, parse_throttled


def _fake_vcgencmd(tmp_path: Path, throttled: str, temp: str, rc: int = 0) -> str:
    script = tmp_path / "vcgencmd"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n  get_throttled) echo "{throttled}";;\n'
        f'  measure_temp) echo "{temp}";;\nesac\nexit {rc}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _zone(root: Path, n: int, kind: str, milli: str) -> None:
    zone = root / "class" / "thermal" / f"thermal_zone{n}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(milli + "\n")


def test_parsers() -> None:
    """vcgencmd output shapes parse; anything else is None."""
    assert parse_throttled("throttled=0x50005\n") == 0x50005
    assert parse_throttled("0x0") == 0
    assert parse_throttled("error") is None
    assert parse_measure_temp("temp=58.0'C\n") == 58.0
    assert parse_measure_temp("temp=bad") is None


def test_vcgencmd_gives_throttling_and_temperature(tmp_path: Path) -> None:
    """A board with vcgencmd reports its throttle bits and temperature."""
    probe = BoardProbe(vcgencmd=_fake_vcgencmd(tmp_path, "throttled=0x50005", "temp=81.2'C"),
                       sysfs_root=tmp_path / "nosys")
    assert probe.throttled() == 0x50005
    assert probe.temperature() == 81.2


def test_failing_vcgencmd_falls_back_to_sysfs(tmp_path: Path) -> None:
    """When vcgencmd fails, throttling is unknown and sysfs gives the temperature."""
    _zone(tmp_path / "sys", 0, "cpu-thermal", "47250")
    probe = BoardProbe(vcgencmd=_fake_vcgencmd(tmp_path, "x", "y", rc=255),
                       sysfs_root=tmp_path / "sys")
    assert probe.throttled() is None
    assert probe.temperature() == 47.25


def test_sysfs_prefers_cpu_zone_else_hottest(tmp_path: Path) -> None:
    """The CPU zone wins; without one the hottest zone is reported."""
    root = tmp_path / "sys"
    _zone(root, 0, "acpitz", "90000")
    _zone(root, 1, "x86_pkg_temp", "55000")
    _zone(root, 2, "broken", "n/a")
    assert BoardProbe(vcgencmd=None, sysfs_root=root).temperature() == 55.0
    other = tmp_path / "sys2"
    _zone(other, 0, "acpitz", "40000")
    _zone(other, 1, "gpu", "62000")
    assert BoardProbe(vcgencmd=None, sysfs_root=other).temperature() == 62.0


def test_nothing_to_read_is_none(tmp_path: Path) -> None:
    """No vcgencmd and no thermal zones: both measurements are None."""
    probe = BoardProbe(vcgencmd="fieldmq-no-such-command", sysfs_root=tmp_path)
    assert probe.vcgencmd is None
    assert probe.temperature() is None and probe.throttled() is None


def test_disk_usage_of_a_path_not_yet_created(tmp_path: Path) -> None:
    """Disk usage is measured on the nearest existing parent."""
    usage = BoardProbe(disk_path=tmp_path / "a" / "b").disk()
    assert usage is not None and 0 < usage.free <= usage.total


@pytest.mark.skipif(not Path("/sys/class/thermal").exists(), reason="no /sys/class/thermal here")
def test_real_sysfs_does_not_raise() -> None:
    """Reading this machine's real sysfs returns a number or None, never raises."""
    value = BoardProbe(vcgencmd=None).temperature()
    assert value is None or -50 < value < 150
