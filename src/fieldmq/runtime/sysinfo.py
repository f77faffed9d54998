"""Board measurements for ``/health``: free disk, CPU temperature, throttling.

A Raspberry Pi does not log that it throttles (seed 09); it tells whoever asks
``vcgencmd get_throttled``. Where ``vcgencmd`` is missing (other boards, a
laptop, a container), the temperature comes from ``/sys/class/thermal`` and
throttling is simply not reported. Each measurement returns ``None`` when the
machine cannot tell, never raises, and never blocks for long (``vcgencmd`` gets
a short timeout).

The seams for tests and unusual boards are explicit: ``sysfs_root`` replaces
``/sys`` and ``vcgencmd`` names the command (``None`` disables it). The parsers
are pure functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BoardProbe", "parse_measure_temp", "parse_throttled"]

_PREFERRED_ZONES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "soc_thermal", "cpu")


def parse_throttled(text: str) -> int | None:
    """``throttled=0x50005`` -> ``0x50005``; ``None`` if it is not that shape."""
    _, sep, value = text.strip().partition("=")
    if not sep:
        value = text.strip()
    try:
        return int(value.strip(), 16)
    except ValueError:
        return None


def parse_measure_temp(text: str) -> float | None:
    """``temp=58.0'C`` -> ``58.0``."""
    _, sep, value = text.strip().partition("=")
    value = (value if sep else text).strip().rstrip("C").rstrip("'").strip()
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DiskUsage:
    free: int
    total: int


class BoardProbe:
    """Read disk, temperature and throttling of this machine.

    ``disk_path`` is the filesystem to watch (the state directory: where the store
    grows). ``vcgencmd`` is looked up on ``PATH`` and in ``/usr/bin`` by default.
    """

    def __init__(
        self,
        *,
        disk_path: str | os.PathLike[str] = "/",
        sysfs_root: str | os.PathLike[str] = "/sys",
        vcgencmd: str | None = "vcgencmd",
        timeout: float = 2.0,
    ) -> None:
        self.disk_path = Path(disk_path)
        self.sysfs_root = Path(sysfs_root)
        self.timeout = timeout
        self.vcgencmd: str | None = None
        if vcgencmd is not None:
            self.vcgencmd = shutil.which(vcgencmd) or shutil.which(
                vcgencmd, path="/usr/bin:/opt/vc/bin"
            )

    def disk(self) -> DiskUsage | None:
        """Free and total bytes of the filesystem holding ``disk_path``."""
        path = self.disk_path
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return None
        return DiskUsage(free=usage.free, total=usage.total)

    def _vcgencmd(self, *args: str) -> str | None:
        if self.vcgencmd is None:
            return None
        try:
            res = subprocess.run(
                [self.vcgencmd, *args], capture_output=True, text=True, timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    def throttled(self) -> int | None:
        """The ``get_throttled`` bit field, or ``None`` where the board does not say."""
        out = self._vcgencmd("get_throttled")
        return None if out is None else parse_throttled(out)

    def temperature(self) -> float | None:
        """CPU temperature in degrees Celsius: ``vcgencmd measure_temp``, else the
        CPU thermal zone in sysfs (the hottest zone when none is named for the CPU)."""
        out = self._vcgencmd("measure_temp")
        if out is not None:
            value = parse_measure_temp(out)
            if value is not None:
                return value
        return self._sysfs_temperature()

    def _sysfs_temperature(self) -> float | None:
        base = self.sysfs_root / "class" / "thermal"
        try:
            zones = sorted(base.glob("thermal_zone*"))
        except OSError:
            return None
        readings: dict[str, float] = {}
        for zone in zones:
            try:
                kind = (zone / "type").read_text().strip()
                milli = int((zone / "temp").read_text().strip())
            except (OSError, ValueError):
                continue
            readings.setdefault(kind, milli / 1000.0)
        if not readings:
            return None
        for name in _PREFERRED_ZONES:
            if name in readings:
                return readings[name]
        return max(readings.values())

    def __repr__(self) -> str:
        return (f"BoardProbe(disk_path={str(self.disk_path)!r}, "
                f"sysfs_root={str(self.sysfs_root)!r}, vcgencmd={self.vcgencmd!r})")
