"""An outbound call's greeting and Plivo's machine verdict, on the virtual clock: the agent's
first words are held until the verdict, a person's "Hello?" (answered as soon as they pause), or
``greeting_wait_s`` without a verdict; a machine never hears the greeting, only the voicemail."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from voicebridge.call.events import AgentAudioSent, AgentSaid, CallEvent
from voicebridge.clock import StreamClock
from voicebridge.config import load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import running_service
from voicebridge.session import Session
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import silence, speech_like
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

from ..server.conftest import settings
from .test_machine_detection import AUTH_ID, KEY, RATE, TOKEN, tone
from .test_machine_detection import plivo as plivo  # the fake Plivo REST API fixture

GREETING = "Hello, this is the clinic calling about your appointment."
VOICEMAIL = "Hi {name}, this is the clinic. Please call us back."
PIPELINE = """
name: outbound-greeting
outbound:
  on_machine: voicemail
  voicemail: "VOICEMAIL"
  machine_detection: {time_ms: 3000}
  greeting: MODE
stages:
  - type: decode
  - type: vad
    params: {forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: []}
  - type: rules
    params: {greeting: "GREETING", rules: []}
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 5}
  - type: encode
""".replace("VOICEMAIL", VOICEMAIL).replace("GREETING", GREETING)
HOLD_S = 4.0  # machine_detection.time_ms 3000 + 1 s


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)
    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)


class Heard:
    """What the agent sent, when (call time of each audio chunk), and the turns' texts."""

    def __init__(self) -> None:
        self.audio_at: list[float] = []
        self.texts: dict[int, str] = {}

    def __call__(self, event: CallEvent) -> None:
        if isinstance(event, AgentAudioSent):
            self.audio_at.append(event.at_s)
        elif isinstance(event, AgentSaid):
            self.texts[event.turn] = (self.texts.get(event.turn, "") + " " + event.text).strip()


async def outbound_call(
    plivo: FakePlivoRest,
    audio: np.ndarray,
    *,
    verdict: bool | None,
    greeting: str = "wait_for_verdict",
    verdict_frames: int = 25,
    elsewhere: bool = False,
) -> tuple[Session, Any, Heard]:
    """Place a call and stream ``audio`` as the callee; Plivo's verdict (machine: True) is
    posted ``verdict_frames`` 20 ms frames in, or never with ``verdict=None``. ``elsewhere``:
    it reaches the shared outcomes only, as when another worker got the ``/machine`` post."""
    heard = Heard()
    sessions = SessionWatch()

    def on_session(session: Session) -> None:
        session.subscribe(heard, (AgentAudioSent, AgentSaid))
        sessions(session)

    spec = load_pipeline_text(PIPELINE.replace("MODE", greeting))
    rest = lambda: PlivoRest(PlivoCredentials(AUTH_ID, TOKEN), base_url=plivo.base_url)  # noqa: E731
    async with running_service(
        settings(public_url="https://agent.example"),
        spec,
        rest_factory=rest,
        clock_factory=StreamClock,
        on_session=on_session,
    ) as service:
        async with httpx.AsyncClient() as client:
            placed = await client.post(
                f"{service.http_base}/calls",
                json={"to": "+15551234567", "vars": {"name": "Ana"}},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            fields = plivo.created_calls[-1].fields
            posted: list[int] = []

            async def probe(caller: PlivoCaller) -> None:
                await sessions.lockstep(caller)
                if verdict is not None and not posted and caller.frames_sent >= verdict_frames:
                    if elsewhere:
                        machine = {
                            "CallUUID": caller.record.call_id,
                            "Machine": str(verdict).lower(),
                        }
                        await service.app.state.outcomes.machine(machine)
                        posted.append(200)
                        return
                    answer = await client.post(
                        f"{service.http_base}/machine",
                        data={"CallUUID": caller.record.call_id, "Machine": str(verdict).lower()},
                    )
                    posted.append(answer.status_code)

            stream_url = f"{service.ws_url}?{urlsplit(fields['answer_url']).query}"
            caller = PlivoCaller(
                stream_url, StreamFormat.from_short("l16", RATE), speed=float("inf"), probe=probe
            )
            await caller.run(audio, tail_s=1.0, wait_for_agent_s=5.0)
        assert placed.status_code == 201
        session = sessions.all[0]
        await asyncio.wait_for(session.ended.wait(), 10)
        handling = service.app.state.machine_handling_of(session)
    if verdict is not None:
        assert posted == [200]
    return session, handling, heard


async def test_a_person_who_says_hello_first_is_answered_when_they_pause(plivo):
    hello_end = 0.3 + 0.8
    audio = np.concatenate([silence(0.3, RATE), speech_like(0.8, RATE), silence(4.0, RATE)])
    session, handling, heard = await outbound_call(plivo, audio, verdict=None)
    assert handling.released == "hello"
    assert heard.audio_at, "the greeting was never sent"
    assert hello_end <= heard.audio_at[0] < HOLD_S  # after the hello, before any timeout
    assert GREETING in heard.texts.values()


async def test_a_machine_hears_only_the_voicemail(plivo):
    greeting, gap, beep = speech_like(3.0, RATE), silence(0.3, RATE), tone(1000, 0.4)
    audio = np.concatenate([greeting, gap, beep, silence(4.0, RATE)])
    session, handling, heard = await outbound_call(plivo, audio, verdict=True)
    assert handling.result == "machine" and handling.released is None
    assert handling.voicemail_spoken and handling.timing.reason == "beep"
    beep_end = 3.0 + 0.3 + 0.4
    assert heard.audio_at and heard.audio_at[0] >= beep_end  # nothing before the voicemail
    said = [e.text for e in session.ctx.history if e.role == "agent"]
    assert len(said) == 1 and said[0].startswith("Hi Ana, this is the clinic.")


async def test_without_a_verdict_the_greeting_goes_out_after_the_wait(plivo):
    session, handling, heard = await outbound_call(plivo, silence(7.0, RATE), verdict=None)
    assert handling.released == "no_verdict"
    assert heard.audio_at and heard.audio_at[0] == pytest.approx(HOLD_S, abs=0.05)
    assert GREETING in heard.texts.values()


async def test_a_person_verdict_lets_the_greeting_out_at_once(plivo):
    session, handling, heard = await outbound_call(plivo, silence(4.0, RATE), verdict=False)
    assert handling.released == "human"
    assert heard.audio_at and heard.audio_at[0] == pytest.approx(0.5, abs=0.05)


async def test_speak_at_once_greets_before_the_verdict(plivo):
    _, handling, heard = await outbound_call(
        plivo, silence(4.0, RATE), verdict=False, greeting="speak_at_once", verdict_frames=100
    )
    assert handling.released is None
    assert heard.audio_at and heard.audio_at[0] < 0.5


async def test_a_verdict_another_worker_got_reaches_the_call(plivo):
    greeting, gap, beep = speech_like(3.0, RATE), silence(0.3, RATE), tone(1000, 0.4)
    audio = np.concatenate([greeting, gap, beep, silence(4.0, RATE)])
    session, handling, heard = await outbound_call(plivo, audio, verdict=True, elsewhere=True)
    assert handling.result == "machine" and handling.released is None
    assert handling.voicemail_spoken and handling.timing.reason == "beep"
    assert heard.audio_at and heard.audio_at[0] >= 3.0 + 0.3 + 0.4
