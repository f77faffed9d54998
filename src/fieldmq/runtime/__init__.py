"""The service runtime: run an MQTT process as a well-behaved service.

``Service`` ties the parts together; each part is usable alone:

* :mod:`.lock` -- the single-instance lock (``InstanceLock``, ``AlreadyRunning``);
* :mod:`.config` -- ``ServiceConfig`` from TOML, ``FIELDMQ_*`` and flags;
* :mod:`.convention` and :mod:`.codec` -- ``group/device/kind/name`` topics and the
  JSON-or-raw payload codec;
* :mod:`.notify` and :mod:`.watchdog` -- systemd ``sd_notify`` and when to feed it;
* :mod:`.systemd_unit` and :mod:`.supervisor_conf` -- generated deployment files;
* :mod:`.health`, :mod:`.sysinfo`, :mod:`.metrics`, :mod:`.httpserver` -- ``/health``
  and ``/metrics``;
* :mod:`.logs` -- JSON and human log formatters that never print secrets.
"""

from __future__ import annotations

from .codec import decode, encode
from .config import ServiceConfig, load_config
from .convention import DeviceTopics, TopicParts, build_topic, parse_topic
from .health import HealthReport, HealthThresholds
from .lock import AlreadyRunning, InstanceLock
from .logs import JsonFormatter
from .notify import Notifier
from .service import EXIT_ALREADY_RUNNING, EXIT_CONFIG, Service
from .sysinfo import BoardProbe

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "EXIT_CONFIG",
    "AlreadyRunning",
    "BoardProbe",
    "DeviceTopics",
    "HealthReport",
    "HealthThresholds",
    "InstanceLock",
    "JsonFormatter",
    "Notifier",
    "Service",
    "ServiceConfig",
    "TopicParts",
    "build_topic",
    "decode",
    "encode",
    "load_config",
    "parse_topic",
]
