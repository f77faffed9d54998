"""The live fleet dashboard: a Starlette app fed from MQTT (``pip install 'fieldmq[dashboard]'``).

* :class:`FleetModel` -- the pure picture of the fleet built from messages;
* :class:`Hub` -- feeds the model from a broker and batches live updates;
* :class:`DashboardServer` -- serves the page, a JSON API and a Server-Sent Events stream.
"""

from __future__ import annotations

from .hub import Hub
from .model import DeviceState, FleetModel

__all__ = ["DashboardServer", "DeviceState", "FleetModel", "Hub"]


def __getattr__(name: str) -> object:
    # The server pulls in uvicorn/starlette: import it only when asked for.
    if name == "DashboardServer":
        from .server import DashboardServer

        return DashboardServer
    raise AttributeError(name)
