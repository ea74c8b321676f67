"""Running the service under uvicorn: for ``serve`` and for tests (``running_service``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.server.app import create_app


def uvicorn_config(app: Starlette, settings: ServiceSettings) -> uvicorn.Config:
    """uvicorn settings that suit a media stream: no compression, bounded messages."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.limits.max_message_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=True,
    )


def serve(settings: ServiceSettings, spec: PipelineSpec) -> None:
    """Run the service in the foreground; SIGTERM or Ctrl-C stop it cleanly with exit status 0."""
    server = uvicorn.Server(uvicorn_config(create_app(settings, spec), settings))

    def stop(signum: int, frame: object) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True  # a second Ctrl-C does not wait for calls
        server.should_exit = True

    # uvicorn would re-raise the signal after shutting down (exit status -15); an orderly
    # stop is a success for process supervisors.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RunningService:
    app: Starlette
    server: uvicorn.Server
    host: str
    port: int

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/stream"


@contextlib.asynccontextmanager
async def running_service(
    settings: ServiceSettings, spec: PipelineSpec, **app_options: Any
) -> AsyncIterator[RunningService]:
    """Start the real service on a loopback port in this event loop (port 0 picks a free one).

    ``app_options`` go to ``create_app`` (clock_factory, record_events, on_session).
    """
    app = create_app(settings, spec, **app_options)
    server = uvicorn.Server(uvicorn_config(app, settings))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the service stopped while starting")
        await asyncio.sleep(0.01)
    sock = server.servers[0].sockets[0]
    host, port = sock.getsockname()[:2]
    try:
        yield RunningService(app, server, host, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
