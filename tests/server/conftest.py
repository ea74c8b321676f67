"""Helpers for the operations tests: the real service on loopback, pipelines, callers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicebridge.config import PipelineSpec, ServiceSettings, load_pipeline, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.session import Session
from voicebridge.sim.caller import PlivoCaller

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


def settings(**overrides: Any) -> ServiceSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    base.update(overrides)
    return ServiceSettings.model_validate(base)


def echo_spec() -> PipelineSpec:
    return load_pipeline(ROOT / "pipelines" / "echo.yaml")


def scripted_spec(lines: list[str]) -> PipelineSpec:
    return load_pipeline_text(SCRIPTED.format(lines=lines))


class Sessions:
    """Every session the service made, by call id; lockstep for fast callers."""

    def __init__(self) -> None:
        self.all: list[Session] = []

    def __call__(self, session: Session) -> None:
        self.all.append(session)

    def of(self, caller: PlivoCaller) -> Session | None:
        for session in self.all:
            if session.ctx is not None and session.ctx.info.call_id == caller.record.call_id:
                return session
        return None

    async def lockstep(self, caller: PlivoCaller) -> None:
        """Wait until this caller's session took every frame, went idle and its replies
        arrived: the caller then runs on exact stream time, as fast as the CPU allows."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            session = self.of(caller)
            if session is None or session.ended.is_set() or session.end_reason:
                if caller.frames_sent == 0 or session is not None:
                    return
            elif session.pipeline is not None:
                caught_up = session.stats["media"] >= caller.frames_sent
                delivered = caller.messages_received >= session.stats["sent"]
                if caught_up and delivered and session.pipeline.idle:
                    return
            await asyncio.sleep(0.0005)


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
