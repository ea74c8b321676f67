"""The ``openai_tts`` stage against a fake OpenAI speech endpoint on 127.0.0.1.

The fake answers raw 24 kHz PCM (a 440 Hz tone as long as the text asks for) in odd-sized
chunks; the stage must send the configured fields, resample to the stream's rate while the
chunks arrive, emit one ``AgentAudio`` per sentence, close the stream on barge-in and turn each
failure into one ``ProviderError``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicebridge.call.context import CallInfo
from voicebridge.frames import AgentText, Hangup
from voicebridge.stages.tts.openai_tts import OpenAITts, OpenAITtsParams

sys.path.insert(0, str(Path(__file__).parent))
from openai_fakes import PCM_RATE, FakeOpenAI, Rig, SpeechReply, speech_samples

KEY = "sk-fake"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
async def fake() -> Any:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


def tts(fake: FakeOpenAI, **params: Any) -> OpenAITts:
    params.setdefault("max_retries", 0)
    params.setdefault("resilience", {"retries": 0})  # one failure, one error
    return OpenAITts(base_url=fake.base_url, **params)


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_request_fields_and_resampled_audio(fake: FakeOpenAI, rate: int) -> None:
    text = "Our shop opens at seven tomorrow."
    stage = tts(fake, model="gpt-4o-mini-tts", voice="coral", instructions="Warm.", speed=1.1)
    async with Rig([stage], info=CallInfo(call_id="c", sample_rate=rate)) as rig:
        await rig.push(AgentText(text, turn=3, last=True))
        await rig.wait_for(lambda: rig.audio())
    (request,) = fake.speech_requests
    assert request.path == "/v1/audio/speech"
    assert request.auth == f"Bearer {KEY}"
    assert request.body == {
        "model": "gpt-4o-mini-tts",
        "voice": "coral",
        "input": text,
        "instructions": "Warm.",
        "response_format": "pcm",
        "speed": 1.1,
    }
    assert request.chunks_sent > 3  # streamed in several (odd-sized) chunks
    (audio,) = rig.audio()
    assert (audio.turn, audio.text, audio.last) == (3, text, True)
    assert audio.pcm.dtype == np.int16
    samples = speech_samples(text, 40.0)
    assert len(audio.pcm) == round(samples * rate / PCM_RATE)
    assert abs(dominant_hz(audio.pcm, rate) - 440) < 5  # the tone survived, in tune
    peak = int(np.abs(audio.pcm[100:-100]).max())
    assert 7000 < peak < 9000


async def test_defaults_send_no_optional_fields(fake: FakeOpenAI) -> None:
    async with Rig([tts(fake)]) as rig:
        await rig.push(AgentText("Hello.", turn=1))
        await rig.wait_for(lambda: rig.audio())
    assert fake.speech_requests[0].body == {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": "Hello.",
        "response_format": "pcm",
    }


async def test_one_audio_piece_per_sentence_and_other_frames_pass(fake: FakeOpenAI) -> None:
    async with Rig([tts(fake)]) as rig:
        await rig.push(AgentText("Sure thing. It is ready now.", turn=1, last=False))
        await rig.push(Hangup("llm"))
        await rig.push(AgentText("Bye!", turn=1, last=True))
        await rig.wait_for(lambda: any(a.last for a in rig.audio()))
    pieces = [(a.text, a.last) for a in rig.audio()]
    assert pieces == [("Sure thing.", False), ("It is ready now.", False), ("Bye!", True)]
    assert [r.body["input"] for r in fake.speech_requests] == [
        "Sure thing.",
        "It is ready now.",
        "Bye!",
    ]
    kinds = [type(f).__name__ for f in rig.frames()]
    assert kinds == ["AgentAudio", "AgentAudio", "Hangup", "AgentAudio"]


async def test_an_empty_final_piece_ends_the_turn_with_silence(fake: FakeOpenAI) -> None:
    async with Rig([tts(fake)], info=CallInfo(sample_rate=8000)) as rig:
        await rig.push(AgentText("", turn=2, last=True))
        await rig.wait_for(lambda: rig.audio())
    (audio,) = rig.audio()
    assert audio.last and audio.text == "" and len(audio.pcm) == 160
    assert not audio.pcm.any()
    assert fake.speech_requests == []


async def test_barge_in_closes_the_speech_stream(fake: FakeOpenAI) -> None:
    fake.speak(SpeechReply(hold_after=2))
    async with Rig([tts(fake)]) as rig:
        turn = rig.ctx.begin_turn()  # as the dialogue would
        await rig.push(AgentText("A long sentence that takes a while to say.", turn=turn))
        await fake.wait_for(lambda: fake.speech_requests and fake.speech_requests[0].chunks_sent)
        rig.pipeline.interrupt()
        await fake.wait_for(lambda: fake.speech_requests[0].disconnected)
        await rig.push(AgentText("Next turn.", turn=rig.ctx.begin_turn()))
        await rig.wait_for(lambda: rig.audio())
    assert [a.text for a in rig.audio()] == ["Next turn."]
    assert rig.provider_errors == [] and rig.errors == []


async def test_stale_sentences_are_not_requested(fake: FakeOpenAI) -> None:
    fake.speak(SpeechReply(hold_after=1))
    async with Rig([tts(fake)]) as rig:
        await rig.push(AgentText("First one here. Second one here.", turn=rig.ctx.begin_turn()))
        await fake.wait_for(lambda: fake.speech_requests)
        rig.pipeline.interrupt()
        await fake.wait_for(lambda: fake.speech_requests[0].disconnected)
        await rig.idle()
    assert [r.body["input"] for r in fake.speech_requests] == ["First one here."]
    assert rig.audio() == []


@pytest.mark.parametrize(
    ("reply", "kind", "status"),
    [
        (SpeechReply(status=401), "auth", 401),
        (SpeechReply(status=429), "quota", 429),
        (SpeechReply(status=400), "invalid", 400),
        (SpeechReply(status=500), "unavailable", 500),
        (SpeechReply(first_byte_delay_s=2), "timeout", None),
        (SpeechReply(cut_after=2), "unavailable", None),
    ],
    ids=["401", "429", "400", "500", "slow", "cut"],
)
async def test_each_failure_is_one_provider_error(
    fake: FakeOpenAI, reply: SpeechReply, kind: str, status: int | None
) -> None:
    fake.speak(reply)
    async with Rig([tts(fake, timeout_s=0.4)]) as rig:
        await rig.push(AgentText("Hello there.", turn=1))
        await rig.wait_for(lambda: rig.provider_errors)
    (error,) = rig.provider_errors
    assert (error.kind, error.status, error.stage) == (kind, status, "openai_tts")
    assert rig.audio() == [] and rig.errors == []


def test_params() -> None:
    assert OpenAITtsParams(base_url="").base_url is None
    assert OpenAITtsParams(voice={"id": "voice_123"}).voice == {"id": "voice_123"}
    with pytest.raises(ValueError):
        OpenAITtsParams(speed=9)
