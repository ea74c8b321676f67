"""Helpers for the server tests: the real service on loopback (plain and with its protections
on), pipelines, and Plivo-like callers and requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from voicebridge.clock import StreamClock
from voicebridge.config import PipelineSpec, ServiceSettings, load_pipeline, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService, running_service
from voicebridge.server.security import SecurityConfig
from voicebridge.session import Session
from voicebridge.sim.answer import plivo_headers
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.lockstep import SessionWatch

ROOT = Path(__file__).resolve().parents[2]
FMT = StreamFormat.from_short("l16", 8000)

# A pipeline with every role, no model: VAD -> scripted transcriber -> dialogue that fails on
# "fail" (a provider error) -> tone speaker.
SCRIPTED = """
name: scripted
stages:
  - type: decode
  - type: vad
    params: {{aggressiveness: 2, min_speech_ms: 120, min_silence_ms: 500, pre_roll_ms: 240,
             forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines}}}
  - type: voicebridge.testing:FailingDialogue
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 20}}
  - type: encode
"""
AUTH_TOKEN = "MAtestAuthToken0123456789abcdef"
MAIN_TOKEN = "MAmainAccountToken9876543210zyx"
STREAM_SECRET = "stream-secret-for-tests-0123456789"
SECRETS = (AUTH_TOKEN, MAIN_TOKEN, STREAM_SECRET)
ENV = {
    "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
    "PLIVO_MAIN_AUTH_TOKEN": MAIN_TOKEN,
    "VOICEBRIDGE_STREAM_SECRET": STREAM_SECRET,
}


class WallClock:
    """The security checks' wall clock, moved by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class WatchedSessions(SessionWatch):
    """Every session the service made, in order; the newest one drives lockstep callers."""


def settings(**overrides: Any) -> ServiceSettings:
    """Stream tokens off: these tests open /stream directly, as a tunnel tested by hand would;
    the token rules have their own tests (``tests/server/test_security_*``, ``tests/abuse``)."""
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "security": {"stream_token": "off"}}
    base.update(overrides)
    return ServiceSettings.model_validate(base)


def echo_spec() -> PipelineSpec:
    return load_pipeline(ROOT / "pipelines" / "echo.yaml")


def scripted_spec(lines: list[str]) -> PipelineSpec:
    return load_pipeline_text(SCRIPTED.format(lines=lines))


class Sessions(SessionWatch):
    """Every session the service made; lockstep by the caller's call id (several callers)."""

    def of(self, caller: PlivoCaller) -> Session | None:
        for session in self.all:
            if session.ctx is not None and session.ctx.info.call_id == caller.record.call_id:
                return session
        return None

    async def lockstep(  # type: ignore[override]
        self, caller: PlivoCaller, find: Any = None, *, timeout_s: float = 60.0
    ) -> None:
        await super().lockstep(caller, find or (lambda: self.of(caller)), timeout_s=timeout_s)


def fast_caller(url: str, sessions: Sessions, **options: Any) -> PlivoCaller:
    return PlivoCaller(url, FMT, speed=float("inf"), probe=sessions.lockstep, **options)


async def until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll a condition the test cannot await directly (bounded; not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def secured_service(
    env: Mapping[str, str] = ENV,
    *,
    clock: Callable[[], float] | None = None,
    **setting_overrides: Any,
) -> AsyncIterator[RunningService]:
    """The echo pipeline with security resolved from ``env`` (as from the environment)."""
    service_settings = ServiceSettings.model_validate(
        {"host": "127.0.0.1", "port": 0, **setting_overrides}
    )  # the shipped defaults: stream tokens on
    security = SecurityConfig.from_env(service_settings, env, time_fn=clock or WallClock())
    sessions = WatchedSessions()
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    async with running_service(
        service_settings, spec, security=security, clock_factory=StreamClock, on_session=sessions
    ) as service:
        service.app.state.sessions = sessions
        yield service


async def plivo_request(
    service: RunningService,
    path: str,
    params: Mapping[str, str],
    *,
    method: str = "POST",
    token: str | None = AUTH_TOKEN,
    signed_as: str | None = None,
    header: str = "X-Plivo-Signature-V3",
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """A request as Plivo sends it: signed over ``signed_as`` (default: the URL requested)."""
    url = f"{service.http_base}{path}"
    if method == "GET" and params:
        url += ("&" if "?" in url else "?") + urlencode(dict(params))
    extra: dict[str, str] = dict(headers or {})
    if token is not None:
        signed = plivo_headers(method, signed_as or url, params if method == "POST" else {}, token)
        extra[header] = signed["X-Plivo-Signature-V3"]
        extra["X-Plivo-Signature-V3-Nonce"] = signed["X-Plivo-Signature-V3-Nonce"]
    async with httpx.AsyncClient() as client:
        if method == "POST":
            return await client.post(url, data=dict(params), headers=extra)
        return await client.get(url, headers=extra)
