"""``google_tts`` against a fake Text-to-Speech gRPC server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from structlog.testing import capture_logs

from voicebridge.audio.mulaw import mulaw_decode, mulaw_encode_bytes
from voicebridge.call.context import CallInfo
from voicebridge.frames import AgentAudio, AgentText, Dtmf, Frame, Hangup
from voicebridge.runtime.providers import ProviderError
from voicebridge.stages.tts.google_tts import GoogleTts, GoogleTtsParams, decode_audio, parse_wav

sys.path.insert(0, str(Path(__file__).parent))
from google_fakes import TTS, Driven, FakeGoogle, tone, until, wav_bytes

MULAW_8K = CallInfo(call_id="call-1", stream_id="s-1", encoding="audio/x-mulaw", sample_rate=8000)
L16_16K = CallInfo(call_id="call-1", stream_id="s-1", encoding="audio/x-l16", sample_rate=16000)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


def speaker(fake: FakeGoogle, **params: object) -> GoogleTts:
    return GoogleTts(endpoint=fake.endpoint, insecure=True, **params)


async def speak(stage: GoogleTts, frames: list[Frame], info: CallInfo = MULAW_8K) -> Driven:
    async with Driven([stage], info) as run:
        await run.push(*frames)
        await run.drain()
    return run


@pytest.mark.parametrize(
    ("info", "encoding"), [(MULAW_8K, "MULAW"), (L16_16K, "LINEAR16")], ids=["mulaw", "l16"]
)
async def test_asks_for_the_stream_codec_and_rate_and_strips_the_wav_header(
    fake: FakeGoogle, info: CallInfo, encoding: str
) -> None:
    stage = speaker(fake, voice="en-GB-Neural2-B", language="en-GB", speaking_rate=1.2, pitch=-2.0)
    text = "We open at nine."
    run = await speak(stage, [AgentText(text, turn=1, last=True)], info)

    assert not run.errors and not run.provider_errors
    (request,) = fake.requests[TTS]
    assert request.input.text == text and not request.input.ssml
    assert request.voice.name == "en-GB-Neural2-B" and request.voice.language_code == "en-GB"
    config = request.audio_config
    assert config.audio_encoding.name == encoding
    assert config.sample_rate_hertz == info.sample_rate
    assert config.speaking_rate == pytest.approx(1.2) and config.pitch == pytest.approx(-2.0)
    assert list(config.effects_profile_id) == ["telephony-class-application"]

    (audio,) = run.of(AgentAudio)
    assert (audio.turn, audio.text, audio.last) == (1, text, True)
    # Exactly the samples Google made: no header bytes played as a click, no resampling.
    expected = tone(fake.tts_ms_per_char * len(text) / 1000.0, info.sample_rate)
    if encoding == "MULAW":
        expected = mulaw_decode(mulaw_encode_bytes(expected))
    assert audio.pcm.dtype == np.int16
    np.testing.assert_array_equal(audio.pcm, expected)


async def test_raw_audio_without_a_header_is_taken_as_is(fake: FakeGoogle) -> None:
    fake.tts_wav_header = False
    run = await speak(speaker(fake), [AgentText("Hello there.", turn=1)], L16_16K)
    (audio,) = run.of(AgentAudio)
    assert len(audio.pcm) == round(0.02 * len("Hello there.") * 16000)


async def test_each_sentence_is_one_request_and_other_frames_pass(fake: FakeGoogle) -> None:
    frames = [
        AgentText("Thanks for calling. How can I help?", turn=3, last=False),
        Dtmf("5"),
        AgentText("Take your time.", turn=3, last=True),
        Hangup(),
    ]
    run = await speak(speaker(fake), frames)
    assert [r.input.text for r in fake.requests[TTS]] == [
        "Thanks for calling.",
        "How can I help?",
        "Take your time.",
    ]
    pieces = [(a.text, a.last, a.turn) for a in run.of(AgentAudio)]
    assert pieces == [
        ("Thanks for calling.", False, 3),
        ("How can I help?", False, 3),
        ("Take your time.", True, 3),
    ]
    kinds = [type(f).__name__ for f in run.frames[1:]]
    assert kinds == ["AgentAudio", "AgentAudio", "Dtmf", "AgentAudio", "Hangup"]


async def test_ssml_is_sent_whole_as_ssml(fake: FakeGoogle) -> None:
    ssml = '<speak>Your code is <say-as interpret-as="characters">A1</say-as>. Bye.</speak>'
    run = await speak(speaker(fake), [AgentText(ssml, turn=1)])
    (request,) = fake.requests[TTS]
    assert request.input.ssml == ssml and not request.input.text
    (audio,) = run.of(AgentAudio)
    assert audio.text == "Your code is A1. Bye."  # the words, for the history


async def test_ssml_param_wraps_plain_text(fake: FakeGoogle) -> None:
    await speak(speaker(fake, ssml=True), [AgentText('Hello <break time="300ms"/> there.', turn=1)])
    (request,) = fake.requests[TTS]
    assert request.input.ssml == '<speak>Hello <break time="300ms"/> there.</speak>'


async def test_an_empty_last_piece_still_ends_the_turn(fake: FakeGoogle) -> None:
    run = await speak(speaker(fake), [AgentText("", turn=2, last=True)])
    assert fake.requests[TTS] == []
    (audio,) = run.of(AgentAudio)
    assert audio.last and audio.turn == 2 and len(audio.pcm) == 160


async def test_logs_time_to_first_audio(fake: FakeGoogle) -> None:
    with capture_logs() as logs:
        await speak(speaker(fake), [AgentText("One. Two.", turn=1)])
    first = [entry for entry in logs if entry["event"] == "tts_first_audio"]
    assert len(first) == 1 and first[0]["ms"] >= 0 and first[0]["sentences"] == 2


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "auth"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid"),
    ],
)
async def test_permanent_errors_are_not_retried(
    fake: FakeGoogle, code: grpc.StatusCode, kind: str
) -> None:
    fake.fail(TTS, code, "voice en-US-Nope does not exist")
    run = await speak(speaker(fake), [AgentText("Hello.", turn=1)])
    (error,) = run.provider_errors
    assert isinstance(error, ProviderError)
    assert (error.kind, error.status, error.stage, error.provider) == (
        kind,
        code.name,
        "google_tts",
        "google-tts",
    )
    assert "voice en-US-Nope does not exist" in str(error)
    assert len(fake.requests[TTS]) == 1
    # The turn is still closed (a moment of silence), so the session does not wait for it.
    (closing,) = run.of(AgentAudio)
    assert closing.last and closing.text == "" and len(closing.pcm) == 160


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
async def test_transient_errors_are_retried(fake: FakeGoogle, code: grpc.StatusCode) -> None:
    fake.fail(TTS, code, times=2)
    run = await speak(speaker(fake), [AgentText("Hello.", turn=1)])
    assert not run.provider_errors
    assert len(fake.requests[TTS]) == 3 and len(run.of(AgentAudio)) == 1


async def test_retries_are_bounded(fake: FakeGoogle) -> None:
    fake.fail(TTS, grpc.StatusCode.UNAVAILABLE, "backend down", times=10)
    run = await speak(speaker(fake, retries=1), [AgentText("Hello.", turn=1)])
    (error,) = run.provider_errors
    assert error.kind == "unavailable" and "backend down" in str(error)
    assert len(fake.requests[TTS]) == 2


async def test_a_slow_answer_is_a_timeout(fake: FakeGoogle) -> None:
    fake.delay_s[TTS] = 30.0  # no answer while the test runs
    run = await speak(speaker(fake, timeout_s=0.1, retries=0), [AgentText("Hello.", turn=1)])
    (error,) = run.provider_errors
    assert error.kind == "timeout" and error.status == "DEADLINE_EXCEEDED"


async def test_barge_in_cancels_the_request_in_flight(fake: FakeGoogle) -> None:
    fake.delay_s[TTS] = 5.0
    stage = speaker(fake)
    async with Driven([stage], MULAW_8K) as run:
        turn = run.ctx.begin_turn()
        await run.push(AgentText("This is a long answer. It has two sentences.", turn=turn))
        await until(lambda: fake.started[TTS] == 1)
        run.pipeline.interrupt()
        await until(lambda: fake.cancelled[TTS] == 1)
        # The stage is free for the next turn at once.
        fake.delay_s[TTS] = 0.0
        await run.push(AgentText("Sure.", turn=run.ctx.begin_turn()))
        await until(lambda: len(run.of(AgentAudio)) == 1)
    assert [a.text for a in run.of(AgentAudio)] == ["Sure."]
    # The second sentence was never requested (it would have been, before the next turn's).
    assert [r.input.text for r in fake.requests[TTS]] == ["This is a long answer.", "Sure."]
    assert not run.errors and not run.provider_errors


def test_parse_wav_finds_the_data_chunk_after_other_chunks() -> None:
    data = bytes(range(10))
    plain = wav_bytes(1, 8000, 16, data)
    # Insert a LIST chunk between fmt and data, as some encoders do.
    fmt_end = 12 + 8 + 16
    listed = plain[:fmt_end] + b"LIST" + (4).to_bytes(4, "little") + b"abcd" + plain[fmt_end:]
    assert parse_wav(listed) == (1, 1, 8000, data)
    assert parse_wav(b"not a wav file at all") is None
    pcm, rate = decode_audio(
        wav_bytes(7, 8000, 8, mulaw_encode_bytes(np.zeros(4, np.int16))), "linear16", 16000
    )
    assert rate == 8000 and pcm.tolist() == [0, 0, 0, 0]


def test_params_are_validated() -> None:
    assert GoogleTtsParams().effects_profile == ["telephony-class-application"]
    with pytest.raises(ValueError):
        GoogleTtsParams(speaking_rate=10)
    with pytest.raises(ValueError):
        GoogleTtsParams(api_key="secret")  # type: ignore[call-arg]
