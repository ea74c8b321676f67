"""A real webhook receiver on loopback whose answers a test scripts, and worker settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from voicebridge.config.service_settings import WebhookSettings
from voicebridge.server.run import LoopServer, loopback_config

SECRET = "webhook-secret-for-tests-0123456789"
WALL = 1_700_000_000.0  # the worker's wall clock in these tests: signatures are checked at it


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted action: an HTTP status (int), or ``"hang"``
    (no answer until ``release``). Past the script: 200. Every request is kept, in order."""

    script: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    inflight: int = 0
    most_inflight: int = 0

    async def handle(self, request: Request) -> Response:
        got = Received(dict(request.headers), await request.body())
        self.requests.append(got)
        action = self.script.pop(0) if self.script else 200
        self.arrived.put_nowait(got)
        if action == "hang":
            self.inflight += 1
            self.most_inflight = max(self.most_inflight, self.inflight)
            try:
                await self.released.wait()
            finally:
                self.inflight -= 1
            return PlainTextResponse("late", status_code=200)
        headers = {"Retry-After": "0"} if action == 429 else None
        return PlainTextResponse("ok" if action == 200 else "no", int(action), headers=headers)

    async def next(self, timeout_s: float = 20.0) -> Received:
        """The next request to arrive (bounded wait: a failure, not a timing check)."""
        return await asyncio.wait_for(self.arrived.get(), timeout_s)


@contextlib.asynccontextmanager
async def receiver(*script: int | str, path: str = "/hook") -> AsyncIterator[Receiver]:
    rx = Receiver(list(script))
    app = Starlette(routes=[Route(path, rx.handle, methods=["POST"])])
    server = LoopServer(loopback_config(app), force_exit=True)
    host, port = await server.start()
    rx.url = f"http://{host}:{port}{path}"
    try:
        yield rx
    finally:
        rx.released.set()
        await server.stop()


def webhook_settings(url: str, spool: Path, **overrides: Any) -> WebhookSettings:
    base: dict[str, Any] = {
        "url": url,
        "spool_dir": str(spool),
        "timeout_s": 5.0,
        "backoff_initial_s": 1.0,
        "backoff_max_s": 8.0,
    }
    base.update(overrides)
    return WebhookSettings.model_validate(base)


def spooled(spool: Path) -> list[str]:
    """Names of the documents waiting in every shard."""
    return sorted(p.name for p in spool.glob("shard-*/*.json"))


def dead(spool: Path) -> list[str]:
    return sorted(p.name for p in (spool / "dead").glob("*.json"))


async def until(predicate: Any, timeout_s: float = 20.0) -> None:
    """Poll a condition the test cannot await directly (bounded; not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)
