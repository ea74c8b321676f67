"""The ASGI app: routes, start-up (models load here, not on the first call) and state.

Operators get ``/health`` (503 while draining), ``/metrics`` (Prometheus) and
``app.state.drainer`` (graceful drain; ``serve`` starts it on SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicebridge import __version__
from voicebridge.call.core import CallLimits
from voicebridge.clock import Clock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.observe.bounded import bounded
from voicebridge.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from voicebridge.observe.metrics import LoopLagMonitor, ServiceMetrics
from voicebridge.observe.recording import CallRecorder, EventLogWriter
from voicebridge.observe.shared_metrics import multiprocess_dir
from voicebridge.observe.throttle import LogThrottle
from voicebridge.plivo.answer_xml import dial_xml
from voicebridge.ports import Transport
from voicebridge.server import worker_drain
from voicebridge.server.admission import AdmissionLimits, PendingStreams
from voicebridge.server.call_legs import CallLegs
from voicebridge.server.call_outcomes import (
    CallOutcomes,
    ReportLocator,
    hangup_endpoint,
    outcome_endpoint,
)
from voicebridge.server.call_pages.store import CallStore
from voicebridge.server.call_pages.views import CallPages
from voicebridge.server.call_parties import CallParties
from voicebridge.server.calls import CallRegistry
from voicebridge.server.drain import Drainer
from voicebridge.server.forms import callback_params
from voicebridge.server.nonces import NonceMemory
from voicebridge.server.outbound_api import calls_endpoint, check_key
from voicebridge.server.outbound_call import (
    MachineHandling,
    machine_detection_for,
    machine_endpoint,
)
from voicebridge.server.outcome_store import outcome_store
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.server.security import (
    SecurityConfig,
    SignatureGuard,
    StreamGuard,
    security_summary,
)
from voicebridge.server.stream import handle_stream
from voicebridge.server.stream_answer import answer_xml
from voicebridge.server.urls import http_url, stream_url
from voicebridge.session import Session
from voicebridge.telephony.call_control import PlivoCallControl
from voicebridge.telephony.call_vars import InvalidVars, sign_vars, verify_vars
from voicebridge.telephony.dialer import api_key, default_from
from voicebridge.telephony.plivo_rest import PlivoRest
from voicebridge.webhook.delivery import WebhookDelivery
from voicebridge.webhook.document import CallReporter

if TYPE_CHECKING:
    from voicebridge.observe.tracing_setup import CallTracing

log = structlog.get_logger("voicebridge.server")

_CLIENT_GONE = LogThrottle()
_TRANSFER_TARGET = re.compile(r"\+?[0-9]{3,16}|sip:[^\s<>\"']{3,200}")


def tracing_for(settings: ServiceSettings, spec: PipelineSpec) -> CallTracing | None:
    """The service's call tracing when ``tracing:`` or the ``OTEL_*`` environment turn it on;
    otherwise None, and nothing of OpenTelemetry is imported."""
    if not settings.tracing.active(os.environ):
        return None
    from voicebridge.observe.tracing_setup import tracing_from_settings

    return tracing_from_settings(settings.tracing, spec, os.environ)


def create_app(
    settings: ServiceSettings,
    spec: PipelineSpec,
    *,
    clock_factory: Callable[[], Clock] | None = None,
    record_events: bool = False,
    on_session: Callable[[Session], None] | None = None,
    rest_factory: Callable[[], PlivoRest | None] | None = None,
    security: SecurityConfig | None = None,
    resumes: ResumeRegistry | None = None,
    drain_on_sigterm: bool = False,
    freeze_gc: bool = False,
    preload: bool = True,
    webhook: WebhookDelivery | None = None,
    tracing: CallTracing | None = None,
) -> Starlette:
    """Build the service for one pipeline.

    ``clock_factory``, ``record_events`` and ``on_session`` are for the simulator and tests: a
    per-call clock (virtual time), the per-call event timeline, and a look at each new session.
    ``security`` defaults to the settings' switches with secrets from the environment.
    ``drain_on_sigterm``: a worker process of ``serve --workers N`` drains on SIGTERM itself.
    ``freeze_gc``: once started (models loaded), move everything alive into the collector's
    permanent generation (``gc.freeze``), so full collections no longer scan the models and
    libraries: without it a collection pauses every call for tens of milliseconds.
    ``resumes`` replaces the dropped-call registry built from ``settings.state`` (tests give one
    on a virtual clock). ``preload=False``: the caller has loaded the models already (``serve``
    does, before uvicorn starts, so a stage that cannot start fails with its own error).
    ``webhook`` replaces the post-call webhook worker built from ``settings.webhook`` and
    ``VOICEBRIDGE_WEBHOOK_SECRET`` (tests give one on a virtual clock).
    ``tracing``: traces calls through this instead of what ``settings.tracing`` and the
    ``OTEL_*`` environment set up (tests give one with an in-memory exporter).
    """
    security = security or SecurityConfig.from_env(settings)
    if resumes is None:
        resumes = resume_registry(settings)
    signatures = SignatureGuard.from_config(
        security,
        settings.public_url,
        NonceMemory(settings.security.replay_window_s, shared=resumes.store),
    )
    legs = CallLegs(settings.security.leg_quiet_s)
    stream_guard = StreamGuard.from_config(security, legs.may_take_over)
    calls = CallRegistry(settings.limits.max_calls)
    pending = PendingStreams(
        AdmissionLimits(
            start_timeout_s=settings.limits.start_timeout_s,
            max_pending=settings.limits.max_pending_streams,
            max_pending_per_peer=settings.limits.max_pending_per_peer,
        )
    )
    limits = CallLimits(
        max_call_seconds=settings.limits.max_call_seconds,
        media_burst_s=settings.limits.media_burst_s,
        media_flood_s=settings.limits.media_flood_s,
    )
    metrics = ServiceMetrics(stage_names={st.cls.role: st.name for st in reversed(spec.stages)})
    metrics.track_active(lambda: len(calls))
    registry_of_drops = resumes
    metrics.track_resumes(lambda: registry_of_drops.stats.as_dict())
    metrics.track_counters(
        "streams_refused",
        "Sockets refused before their start, by reason.",
        "reason",
        lambda: pending.refused,
    )
    calls.on_refused = lambda reason: metrics.calls.labels("refused").inc()
    calls.on_change = metrics.sync  # shared metrics (workers): the active count now
    drainer = Drainer(calls, settings.drain)
    lag_monitor = LoopLagMonitor(metrics)
    if webhook is None and settings.webhook.url is not None:
        webhook = WebhookDelivery.from_settings(settings.webhook, os.environ)
    if webhook is not None:
        stats = webhook.stats
        metrics.track_counters(
            "webhook_documents",
            "Post-call webhook documents: enqueued, delivered, failed_attempts, dead, dropped.",
            "outcome",
            stats.as_dict,
        )
    parties = CallParties()  # filled by /answer for the webhook's from/to
    own_tracing = tracing is None
    if tracing is None:
        tracing = tracing_for(settings, spec)

    rest_holder: dict[str, PlivoRest | None] = {"rest": None}
    outbound_key = api_key()
    page_settings = settings.call_pages
    call_store = CallStore(page_settings.keep_calls, page_settings.max_events)
    pages_on = page_settings.enabled and outbound_key is not None

    def call_subscribers(call_vars: dict[str, str]) -> list[Any]:
        """Each call's operator-side subscribers: metrics, the files the settings ask for, then
        the post-call webhook's reporter and the call pages' watcher (after the files: they
        read the finished recording and event log when the call closes)."""
        subscribers: list[Any] = [metrics.call_subscriber()]
        event_log = recorder = None
        if settings.events.dir:
            event_log = EventLogWriter(settings.events.dir, spec.name)
            subscribers.append(event_log)
        if settings.recording.dir:
            recorder = CallRecorder(settings.recording.dir)
            subscribers.append(recorder)
        if tracing is not None:  # made here, in the call's task: its stages inherit the context
            subscribers.append(tracing.call_tracer())
        if webhook is not None:
            subscribers.append(
                CallReporter(
                    webhook.enqueue,
                    pipeline=spec.name,
                    parties=parties.get,
                    recording=(lambda: recorder.path) if recorder is not None else None,
                    call_vars=call_vars,
                )
            )
        watcher = None
        if pages_on:
            watcher = call_store.watcher(spec.name, recorder, event_log)
            subscribers.append(watcher)
        reports = event_log is not None or recorder is not None or watcher is not None
        if spec.outbound is not None and reports:  # a placed call's outcome names its report

            def page() -> str | None:
                if watcher is None or watcher.entry is None:
                    return None
                return f"/calls/{watcher.entry.key}/page"

            subscribers.append(ReportLocator(outcomes, event_log, recorder, page))
        return subscribers

    call_pages = CallPages(
        page_settings,
        call_store,
        key=outbound_key,
        events_dir=settings.events.dir,
        recording_dir=settings.recording.dir,
        max_call_seconds=settings.limits.max_call_seconds,
    )
    shared = multiprocess_dir()  # serve --workers N: the folder the supervisor made
    outcomes = CallOutcomes(
        outcome_store(settings.state, os.path.join(shared, "outcomes") if shared else None),
    )
    machine_handling: weakref.WeakKeyDictionary[Session, MachineHandling] = (
        weakref.WeakKeyDictionary()
    )

    def handling_of(call_uuid: str) -> MachineHandling | None:
        for session in calls.sessions():
            if session.ctx is not None and session.ctx.info.call_id == call_uuid:
                return machine_handling.get(session)
        return None

    def make_session(transport: Transport, conn: HTTPConnection) -> Session:
        rest = rest_holder["rest"]
        control = None
        if rest is not None:

            def transfer_url(to: str) -> str:
                base = http_url(conn, settings.public_url, "/transfer")
                return f"{base}?{urlencode({'to': to})}"

            control = PlivoCallControl(rest, transfer_url)
        try:  # checked by /answer already; a stream URL with bad variables starts no call
            call_vars = verify_vars(conn.query_params, outbound_key)
        except InvalidVars:
            call_vars = {}
            log.warning("call_vars_refused", where="stream")
        session = Session(
            spec,
            transport,
            clock=clock_factory() if clock_factory else None,
            limits=limits,
            record_events=record_events,
            call_control=control,
            subscribers=call_subscribers(call_vars),
            state_hooks=resumes if resumes.enabled else None,
        )
        session.core.call_vars = call_vars
        if spec.outbound is not None:
            machine_handling[session] = MachineHandling(
                session,
                spec.outbound,
                on_voicemail=outcomes.voicemail_left,
                verdicts=outcomes.verdict,
            )
        if on_session is not None:
            on_session(session)
        return session

    async def answer(request: Request) -> Response:
        if drainer.draining:  # Plivo then tries the number's fallback answer URL
            log.info("answer_refused", reason="draining")
            return PlainTextResponse("draining", status_code=503, headers={"Retry-After": "5"})
        params = await callback_params(request)
        call_uuid = str(params.get("CallUUID", ""))
        try:  # an outbound call's variables, signed when the call was placed
            call_vars = verify_vars(request.query_params, outbound_key)
        except InvalidVars as exc:
            log.warning("answer_refused", reason="call_vars", detail=str(exc)[:120])
            return PlainTextResponse(f"forbidden: {exc}", status_code=403)
        if webhook is not None:
            parties.remember(call_uuid, params)
        query = ""
        if stream_guard is not None:
            if call_uuid and (
                stream_guard.store.call_active(call_uuid)
                or legs.live(call_uuid) is not None
                or resumes.snapshot(call_uuid) is not None
            ):
                # The call already has its key: a replayed or second /answer gets none.
                log.warning("answer_refused", reason="call_live", call_uuid=call_uuid[:64])
                return PlainTextResponse("conflict: this call already has a stream", 409)
            try:
                query = stream_guard.stream_query(call_uuid)
            except ValueError:
                log.warning("answer_refused", reason="no_call_uuid", call_uuid=call_uuid[:64])
                return PlainTextResponse("CallUUID: required for a stream token", status_code=400)
        if call_vars and outbound_key:  # carried on to the stream, signed as they came
            query = "&".join(q for q in (query, urlencode(sign_vars(call_vars, outbound_key))) if q)
        xml = answer_xml(
            settings.stream,
            stream_url(request, settings.public_url, query),
            http_url(request, settings.public_url, "/status"),
        )
        log.info("answered", call_uuid=call_uuid[:64], method=request.method)
        return Response(xml, media_type="application/xml")

    async def status(request: Request) -> Response:
        params = await callback_params(request)
        event = str(params.get("Event", "unknown"))[:64]
        # Nested, not spread: a parameter named like a log field must not clash with it.
        fields = bounded({k: v for k, v in params.items() if k != "Event"})
        level = "warning" if event in ("DroppedStream", "DegradedStream") else "info"
        getattr(log, level)("stream_status", status_event=event, params=fields)
        return PlainTextResponse("OK")

    async def transfer(request: Request) -> Response:
        """The XML a transferred call runs: dial the target the agent asked for."""
        params = await callback_params(request)
        to = str(params.get("to", ""))
        if not _TRANSFER_TARGET.fullmatch(to):
            log.warning("transfer_target_refused", to=to[:64])
            return PlainTextResponse("to: expected a phone number or sip: URI", status_code=400)
        log.info("transfer_xml", to=bounded(to, 64), call_uuid=str(params.get("CallUUID", ""))[:64])
        return Response(dial_xml(to), media_type="application/xml")

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "draining" if drainer.draining else "ok",
                "version": __version__,
                "pipeline": spec.name,
                "active_calls": len(calls),
                "total_calls": calls.total,
                "suspended_calls": len(resumes),
                "pid": os.getpid(),
                "state": resumes.store.name,
            },
            status_code=503 if drainer.draining else 200,
        )

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    create_call = calls_endpoint(
        key=outbound_key,
        default_from=default_from(),
        rest=lambda: rest_holder["rest"],
        public_url=lambda request: http_url(request, settings.public_url, ""),
        machine_detection=lambda request: machine_detection_for(
            spec.outbound, http_url(request, settings.public_url, "/machine")
        ),
        outcomes=outcomes,
    )

    async def stream(ws: WebSocket) -> None:
        await handle_stream(ws, make_session, calls, stream_guard, resumes, legs, pending)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload:
            await spec.preload()  # models load at start-up, not on the first call
        for warning in spec.warnings:  # what validate printed, for whoever only reads logs
            log.warning("pipeline_warning", detail=str(warning))
        rest_holder["rest"] = rest_factory() if rest_factory else PlivoRest.from_env()
        log.info(
            "service_ready",
            pipeline=spec.name,
            version=__version__,
            plivo_rest="configured" if rest_holder["rest"] else "no credentials",
            **security_summary(security),
        )
        lag_monitor.start()
        if webhook is not None:
            await webhook.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        if drain_on_sigterm:
            worker_drain.drain_on_sigterm(drainer)
        yield
        await lag_monitor.stop()
        for session in calls.sessions():
            await session.end("service_stopping", code=1001)
        await resumes.close()
        await outcomes.store.close()
        if webhook is not None:
            await webhook.stop()  # what is not delivered yet stays spooled for the next start
        metrics.close()
        if rest_holder["rest"] is not None:
            await rest_holder["rest"].aclose()
        if tracing is not None and own_tracing:  # the last calls' spans go out
            await asyncio.to_thread(tracing.shutdown)

    app = Starlette(
        exception_handlers={ClientDisconnect: client_gone},
        routes=[
            Route("/answer", signatures.protect(answer), methods=["GET", "POST"]),
            Route("/status", signatures.protect(status), methods=["GET", "POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            Route("/transfer", signatures.protect(transfer), methods=["GET", "POST"]),
            Route("/calls", create_call, methods=["POST"]),
            *call_pages.routes(),  # GET /calls and each call's page
            Route(
                "/machine",
                signatures.protect(machine_endpoint(handling_of, outcomes)),
                methods=["POST"],
            ),
            Route("/hangup", signatures.protect(hangup_endpoint(outcomes)), methods=["POST"]),
            Route(
                "/calls/{request_uuid}",
                outcome_endpoint(outcomes, lambda request: check_key(request, outbound_key)),
                methods=["GET"],
            ),
            WebSocketRoute("/stream", stream),
        ],
        lifespan=lifespan,
    )
    app.state.calls = calls
    app.state.pending = pending  # sockets that have not sent start yet
    app.state.resumes = resumes
    app.state.spec = spec
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.drainer = drainer
    app.state.drain = drainer.run  # await app.state.drain(): drain now (tests, embedding)
    app.state.loop_lag = lag_monitor
    app.state.signature_guard = signatures  # refusal counts for metrics
    app.state.stream_guard = stream_guard
    app.state.legs = legs
    app.state.outcomes = outcomes  # what became of each placed call
    app.state.webhook = webhook  # the post-call webhook worker (None when off)
    app.state.call_store = call_store  # the call pages' recent calls
    app.state.machine_handling_of = machine_handling.get  # an outbound call's MachineHandling
    return app


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left (or its request timed out) before its body was read: nobody is there to
    answer, and it is no fault of ours. One bounded info line, never a traceback."""
    _CLIENT_GONE.log(
        log,
        "http_client_gone",
        method=request.method,
        path=bounded(request.url.path, 100),
        client=bounded(request.client.host if request.client else None, 64),
    )
    return Response(status_code=400)  # sent nowhere: uvicorn drops it for a gone client


def resume_registry(settings: ServiceSettings) -> ResumeRegistry:
    """The dropped-call registry and state store that ``settings`` ask for."""
    from voicebridge.state.store import open_store

    store = open_store(
        settings.state,
        timeout_s=settings.resume.store_timeout_s,
        backoff_s=settings.resume.store_backoff_s,
    )
    return ResumeRegistry(store, grace_s=settings.resume.grace_s)
