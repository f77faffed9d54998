"""The fleet simulator: realistic devices on real durable clients, scripted faults,
and a loss audit that compares what devices accepted with what arrived.

Pure parts (no I/O): :mod:`.profiles`, :mod:`.signals`, :mod:`.anomalies`,
:mod:`.device`, :mod:`.fleet`, :mod:`.scenario`, :mod:`.audit`. The parts that
touch the network and disk: :mod:`.acceptlog`, :mod:`.receiver`, :mod:`.worker`,
:mod:`.simulation`, :mod:`.progress`, :mod:`.cli`. See ``docs/simulator.md``.
"""

from __future__ import annotations

from .audit import AuditReport, DeviceAudit, audit_logs
from .fleet import DeviceSpec, build_fleet, parse_mix
from .profiles import PROFILES, MetricSpec, Profile
from .scenario import Scenario, Step, load_scenario, parse_duration
from .simulation import Simulation, SimulationConfig

__all__ = [
    "PROFILES",
    "AuditReport",
    "DeviceAudit",
    "DeviceSpec",
    "MetricSpec",
    "Profile",
    "Scenario",
    "Simulation",
    "SimulationConfig",
    "Step",
    "audit_logs",
    "build_fleet",
    "load_scenario",
    "parse_duration",
    "parse_mix",
]
