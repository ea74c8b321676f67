"""``google_stt`` against a fake Speech-to-Text (v2 and v1) gRPC server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from voicebridge.audio.l16 import l16_encode
from voicebridge.audio.mulaw import mulaw_encode_bytes
from voicebridge.call.context import CallInfo
from voicebridge.frames import AudioIn, CallEnded, SpeechEnded, SpeechStarted, Transcript
from voicebridge.runtime.providers import ProviderError
from voicebridge.stages.stt.google_stt import GoogleStt, GoogleSttParams
from voicebridge.stages.vad import Vad

sys.path.insert(0, str(Path(__file__).parent))
from google_fakes import STT_V1, STT_V2, Driven, FakeGoogle, audio_frames, until

MULAW_8K = CallInfo(call_id="call-1", stream_id="s-1", encoding="audio/x-mulaw", sample_rate=8000)
L16_16K = CallInfo(call_id="call-1", stream_id="s-1", encoding="audio/x-l16", sample_rate=16000)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


def stt(fake: FakeGoogle, **params: object) -> GoogleStt:
    params.setdefault("project", "proj-1")
    return GoogleStt(endpoint=fake.endpoint, insecure=True, **params)


def sent_audio(frames: list[AudioIn], encoding: str) -> bytes:
    pcm = np.concatenate([f.pcm for f in frames])
    return mulaw_encode_bytes(pcm) if encoding == "mulaw" else l16_encode(pcm)


async def transcribe(
    fake: FakeGoogle,
    stage: GoogleStt,
    frames: list[AudioIn],
    info: CallInfo,
    *,
    lockstep: bool = True,
) -> Driven:
    """Run VAD + the stage over ``frames`` and end the call. In lockstep the fake has each
    100 ms of audio (and its answers are back) before the next is pushed, as in a live call;
    otherwise audio is paced in (faster than) real time."""
    async with Driven([Vad(), stage], info) as run:
        if lockstep:
            per_frame = info.sample_rate // 50 * (1 if "mulaw" in info.encoding else 2)
            await run.push_in_lockstep(frames, fake, bytes_per_frame=per_frame)
        else:
            await run.push_paced(frames)
        await run.push(CallEnded())
        await run.drain()
    return run


@pytest.mark.parametrize(
    ("info", "encoding"), [(MULAW_8K, "MULAW"), (L16_16K, "LINEAR16")], ids=["mulaw", "l16"]
)
async def test_v2_streams_the_call_codec_and_emits_interim_and_final(
    fake: FakeGoogle, info: CallInfo, encoding: str
) -> None:
    fake.stt_lines = ["what time do you open"]
    frames = audio_frames([("silence", 0.5), ("speech", 1.0), ("silence", 1.0)], info.sample_rate)
    stage = stt(fake, phrases=["Harbor Street"], boost=12, endpointing="short")
    run = await transcribe(fake, stage, frames, info)

    assert not run.errors and not run.provider_errors
    (stream,) = fake.stt_streams
    config = stream.config
    assert config.recognizer == "projects/proj-1/locations/global/recognizers/_"
    rc = config.streaming_config.config
    assert rc.explicit_decoding_config.encoding.name == encoding
    assert rc.explicit_decoding_config.sample_rate_hertz == info.sample_rate
    assert rc.explicit_decoding_config.audio_channel_count == 1
    assert rc.model == "telephony" and list(rc.language_codes) == ["en-US"]
    assert rc.features.enable_automatic_punctuation
    phrase_set = rc.adaptation.phrase_sets[0].inline_phrase_set
    assert [p.value for p in phrase_set.phrases] == ["Harbor Street"] and phrase_set.boost == 12
    features = config.streaming_config.streaming_features
    assert features.interim_results
    assert features.endpointing_sensitivity.name == "ENDPOINTING_SENSITIVITY_SHORT"
    # Every sample went out, in order, in the call's codec (mu-law re-encoding is bit-exact).
    assert bytes(stream.audio) == sent_audio(frames, encoding.lower().replace("linear16", "l16"))
    assert stream.half_closed and not stream.cancelled  # closed cleanly at call end

    transcripts = run.of(Transcript)
    assert (transcripts[0].text, transcripts[0].final) == ("what", False)
    # One final, whether Google's endpointer (300 ms) or the VAD's (600 ms) answered first:
    # a final made while the VAD still hears speech is shown as interim words until then.
    assert [t.text for t in transcripts if t.final] == ["what time do you open"]
    final = transcripts[-1]
    assert final.confidence == pytest.approx(0.91, abs=1e-3)
    assert final.at_ms == pytest.approx(1500, abs=100)  # where the speech ended, stream time
    # Every frame passes through; one final per utterance, after its end, before the call's.
    assert len(run.of(AudioIn)) == len(frames)
    kinds = [
        type(f).__name__ + ("!" if isinstance(f, Transcript) and f.final else "")
        for f in run.frames
        if not isinstance(f, AudioIn)
    ]
    assert kinds.index("SpeechEnded") < kinds.index("Transcript!") < kinds.index("CallEnded")
    assert kinds[-1] == "CallEnded"


async def test_v1_config_and_results(fake: FakeGoogle) -> None:
    fake.stt_lines = ["book a table"]
    frames = audio_frames([("silence", 0.3), ("speech", 0.8), ("silence", 0.8)], 8000)
    stage = stt(fake, api_version="v1", model="phone_call", language="en-GB", phrases=["table"])
    run = await transcribe(fake, stage, frames, MULAW_8K)

    assert not run.errors and not run.provider_errors
    (stream,) = fake.stt_streams
    assert stream.method == STT_V1
    sc = stream.config.streaming_config
    assert sc.interim_results and not sc.single_utterance
    assert sc.config.encoding.name == "MULAW" and sc.config.sample_rate_hertz == 8000
    assert sc.config.language_code == "en-GB" and sc.config.model == "phone_call"
    assert list(sc.config.speech_contexts[0].phrases) == ["table"]
    transcripts = run.of(Transcript)
    assert (transcripts[0].text, transcripts[0].final) == ("book", False)
    assert [t.text for t in transcripts if t.final] == ["book a table"]


async def test_v1_single_utterance_opens_a_stream_per_utterance(fake: FakeGoogle) -> None:
    fake.stt_lines = ["yes", "no thanks"]
    frames = audio_frames(
        [("silence", 0.3), ("speech", 0.6), ("silence", 0.8), ("speech", 0.6), ("silence", 0.8)],
        8000,
    )
    stage = stt(fake, api_version="v1", single_utterance=True, interim_results=False)
    run = await transcribe(fake, stage, frames, MULAW_8K, lockstep=False)

    assert not run.provider_errors
    assert fake.stt_streams[0].config.streaming_config.single_utterance
    assert [t.text for t in run.of(Transcript) if t.final] == ["yes", "no thanks"]
    assert len(fake.stt_streams) >= 2
    assert fake.stt_streams[0].finals == ["yes"] and fake.stt_streams[1].finals == ["no thanks"]


async def test_project_comes_from_the_environment(
    fake: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    frames = audio_frames([("silence", 0.2)], 8000)
    stage = GoogleStt(endpoint=fake.endpoint, insecure=True, location="europe-west4")
    await transcribe(fake, stage, frames, MULAW_8K)
    assert fake.stt_streams[0].config.recognizer == (
        "projects/env-project/locations/europe-west4/recognizers/_"
    )


async def test_restart_waits_for_a_pause_and_loses_no_audio(fake: FakeGoogle) -> None:
    fake.stt_lines = ["first thing", "second thing", "third thing"]
    segments = [
        ("silence", 0.5),
        ("speech", 1.0),  # spans the 1 s restart point: the stream must not be cut here
        ("silence", 1.0),
        ("speech", 0.8),
        ("silence", 1.0),
        ("speech", 0.8),
        ("silence", 1.0),
    ]
    frames = audio_frames(segments, 8000)
    stage = stt(fake, restart_after_s=1.0)
    run = await transcribe(fake, stage, frames, MULAW_8K)

    assert not run.provider_errors
    assert len(fake.stt_streams) >= 3
    # The streams together got all the audio, each piece once, in order.
    joined = b"".join(bytes(s.audio) for s in fake.stt_streams)
    assert joined == sent_audio(frames, "mulaw")
    # The first stream ran past the restart point until the caller paused.
    assert len(fake.stt_streams[0].audio) / 8000 >= 1.5
    assert fake.stt_streams[0].finals == ["first thing"]
    finals = [t.text for t in run.of(Transcript) if t.final]
    assert finals == ["first thing", "second thing", "third thing"]
    ats = [t.at_ms for t in run.of(Transcript) if t.final]
    assert ats == sorted(ats) and ats[1] == pytest.approx(3300, abs=150)  # offsets re-based
    assert all(s.half_closed for s in fake.stt_streams)


async def test_restart_while_still_receiving_keeps_transcript_order(fake: FakeGoogle) -> None:
    """A new stream's results wait for the old stream's last ones."""
    fake.stt_lines = ["one", "two"]
    stage = stt(fake, restart_after_s=0.5, chunk_ms=20)
    frames = audio_frames(
        [("speech", 0.4), ("silence", 1.0), ("speech", 0.4), ("silence", 1.0)], 8000
    )
    run = await transcribe(fake, stage, frames, MULAW_8K)
    assert [t.text for t in run.of(Transcript) if t.final] == ["one", "two"]


async def test_finals_within_one_vad_utterance_become_one(fake: FakeGoogle) -> None:
    """Google finalizes at a short pause the VAD bridges: the dialogue gets one transcript."""
    fake.stt_lines = ["I would like", "to book a table"]
    frames = audio_frames(
        [("speech", 0.6), ("silence", 0.35), ("speech", 0.6), ("silence", 1.0)], 8000
    )
    run = await transcribe(fake, stt(fake), frames, MULAW_8K)
    finals = [t for t in run.of(Transcript) if t.final]
    assert [t.text for t in finals] == ["I would like to book a table"]
    assert "I would like to" in [t.text for t in run.of(Transcript) if not t.final]


async def test_align_to_vad_off_emits_finals_as_google_makes_them(fake: FakeGoogle) -> None:
    fake.stt_lines = ["I would like", "to book a table"]
    frames = audio_frames(
        [("speech", 0.6), ("silence", 0.35), ("speech", 0.6), ("silence", 1.0)], 8000
    )
    run = await transcribe(fake, stt(fake, align_to_vad=False), frames, MULAW_8K)
    assert [t.text for t in run.of(Transcript) if t.final] == ["I would like", "to book a table"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "auth"),
        (grpc.StatusCode.PERMISSION_DENIED, "auth"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid"),
        (grpc.StatusCode.UNAVAILABLE, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "timeout"),
    ],
)
async def test_stream_errors_become_one_provider_error(
    fake: FakeGoogle, code: grpc.StatusCode, kind: str
) -> None:
    fake.fail(STT_V2, code, f"the {code.name} message")
    fake.stt_lines = ["hello"]
    frames = audio_frames([("silence", 0.6), ("speech", 0.6), ("silence", 0.8)], 8000)
    stage = stt(fake)
    async with Driven([Vad(), stage], MULAW_8K) as run:
        # The stream opens at call start; Google refuses it on reading its configuration.
        await until(lambda: bool(fake.stt_streams) and fake.stt_streams[0].failed is not None)
        await until(lambda: not stage.streaming)
        await run.push(*frames, CallEnded())
        await run.drain()

    assert not run.errors  # not fatal
    (error,) = run.provider_errors
    assert isinstance(error, ProviderError)
    assert error.kind == kind and error.status == code.name
    assert error.stage == "google_stt" and error.provider == "google-speech"
    assert f"the {code.name} message" in str(error)
    finals = [t.text for t in run.of(Transcript) if t.final]
    if error.retryable:
        # A transient failure: the stream is reopened at once and the caller is still heard.
        assert finals == ["hello"] and len(fake.stt_streams) == 2
    else:
        # Auth, quota, bad config: no hammering; the audio waits in a bounded buffer.
        assert finals == [] and len(fake.stt_streams) == 1


async def test_a_stream_failing_mid_call_is_reported_once_and_reopened(fake: FakeGoogle) -> None:
    fake.fail(STT_V2, grpc.StatusCode.UNAVAILABLE, "connection reset", after_ms=700)
    fake.stt_lines = ["after the outage"]
    frames = audio_frames([("silence", 1.0), ("speech", 0.6), ("silence", 0.8)], 8000)
    async with Driven([Vad(), stt(fake)], MULAW_8K) as run:
        await run.push_paced(frames)
        await run.push(CallEnded())
        await run.drain()
    assert [e.kind for e in run.provider_errors] == ["unavailable"]
    assert [t.text for t in run.of(Transcript) if t.final] == ["after the outage"]
    assert len(fake.stt_streams) == 2


async def test_repeated_failures_back_off_and_report_once(fake: FakeGoogle) -> None:
    fake.fail(STT_V2, grpc.StatusCode.UNAVAILABLE, "down", times=50)
    frames = audio_frames([("silence", 3.0)], 8000)
    stage = stt(fake)
    async with Driven([stage], MULAW_8K) as run:
        for start in range(0, len(frames), 5):  # 100 ms at a time, each failure seen at once
            await until(lambda: not stage.streaming)
            await run.push(*frames[start : start + 5])
        await run.push(CallEnded())
        await run.drain()
    assert [e.kind for e in run.provider_errors] == ["unavailable"]
    # Reopened after 0 ms, then 500 ms, 1 s, 2 s of audio: a handful, not one per chunk.
    assert 3 <= len(fake.stt_streams) <= 5


async def test_oldest_audio_is_dropped_when_the_stream_cannot_take_it(fake: FakeGoogle) -> None:
    fake.fail(STT_V2, grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")
    stage = stt(fake, buffer_ms=300)
    frames = audio_frames([("silence", 2.0)], 8000)
    async with Driven([stage], MULAW_8K) as run:
        await until(lambda: bool(fake.stt_streams) and fake.stt_streams[0].failed is not None)
        await until(lambda: not stage.streaming)
        await run.push(*frames, CallEnded())
        await run.drain()
    assert stage.dropped_chunks >= 10  # the buffer holds 3 chunks of 100 ms, no more


async def test_stop_without_call_end_cancels_the_stream(fake: FakeGoogle) -> None:
    stage = stt(fake)
    async with Driven([stage], MULAW_8K) as run:
        await run.push(*audio_frames([("silence", 0.4)], 8000))
        await until(lambda: bool(fake.stt_streams) and len(fake.stt_streams[0].audio) > 0)
    await until(lambda: fake.stt_streams[0].cancelled)
    assert not fake.stt_streams[0].half_closed


async def test_waits_for_the_final_after_speech_ends(fake: FakeGoogle) -> None:
    """After SpeechEnded the stage counts as busy until the final arrives (bounded), so a
    virtual-time call does not race ahead of the transcript."""
    fake.stt_lines = ["hi"]
    stage = stt(fake)
    async with Driven([stage], MULAW_8K) as run:
        frames = audio_frames([("speech", 0.5), ("silence", 0.4)], 8000)
        await run.push(SpeechStarted(0.0), *frames, SpeechEnded(500.0, 0.0))
        assert stage.has_background_work or run.of(Transcript)
        await until(lambda: not stage.has_background_work)
        assert [t.text for t in run.of(Transcript) if t.final] == ["hi"]


async def test_the_wait_for_google_s_last_words_runs_out_on_the_call_s_clock(
    fake: FakeGoogle,
) -> None:
    """Google still owes words at the VAD's end: the stage waits for them (busy) at most
    ``final_wait_ms`` of the call's clock, then sends what it holds; here, on virtual time."""
    fake.stt_lines = ["I would like", "to book a table"]
    stage = stt(fake, final_wait_ms=2000)
    frames = audio_frames([("speech", 0.6), ("silence", 0.4), ("speech", 0.6)], 8000)
    async with Driven([stage], MULAW_8K) as run:
        await run.push(SpeechStarted(0.0))
        await run.push_in_lockstep(frames, fake, bytes_per_frame=160)
        await until(lambda: "I would like to" in [t.text for t in run.of(Transcript)])
        await run.push(SpeechEnded(1600.0, 0.0))  # no trailing silence: "to..." stays interim
        assert stage.has_background_work
        await run.clock.advance(1.99)
        assert not [t for t in run.of(Transcript) if t.final]
        await run.clock.advance(0.01)
        await until(lambda: not stage.has_background_work)
        assert [t.text for t in run.of(Transcript) if t.final] == ["I would like"]


