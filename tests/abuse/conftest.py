"""Hostile clients on loopback beside a normal call (``PlivoCaller`` at real time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.caller import CallRecord, PlivoCaller
from voicebridge.sim.signals import utterances

ROOT = Path(__file__).resolve().parents[2]
FMT = StreamFormat.from_short("l16", 8000)
# A normal call's reply may be this much slower beside an attack than alone (loaded CI box).
LATENCY_SLACK_S = 1.0


def settings(**overrides: Any) -> ServiceSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    base.update(overrides)
    return ServiceSettings.model_validate(base)


def echo_spec() -> Any:
    return load_pipeline(ROOT / "pipelines" / "echo.yaml")


def start_message(call_id: str) -> str:
    return json.dumps(
        {
            "event": "start",
            "start": {
                "callId": call_id,
                "streamId": f"stream-{call_id}",
                "accountId": "MA1",
                "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000},
            },
        }
    )


SPEECH_END_S = 0.8  # the normal call's speech: 0.2 s of silence, then 0.6 s


async def normal_call(ws_url: str) -> CallRecord:
    """One echo turn at real time, as Plivo streams it."""
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 1.0)], 8000)
    return await PlivoCaller(ws_url, FMT, speed=1.0).run(audio, tail_s=0.5)


def reply_latency(record: CallRecord) -> float:
    """Seconds from the end of the caller's speech to the first agent audio it received."""
    assert record.protocol_errors == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]
    first_audio = record.sent_by_agent("playAudio")[0].t
    return first_audio - SPEECH_END_S
