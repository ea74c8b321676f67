"""What the call-page tests share: a scripted pipeline (no models), the key, the settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.frames import PCM
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import CallRecord, PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import speech_like

KEY = "pages-key-0123456789abcdef"
RATE = 8000
FMT = StreamFormat("audio/x-l16", RATE)
HOSTILE = "<script>alert(1)</script> when are you open"  # a transcript is caller input
PIPELINE = f"""
name: call-pages
stages:
  - type: decode
  - type: vad
    params: {{min_silence_ms: 300, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: ["{HOSTILE}", "and on sunday", "goodbye"]}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: "Hello, bakery here.", reply: "Seven to six. Anything else?", think_s: 0.2}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 12}}
  - type: encode
"""


def spec() -> PipelineSpec:
    return load_pipeline_text(PIPELINE)


def lines() -> list[PCM]:
    return [speech_like(1.2, RATE), speech_like(0.9, RATE), speech_like(0.6, RATE)]


def page_settings(tmp: Path | None, **pages: Any) -> ServiceSettings:
    """Events and recordings under ``tmp`` (none without it); ``pages``: call_pages settings."""
    data: dict[str, Any] = {"call_pages": {"poll_s": 0.2, **pages}}
    if tmp is not None:
        data["events"] = {"dir": str(tmp / "events")}
        data["recording"] = {"dir": str(tmp / "recordings")}
    return ServiceSettings.model_validate(data)


async def place_call(http_base: str, watch: SessionWatch, spoken: list[PCM]) -> CallRecord:
    """One call of ``spoken`` lines into the service at ``http_base``, to its end (the call's
    files are written when its session has ended)."""
    answered = await answer_call(f"{http_base}/answer")
    caller = PlivoCaller(
        answered.url, FMT, call_id=answered.call_uuid, speed=float("inf"), probe=watch.lockstep
    )
    record = await caller.run_turns(spoken)
    assert watch.session is not None
    await asyncio.wait_for(watch.session.ended.wait(), 20)
    return record
