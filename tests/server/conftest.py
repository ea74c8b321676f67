"""The real service with its protections on, and a Plivo-like client for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.server.run import RunningService, running_service
from voicebridge.server.security import SecurityConfig
from voicebridge.session import Session
from voicebridge.sim.answer import plivo_headers
from voicebridge.sim.simulate import SessionWatch

ROOT = Path(__file__).resolve().parents[2]
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


class Sessions(SessionWatch):
    """Every session the service made, in order; the newest one drives lockstep callers."""

    def __init__(self) -> None:
        super().__init__()
        self.all: list[Session] = []

    def __call__(self, session: Session) -> None:
        super().__call__(session)
        self.all.append(session)


def settings(**overrides: Any) -> ServiceSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    base.update(overrides)
    return ServiceSettings.model_validate(base)


@contextlib.asynccontextmanager
async def secured_service(
    env: Mapping[str, str] = ENV,
    *,
    clock: Callable[[], float] | None = None,
    **setting_overrides: Any,
) -> AsyncIterator[RunningService]:
    """The echo pipeline with security resolved from ``env`` (as from the environment)."""
    service_settings = settings(**setting_overrides)
    security = SecurityConfig.from_env(service_settings, env, time_fn=clock or WallClock())
    sessions = Sessions()
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
