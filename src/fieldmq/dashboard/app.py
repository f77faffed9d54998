"""The dashboard's web application (Starlette): the page, its static files, a JSON API
and a Server-Sent Events stream of live updates. Charts are drawn by uPlot, shipped in
``static/`` (MIT licence, see ``static/UPLOT-LICENSE.txt``): nothing is fetched from the
internet at run time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .hub import Hub

__all__ = ["create_app"]

STATIC = Path(__file__).with_name("static")


def create_app(hub: Hub, *, title: str = "fieldmq fleet", poll: float = 0.5) -> Starlette:
    """Build the ASGI app serving ``hub``."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def snapshot(request: Request) -> Response:
        snap = hub.snapshot()
        snap["title"] = title
        return JSONResponse(snap)

    async def device(request: Request) -> Response:
        data = hub.device(request.path_params["device"])
        if data is None:
            return JSONResponse({"error": "unknown device"}, status_code=404)
        return JSONResponse(data)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "devices": len(hub.model.devices)})

    async def events(request: Request) -> Response:
        try:
            last = int(request.query_params.get("after", "-1"))
        except ValueError:
            return JSONResponse({"error": "after must be an integer"}, status_code=400)

        async def stream() -> AsyncIterator[str]:
            nonlocal last
            if last < 0:
                snap = hub.snapshot()
                snap["title"] = title
                last = int(snap["batch"])
                yield _sse("snapshot", snap, last)
            idle = 0.0
            while True:
                if await request.is_disconnected():
                    return
                newest, updates = hub.batches_after(last)
                if updates:
                    last = newest
                    idle = 0.0
                    yield _sse("updates", updates, last)
                else:
                    idle += poll
                    if idle >= 15.0:  # a comment line keeps proxies from closing the stream
                        idle = 0.0
                        yield ": keep-alive\n\n"
                await asyncio.sleep(poll)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/snapshot", snapshot),
            Route("/api/device/{device:str}", device),
            Route("/api/events", events),
            Route("/healthz", health),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ]
    )


def _sse(event: str, data: Any, ident: int) -> str:
    return f"id: {ident}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
