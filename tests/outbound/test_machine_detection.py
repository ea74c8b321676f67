"""Machine detection on the real service: ``POST /calls`` asks Plivo for it, Plivo's result on
``/machine`` reaches the live call, and the voicemail is spoken once, after the beep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from voicebridge.clock import StreamClock
from voicebridge.config import ConfigError, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import running_service
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import silence, speech_like
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

from ..server.conftest import settings

KEY = "test-api-key-0123456789"
AUTH_ID = "MAFAKEACCOUNT0000001"
TOKEN = "fake-plivo-token"
RATE = 8000
PIPELINE = """
name: outbound-voicemail
outbound:
  on_machine: {on_machine}
  voicemail: "Hi {{name}}, this is the clinic. Please call us back."
  machine_detection: {{time_ms: 3000}}
stages:
  - type: decode
  - type: vad
    params: {{forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: []}}
  - type: rules
    params: {{rules: []}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 5}}
  - type: encode
"""


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.fixture
async def plivo() -> AsyncIterator[FakePlivoRest]:
    async with FakePlivoRest(AUTH_ID, TOKEN) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)
    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)


async def call_machine(
    plivo: FakePlivoRest, on_machine: str, audio: np.ndarray, *, machine: bool = True
) -> tuple[Any, Any, dict[str, Any]]:
    """Place a call, stream ``audio`` as the callee, and post Plivo's result 0.5 s in."""
    sessions = SessionWatch()
    spec = load_pipeline_text(PIPELINE.format(on_machine=on_machine))
    rest = lambda: PlivoRest(PlivoCredentials(AUTH_ID, TOKEN), base_url=plivo.base_url)  # noqa: E731
    async with running_service(
        settings(public_url="https://agent.example"),
        spec,
        rest_factory=rest,
        clock_factory=StreamClock,
        on_session=sessions,
    ) as service:
        async with httpx.AsyncClient() as client:
            placed = await client.post(
                f"{service.http_base}/calls",
                json={"to": "+15551234567", "vars": {"name": "Ana"}},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert placed.status_code == 201
            fields = plivo.created_calls[-1].fields
            posted: list[httpx.Response] = []

            async def probe(caller: PlivoCaller) -> None:
                await sessions.lockstep(caller)
                if not posted and caller.frames_sent >= 25:  # 0.5 s into the call
                    posted.append(
                        await client.post(
                            f"{service.http_base}/machine",
                            data={
                                "CallUUID": caller.record.call_id,
                                "Machine": "true" if machine else "false",
                                "Event": "MachineDetection",
                                "Direction": "outbound",
                            },
                        )
                    )

            # The stream Plivo opens after /answer carries the call's signed variables on.
            stream_url = f"{service.ws_url}?{urlsplit(fields['answer_url']).query}"
            caller = PlivoCaller(
                stream_url,
                StreamFormat.from_short("l16", RATE),
                speed=float("inf"),
                probe=probe,
            )
            await caller.run(audio, tail_s=1.0, wait_for_agent_s=5.0)
        session = sessions.all[0]
        await asyncio.wait_for(session.ended.wait(), 10)
        handling = service.app.state.machine_handling_of(session)
    assert posted and posted[0].status_code == 200
    return session, handling, fields


def agent_said(session: Any) -> list[str]:
    return [e.text for e in session.ctx.history if e.role == "agent"]


async def test_the_call_asks_plivo_for_machine_detection_posted_to_machine(plivo):
    audio = silence(1.0, RATE)
    _, _, fields = await call_machine(plivo, "hangup", audio, machine=False)
    assert fields["machine_detection"] == "true"
    assert fields["machine_detection_time"] == "3000"
    assert fields["machine_detection_initial_silence"] == "4500"
    assert fields["machine_detection_url"] == "https://agent.example/machine"
    assert fields["machine_detection_method"] == "POST"


async def test_voicemail_is_spoken_once_after_the_beep_and_the_call_ends(plivo):
    greeting, gap, beep = speech_like(3.0, RATE), silence(0.3, RATE), tone(1000, 0.4)
    audio = np.concatenate([greeting, gap, beep, silence(4.0, RATE)])
    session, handling, _ = await call_machine(plivo, "voicemail", audio)
    assert handling.result == "machine"
    assert handling.timing.reason == "beep"
    assert handling.timing.beep_end == pytest.approx(3.7, abs=0.05)
    said = agent_said(session)
    assert len(said) == 1 and said[0].startswith("Hi Ana, this is the clinic.")
    assert session.end_reason is not None


async def test_a_person_gets_no_voicemail(plivo):
    audio = np.concatenate([speech_like(1.0, RATE), silence(1.0, RATE), tone(1000, 0.4)])
    session, handling, _ = await call_machine(plivo, "voicemail", audio, machine=False)
    assert handling.result == "human"
    assert handling.timing is None
    assert agent_said(session) == []


async def test_on_machine_hangup_ends_the_call_without_a_word(plivo):
    audio = np.concatenate([speech_like(3.0, RATE), silence(3.0, RATE)])
    session, handling, _ = await call_machine(plivo, "hangup", audio)
    assert handling.result == "machine"
    assert session.end_reason == "answering_machine"
    assert agent_said(session) == []


def test_voicemail_needs_its_text():
    bad = PIPELINE.format(on_machine="voicemail").replace(
        '  voicemail: "Hi {name}, this is the clinic. Please call us back."\n', ""
    )
    with pytest.raises(ConfigError, match="voicemail"):
        load_pipeline_text(bad)


def test_machine_detection_ranges_are_checked_at_load():
    bad = PIPELINE.format(on_machine="hangup").replace("time_ms: 3000", "time_ms: 500")
    with pytest.raises(ConfigError, match="time_ms"):
        load_pipeline_text(bad)
