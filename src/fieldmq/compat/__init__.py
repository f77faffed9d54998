"""Drop-in replacements for other MQTT client libraries, built on :class:`fieldmq.Client`.

* :mod:`fieldmq.compat.robmqtt`: ``ProductionMQTTClient`` and ``Config`` with robmqtt
  1.0's constructor, methods and statistics. See ``docs/migrating-from-robmqtt.md``.
"""

from __future__ import annotations

__all__: list[str] = []
