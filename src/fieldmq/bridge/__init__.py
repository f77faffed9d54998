"""The bridge: durable forwarding between a local broker and an upstream broker.

* :mod:`.config` -- ``BridgeConfig``, ``BridgeMapping``, ``Link``, ``Rollup`` from TOML;
* :mod:`.mapping` -- topic rewriting and filter relations (pure);
* :mod:`.loops` -- loop prevention decisions (pure);
* :mod:`.rollup` -- rollup arithmetic (pure); :mod:`.rollups` -- its durable state;
* :mod:`.bridge` -- ``Bridge``, the two clients and the forwarding;
* :mod:`.observe` -- ``/health`` and ``/metrics``; :mod:`.cli` -- ``fieldmq bridge``.
"""

from __future__ import annotations

from .bridge import Bridge
from .config import BridgeConfig, BridgeMapping, Link, Rollup, load_config, parse_config
from .mapping import TopicRewrite

__all__ = [
    "Bridge",
    "BridgeConfig",
    "BridgeMapping",
    "Link",
    "Rollup",
    "TopicRewrite",
    "load_config",
    "parse_config",
]
