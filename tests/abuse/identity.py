"""Helpers of the call-identity attacks (``test_call_identity.py``): hostile clients against
the real service on loopback with signatures and stream tokens on, beside a normal call.

The normal call is a ``PlivoCaller`` in lockstep with its session (stream clock), so its replies
and their times are exact: an attack that changes them shows up as a difference from the same
call run alone. Attacks run from the caller's probe, in the middle of the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService, running_service
from voicebridge.server.security import SecurityConfig
from voicebridge.session import Session
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import CallRecord, PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import utterances
from voicebridge.testing import start_message as start_event

ROOT = Path(__file__).resolve().parents[2]
FMT = StreamFormat.from_short("l16", 8000)
AUTH_TOKEN = "MAabuseAuthToken0123456789abcdef"
STREAM_SECRET = "abuse-stream-secret-0123456789abcdef"
ENV = {"PLIVO_AUTH_TOKEN": AUTH_TOKEN, "VOICEBRIDGE_STREAM_SECRET": STREAM_SECRET}


class Sessions(SessionWatch):
    """Every session the service made; lockstep with the session that carries a call id."""

    def of(self, call_id: str) -> Session | None:
        for session in self.all:
            ctx = session.ctx
            if ctx is not None and ctx.info.call_id == call_id and not session.ended.is_set():
                return session
        for session in reversed(self.all):  # the call is over: its last session
            if session.ctx is not None and session.ctx.info.call_id == call_id:
                return session
        return None


@contextlib.asynccontextmanager
async def abuse_service(
    env: Mapping[str, str] = ENV, **overrides: Any
) -> AsyncIterator[RunningService]:
    """The echo pipeline with the shipped security defaults, secrets from ``env``."""
    settings = ServiceSettings.model_validate({"host": "127.0.0.1", "port": 0, **overrides})
    security = SecurityConfig.from_env(settings, env)
    sessions = Sessions()
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    async with running_service(
        settings, spec, security=security, clock_factory=StreamClock, on_session=sessions
    ) as service:
        service.app.state.sessions = sessions
        yield service


async def stream_url(service: RunningService, call_id: str, env: Mapping[str, str] = ENV) -> str:
    """The stream URL /answer gives Plivo for ``call_id`` (signed like Plivo when ``env`` has
    the auth token)."""
    answered = await answer_call(f"{service.http_base}/answer", call_uuid=call_id, environ=env)
    return answered.url


Attack = Callable[[], Awaitable[None]]


async def normal_call(
    service: RunningService, url: str, call_id: str, attack: Attack | None = None
) -> CallRecord:
    """A whole echo call: the caller speaks, hears itself, hangs up. ``attack`` runs once,
    0.3 s into the call, while the call waits for it."""
    sessions: Sessions = service.app.state.sessions

    async def probe(caller: PlivoCaller) -> None:
        await sessions.lockstep(caller, lambda: sessions.of(call_id))
        if attack is not None and caller.frames_sent == 15:
            await attack()

    caller = PlivoCaller(url, FMT, speed=float("inf"), probe=probe, call_id=call_id)
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 1.0)], 8000)
    record = await caller.run(audio, tail_s=0.5)
    assert record.protocol_errors == []
    assert record.closed_by == "caller"
    return record


def replies(record: CallRecord) -> list[tuple[float, str]]:
    """When each reply message reached the caller (stream time) and what it was."""
    return [
        (round(e.t, 3), e.message["event"])
        for e in record.events
        if e.direction == "out" and e.message.get("event") in ("playAudio", "checkpoint")
    ]


def start_message(call_id: str, stream_id: str = "attacker") -> str:
    return start_event(call_id, stream_id, account_id="MA-attacker")
