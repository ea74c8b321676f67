"""The ASGI app: routes, start-up (models load here, not on the first call) and state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicebridge import __version__
from voicebridge.clock import Clock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.plivo.answer_xml import stream_xml
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.calls import CallRegistry
from voicebridge.server.stream import handle_stream
from voicebridge.server.urls import http_url, stream_url
from voicebridge.session import Session, SessionLimits, Transport

log = structlog.get_logger("voicebridge.server")


def create_app(
    settings: ServiceSettings,
    spec: PipelineSpec,
    *,
    clock_factory: Callable[[], Clock] | None = None,
    record_events: bool = False,
    on_session: Callable[[Session], None] | None = None,
) -> Starlette:
    """Build the service for one pipeline.

    ``clock_factory``, ``record_events`` and ``on_session`` are for the simulator and tests: a
    per-call clock (virtual time), the per-call event timeline, and a look at each new session.
    """
    calls = CallRegistry(settings.limits.max_calls)
    limits = SessionLimits(max_call_seconds=settings.limits.max_call_seconds)

    def make_session(transport: Transport) -> Session:
        session = Session(
            spec,
            transport,
            clock=clock_factory() if clock_factory else None,
            limits=limits,
            record_events=record_events,
        )
        if on_session is not None:
            on_session(session)
        return session

    stream_format = StreamFormat.from_short(settings.stream.codec, settings.stream.sample_rate)

    async def answer(request: Request) -> Response:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            with contextlib.suppress(Exception):
                params.update(dict(await request.form()))
        xml = stream_xml(
            stream_url(request, settings.public_url),
            bidirectional=True,
            keep_call_alive=settings.stream.keep_call_alive,
            content_type=stream_format.content_type,
            stream_timeout=settings.stream.stream_timeout_s,
            status_callback_url=(
                http_url(request, settings.public_url, "/status")
                if settings.stream.status_callback
                else None
            ),
            status_callback_method="POST" if settings.stream.status_callback else None,
            extra_headers=settings.stream.extra_headers or None,
            noise_cancellation=settings.stream.noise_cancellation or None,
        )
        log.info("answered", call_uuid=str(params.get("CallUUID", ""))[:64], method=request.method)
        return Response(xml, media_type="application/xml")

    async def status(request: Request) -> Response:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            with contextlib.suppress(Exception):
                params.update(dict(await request.form()))
        event = str(params.get("Event", "unknown"))[:64]
        fields = {k: str(v)[:200] for k, v in params.items() if k != "Event"}
        level = "warning" if event in ("DroppedStream", "DegradedStream") else "info"
        getattr(log, level)("stream_status", status_event=event, **fields)
        return PlainTextResponse("OK")

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "pipeline": spec.name,
                "active_calls": len(calls),
                "total_calls": calls.total,
            }
        )

    async def stream(ws: WebSocket) -> None:
        await handle_stream(ws, make_session, calls)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await spec.preload()  # models load at start-up, not on the first call
        log.info("service_ready", pipeline=spec.name, version=__version__)
        yield
        for session in calls.sessions():
            await session.end("service_stopping", code=1001)

    app = Starlette(
        routes=[
            Route("/answer", answer, methods=["GET", "POST"]),
            Route("/status", status, methods=["GET", "POST"]),
            Route("/health", health, methods=["GET"]),
            WebSocketRoute("/stream", stream),
        ],
        lifespan=lifespan,
    )
    app.state.calls = calls
    app.state.spec = spec
    app.state.settings = settings
    return app
