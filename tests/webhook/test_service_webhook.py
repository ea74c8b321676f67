"""End to end: a simulated call through the real service, with the webhook on, delivers one
signed document to a real receiver on loopback, and the call never waits for it."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import running_service
from voicebridge.server.security import SecurityConfig
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import utterances
from voicebridge.telephony.call_vars import sign_vars
from voicebridge.webhook.delivery import WebhookDelivery
from voicebridge.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature

from .conftest import SECRET, receiver, spooled, webhook_settings

FMT = StreamFormat.from_short("l16", 8000)
# Every role, no model: VAD -> scripted transcriber -> a dialogue that echoes, and fails on
# "fail" (a provider error) -> tone speaker.
SCRIPTED = """
name: scripted
stages:
  - type: decode
  - type: vad
    params: {aggressiveness: 2, min_speech_ms: 120, min_silence_ms: 500, pre_roll_ms: 240,
             forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: ["hello there", "fail now"]}
  - type: voicebridge.testing:FailingDialogue
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 20}
  - type: encode
"""


API_KEY = "calls-api-key-for-tests-0123456789"


async def test_a_call_delivers_one_document_with_its_turns_and_heard_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", API_KEY)  # signs an outbound call's variables
    spool, recordings = tmp_path / "spool", tmp_path / "recordings"
    sessions = SessionWatch()
    async with receiver("hang") as rx:  # holds the first delivery until the test lets it go
        settings = ServiceSettings.model_validate(
            {
                "host": "127.0.0.1",
                "port": 0,
                "security": {"stream_token": "off"},
                "recording": {"dir": str(recordings)},
                "webhook": {"url": rx.url, "spool_dir": str(spool)},
            }
        )
        delivery = WebhookDelivery(webhook_settings(rx.url, spool), SECRET)
        async with running_service(
            settings,
            load_pipeline_text(SCRIPTED),
            clock_factory=StreamClock,
            on_session=sessions,
            security=SecurityConfig.from_env(settings, {}),
            webhook=delivery,
        ) as service:
            assert service.app.state.webhook is delivery
            call_uuid = "e2e-call-0001"
            # An outbound call's answer request, as Plivo makes it: the numbers in the form,
            # the call's signed variables in the answer URL; the stream URL carries them on.
            query = urlencode(sign_vars({"name": "Ana"}, API_KEY))
            async with httpx.AsyncClient() as client:
                answered = await client.post(
                    f"{service.http_base}/answer?{query}",
                    data={
                        "CallUUID": call_uuid,
                        "From": "+14155550100",
                        "To": "+14155550199",
                        "Direction": "outbound",
                    },
                )
            assert answered.status_code == 200
            stream = ET.fromstring(answered.text).find("Stream")
            assert stream is not None and stream.text is not None
            audio = utterances(
                [("silence", 0.3), ("speech", 0.8), ("silence", 3.0), ("speech", 0.6),
                 ("silence", 3.0)],
                8000,
            )  # fmt: skip
            caller = PlivoCaller(
                stream.text.strip(),
                FMT,
                speed=float("inf"),
                probe=sessions.lockstep,
                call_id=call_uuid,
            )
            record = await caller.run(audio, tail_s=1.0)
            session = sessions.all[0]
            await session.ended.wait()  # the call is over, hung up and its files written...
            got = await rx.next()
            assert delivery.stats.delivered == 0  # ...while its document is still in flight
            assert len(spooled(spool)) == 1  # and kept on disk until the receiver answers
            rx.released.set()
            await delivery.idle()
            metrics = service.app.state.metrics
            for outcome, count in (("enqueued", 1), ("delivered", 1), ("dead", 0)):
                sample = metrics.value("voicebridge_webhook_documents_total", {"outcome": outcome})
                assert sample == count, outcome
        assert delivery.stats.as_dict()["delivered"] == 1

    assert len(rx.requests) == 1 and spooled(spool) == []
    header = got.headers[SIGNATURE_HEADER.lower()]
    assert verify_signature(SECRET, header, got.body, now=time.time())
    doc: dict[str, Any] = json.loads(got.body)
    assert got.headers[IDEMPOTENCY_HEADER.lower()] == doc["id"]
    assert doc["event"] == "call.ended"
    assert doc["call"]["call_id"] == record.call_id == call_uuid
    assert doc["call"]["stream_id"] == record.stream_id
    assert (doc["call"]["from"], doc["call"]["to"]) == ("+14155550100", "+14155550199")
    assert doc["call"]["direction"] == "outbound" and doc["call"]["pipeline"] == "scripted"
    assert doc["started_at"] <= doc["ended_at"]
    assert doc["duration_s"] > 7.0  # the call's own timeline: the audio streamed
    # Plivo closes the stream when the phone side hangs up: the simulated caller does so too
    assert doc["outcome"]["ended_by"] == "caller" and doc["outcome"]["reason"] == "socket_closed"
    assert doc["outcome"]["result"] == "completed"
    fallback = "Sorry, something went wrong on my side. Please call again later."
    assert doc["history"] == [
        {"role": "caller", "text": "hello there"},
        {"role": "agent", "text": "You said hello there.", "turn": 1, "interrupted": False},
        {"role": "caller", "text": "fail now"},
        {"role": "agent", "text": fallback, "turn": 2, "interrupted": False},
    ]
    # the same history the call kept for its dialogue, rebuilt from its events
    assert session.ctx is not None
    kept = [(e.role, e.text, e.interrupted) for e in session.ctx.history]
    assert kept == [(e["role"], e["text"], e.get("interrupted", False)) for e in doc["history"]]
    assert [t["turn"] for t in doc["turns"]] == [1, 2]
    for turn in doc["turns"]:
        assert turn["interrupted"] is False
        for part in ("latency_s", "stt_s", "dialogue_s", "tts_s", "send_s", "playout_start_s"):
            assert isinstance(turn[part], float | int), part
    assert doc["barge_ins"] == []
    assert [(e["kind"], e["provider"]) for e in doc["errors"]] == [("provider_error", "fake-llm")]
    wav = Path(doc["recording"]["path"])
    assert wav.parent == recordings and wav.suffix == ".wav" and wav.stat().st_size > 44
    assert doc["vars"] == {"name": "Ana"}
    assert doc["stats"] == session.core.stats.as_dict()
