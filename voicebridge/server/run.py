"""Running the service under uvicorn: for ``serve`` and for tests (``running_service``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette

from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.server.app import create_app
from voicebridge.server.drain import Drainer
from voicebridge.server.http_edge import CONFIG_ATTR, EdgeH11Protocol
from voicebridge.server.ws_edge import EdgeWebSocketProtocol

log = structlog.get_logger("voicebridge.server")


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn settings that suit a media stream: no compression, bounded messages; requests
    read within deadlines (``http_edge``), bad frames closed without a traceback (``ws_edge``)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": EdgeH11Protocol,
        "h11_max_incomplete_event_size": settings.http.max_header_bytes,
        "ws": EdgeWebSocketProtocol,
        "ws_max_size": settings.limits.max_message_bytes,
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "proxy_headers": True,
        "timeout_graceful_shutdown": 10,  # after a drain, idle keep-alive connections only
    }


def uvicorn_config(app: Starlette, settings: ServiceSettings) -> uvicorn.Config:
    config = uvicorn.Config(app, **uvicorn_options(settings))
    setattr(config, CONFIG_ATTR, settings.http)  # the edge protocols read their limits here
    return config


class ServiceStartError(Exception):
    """The service stopped before it was up; the reason is in the log lines before it."""


def serve(
    settings: ServiceSettings, spec: PipelineSpec, *, listener: socket.socket | None = None
) -> None:
    """Run the service in the foreground until SIGTERM or Ctrl-C, then exit with status 0.

    ``listener`` is a socket already bound to the service's address (``server.listen``): the
    port is known to be free before the models load. The models load next, here rather than in
    the app's start-up, so a stage that cannot start raises its own error
    (``StageStartError``) instead of a logged traceback.

    The first signal drains (``voicebridge.server.drain``): no new calls, live calls finish up
    to ``drain.deadline_s``, the rest get the goodbye line. A second signal stops at once.
    With ``workers`` > 1, uvicorn's supervisor runs the worker processes instead.
    """
    if settings.workers > 1:
        serve_workers(settings, spec)
        return
    app = create_app(settings, spec, freeze_gc=True, preload=False)
    server = uvicorn.Server(uvicorn_config(app, settings))
    # uvicorn would install its own handlers and re-raise the signal after shutting down (exit
    # status -15); an orderly stop is a success for process supervisors.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    # uvicorn's own choice of event loop (uvloop when installed), as ``server.run()`` would.
    config = server.config
    get_factory = getattr(config, "get_loop_factory", None)
    if get_factory is None:  # older uvicorn sets an event loop policy instead
        config.setup_event_loop()
        factory = None
    else:
        factory = get_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(spec.preload())
        sockets = [listener] if listener is not None else None
        if listener is not None:
            host, port = listener.getsockname()[:2]
            log.info("service_listening", host=host, port=port)
        try:
            runner.run(_serve_until_drained(server, app.state.drainer, sockets))
        except SystemExit as exc:  # uvicorn exits when its start-up fails
            if server.started:
                raise
            raise ServiceStartError("the service failed to start (see the log above)") from exc


async def _serve_until_drained(
    server: uvicorn.Server, drainer: Drainer, sockets: list[socket.socket] | None = None
) -> None:
    loop = asyncio.get_running_loop()
    received: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            log.info("shutdown_requested", signal=name, active_calls=len(drainer.calls))
            task = drainer.start()
            task.add_done_callback(lambda _: setattr(server, "should_exit", True))
        else:
            log.warning("shutdown_forced", signal=name, active_calls=len(drainer.calls))

            def exit_now(_: object) -> None:
                server.force_exit = True  # do not wait for connections
                server.should_exit = True

            stopping = loop.create_task(drainer.stop_now())
            stopping.add_done_callback(exit_now)
            tasks.append(stopping)  # a task nobody references may be garbage-collected

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await server.serve(sockets=sockets)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def serve_workers(settings: ServiceSettings, spec: PipelineSpec) -> None:
    """Run ``settings.workers`` processes on one port: uvicorn's supervisor binds the socket,
    the kernel spreads connections over the workers, and each worker builds the app itself from
    the settings handed down in the environment (``voicebridge.server.factory``). Calls share
    nothing but the state store, so a resumed call may land on any worker. The workers' metrics
    share a directory made here (``shared_metrics_dir``), so any worker's ``/metrics`` answers
    for the whole service."""
    from voicebridge.observe.shared_metrics import shared_metrics_dir
    from voicebridge.server import factory
    from voicebridge.server.security import provide_stream_secret

    provide_stream_secret(settings, os.environ)  # every worker must accept every worker's tokens
    os.environ[factory.SETTINGS_ENV] = settings.model_dump_json()
    pipeline = spec.path or settings.resolve_pipeline_path()
    os.environ[factory.PIPELINE_ENV] = str(pipeline.resolve())
    with shared_metrics_dir():
        uvicorn.run(
            "voicebridge.server.factory:app_from_env",
            factory=True,
            workers=settings.workers,
            **uvicorn_options(settings),
        )


class LoopServer:
    """A uvicorn server run as a task of the current event loop, on a free loopback port.

    The one way tests, fakes and the simulator run an ASGI app beside their own code: the caller
    owns the signals, startup failures surface as exceptions, and ``stop`` waits for shutdown.
    """

    def __init__(self, config: uvicorn.Config, *, force_exit: bool = False) -> None:
        self.server = uvicorn.Server(config)
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self.force_exit = force_exit  # skip waiting for idle keep-alive connections
        self._task: asyncio.Task[None] | None = None
        self.host = config.host
        self.port = config.port

    async def start(self) -> tuple[str, int]:
        server = self.server
        self._task = asyncio.get_running_loop().create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.005)
        self.host, self.port = server.servers[0].sockets[0].getsockname()[:2]
        return self.host, self.port

    async def stop(self, timeout: float = 10.0) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        self.server.force_exit = self.force_exit
        await asyncio.wait_for(self._task, timeout)
        self._task = None


def loopback_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn settings for a small test or fake server: port 0, quiet, no lifespan."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "ws": "none",
        "lifespan": "off",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 1,
    }
    settings.update(options)
    return uvicorn.Config(app, **settings)


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
    loop_server = LoopServer(uvicorn_config(app, settings))
    host, port = await loop_server.start()
    try:
        yield RunningService(app, loop_server.server, host, port)
    finally:
        await loop_server.stop()