def test_params_defaults_and_limits() -> None:
    p = GoogleSttParams()
    assert (p.api_version, p.location, p.model, p.language) == (
        "v2",
        "global",
        "telephony",
        "en-US",
    )
    assert p.interim_results and not p.single_utterance and p.restart_after_s == 290
    with pytest.raises(ValueError):
        GoogleSttParams(restart_after_s=400)
    with pytest.raises(ValueError):
        GoogleSttParams(api_version="v3")
    with pytest.raises(ValueError):
        GoogleSttParams(credentials="x")  # type: ignore[call-arg]


async def test_words_before_the_vad_onset_are_repeated_inside_the_utterance(
    fake: FakeGoogle,
) -> None:
    """Google can show words before the VAD has heard enough speech to start an utterance;
    barge-in only counts words inside one, so the stage says them again at the onset."""
    fake.stt_lines = ["stop please"]
    stage = stt(fake)
    async with Driven([stage], MULAW_8K) as run:
        await run.push(*audio_frames([("speech", 0.1)], 8000))
        await until(lambda: bool(run.of(Transcript)))
        await run.push(SpeechStarted(0.0))
        await run.drain()
    kinds = [
        (type(f).__name__, getattr(f, "text", None))
        for f in run.frames
        if not isinstance(f, AudioIn)
    ]
    assert kinds[-2:] == [("SpeechStarted", None), ("Transcript", "stop")]
