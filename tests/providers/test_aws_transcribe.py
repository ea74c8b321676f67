"""The ``transcribe`` stage against a local fake of Transcribe's streaming WebSocket API: presigned
URL, event-stream audio, partial and final results, exceptions, drops and reconnects."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aws_fakes as fakes
import pytest
from botocore.credentials import ReadOnlyCredentials
from structlog.testing import capture_logs

from voicebridge.call.context import CallInfo
from voicebridge.frames import AudioIn, SpeechEnded, SpeechStarted, Transcript
from voicebridge.sim.signals import silence, speech_like, utterances
from voicebridge.stages.stt.transcribe import Transcribe, presign_url

pytestmark = pytest.mark.usefixtures("aws_env")

TWO_UTTERANCES = [
    ("silence", 0.3),
    ("speech", 0.8),
    ("silence", 0.6),
    ("speech", 0.6),
    ("silence", 0.6),
]


def transcribe(fake: Any, **params: Any) -> Transcribe:
    return Transcribe(endpoint=fake.url, reconnect_backoff_s=0.01, **params)


def finals(run: Any) -> list[str]:
    return [f.text for f in run.of(Transcript) if f.final]


def info(rate: int = 8000) -> CallInfo:
    return CallInfo(call_id="c-transcribe", sample_rate=rate)


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_audio_streams_up_and_results_come_back_as_transcripts(rate: int) -> None:
    pcm = utterances(TWO_UTTERANCES, rate)
    async with fakes.FakeTranscribe(lines=["what time do you open", "thank you"]) as fake:
        stage = transcribe(fake, vocabulary_name="bakery-words", chunk_ms=100)
        async with fakes.LiveRun([stage], info(rate)) as run:
            await run.audio(pcm)
            await run.end()
        (stream,) = fake.streams
        # The presigned URL carried the configured parameters (the fake checked its signature).
        assert stream.query["language-code"] == "en-US"
        assert stream.query["media-encoding"] == "pcm"
        assert stream.query["sample-rate"] == str(rate)
        assert stream.query["vocabulary-name"] == "bakery-words"
        assert stream.query["enable-partial-results-stabilization"] == "true"
        assert stream.query["partial-results-stability"] == "high"
        # Every sample arrived, in order, as 16-bit little-endian PCM in 100 ms AudioEvents,
        # and the stream was ended with an empty AudioEvent.
        assert bytes(stream.audio) == pcm.astype("<i2").tobytes()
        assert stream.audio_events == len(pcm) // (rate // 10)
        assert stream.ended and stream.bad_messages == []
        assert finals(run) == ["what time do you open", "thank you"]
        interim = [f.text for f in run.of(Transcript) if not f.final]
        # One partial per new word (the fake resends unchanged partials; they are said once).
        assert interim == [
            "what",
            "what time",
            "what time do",
            "what time do you",
            "thank",
            "thank you",
        ]
        first, second = (f for f in run.of(Transcript) if f.final)
        assert first.confidence == pytest.approx(0.9)
        assert first.at_ms == pytest.approx(1100, abs=100)  # end of speech, in stream time
        assert second.at_ms == pytest.approx(2300, abs=100)
        assert len(run.of(AudioIn)) == len(pcm) // (rate // 50)  # audio is passed on
        assert run.provider_errors == [] and run.errors == []


async def test_without_partial_results_only_finals_come_out() -> None:
    async with fakes.FakeTranscribe(lines=["hello"]) as fake:
        stage = transcribe(fake, partial_results=False, language="en-GB")
        async with fakes.LiveRun([stage], info()) as run:
            await run.audio(utterances(TWO_UTTERANCES[:3], 8000))
            await run.end()
        (stream,) = fake.streams
        assert stream.query["language-code"] == "en-GB"
        assert "enable-partial-results-stabilization" not in stream.query
        assert [(f.text, f.final) for f in run.of(Transcript)] == [("hello", True)]


async def test_an_utterance_still_going_at_call_end_is_finished() -> None:
    async with fakes.FakeTranscribe(lines=["cut short"]) as fake:
        async with fakes.LiveRun([transcribe(fake)], info()) as run:
            await run.audio(speech_like(0.6, 8000))
            await run.end()
        assert fake.streams[0].ended
        assert finals(run) == ["cut short"]


async def test_no_stream_is_opened_for_a_call_without_audio() -> None:
    async with fakes.FakeTranscribe() as fake:
        async with fakes.LiveRun([transcribe(fake)], info()) as run:
            await run.end()
        assert fake.streams == [] and fake.rejected == []


def test_presigned_url_follows_the_documented_form() -> None:
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token")
    url = presign_url(
        "wss://transcribestreaming.eu-west-1.amazonaws.com:8443",
        {"language-code": "en-US", "media-encoding": "pcm", "sample-rate": "8000"},
        credentials,
        "eu-west-1",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "wss",
        "transcribestreaming.eu-west-1.amazonaws.com:8443",
        "/stream-transcription-websocket",
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"].startswith("AKIDEXAMPLE/")
    assert query["X-Amz-Credential"].endswith("/eu-west-1/transcribe/aws4_request")
    assert query["X-Amz-Expires"] == "300"
    assert query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Security-Token"] == "session-token"
    assert len(query["X-Amz-Signature"]) == 64
    ok, reason, service = fakes.verify_presigned(
        parts.path, parts.query, parts.netloc, secret="secret", access_key="AKIDEXAMPLE"
    )
    assert ok and service == "transcribe", reason


async def test_a_bad_signature_is_refused_at_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    async with fakes.FakeTranscribe(lines=["x"]) as fake:
        async with fakes.LiveRun([transcribe(fake)], info()) as run:
            await run.audio(speech_like(0.2, 8000))
            await feed_until(run, lambda: bool(run.provider_errors))
        (error,) = run.provider_errors
        assert (error.kind, error.status) == ("auth", 403)
        assert "signature mismatch" in str(error)
        assert fake.rejected == [(403, "signature mismatch")]  # not retried


async def feed_until(run: Any, predicate: Any, seconds: float = 5.0, *, check: bool = True) -> None:
    """Stream silence (a 20 ms frame every 5 ms of real time) until ``predicate()`` holds: an
    error from the stream surfaces from the stage's next ``process`` call, so audio must flow."""
    t = run.ctx.state.setdefault("t_ms", 10_000.0)
    chunk = silence(0.02, run.info.sample_rate)
    for _ in range(round(seconds / 0.005)):
        if predicate():
            break
        await run.push(AudioIn(chunk, t))
        t += 20.0
        await asyncio.sleep(0.005)
    run.ctx.state["t_ms"] = t
    assert predicate() or not check, "condition not met in time"


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        ("BadRequestException", "invalid"),
        ("LimitExceededException", "quota"),
        ("ConflictException", "invalid"),
    ],
)
async def test_exceptions_that_a_new_stream_cannot_fix_are_raised_once(
    exception: str, kind: str
) -> None:
    fault = fakes.StreamFault(stream=0, after_events=2, exception=exception, message="no way")
    async with (
        fakes.FakeTranscribe(lines=["x"], faults=[fault]) as fake,
        fakes.LiveRun([transcribe(fake)], info()) as run,
    ):
        await run.audio(speech_like(0.3, 8000))
        await feed_until(run, lambda: bool(run.provider_errors))
        (error,) = run.provider_errors
        assert (error.kind, error.stage, error.provider) == (
            kind,
            "transcribe",
            "Amazon Transcribe",
        )
        assert f"{exception}: no way" in str(error)
        await feed_until(run, lambda: False, seconds=0.2, check=False)  # audio goes on
        assert len(fake.streams) == 1 and len(run.provider_errors) == 1
        # The caller speaking again is the cue to try once more.
        await run.push(SpeechStarted(at_ms=20_000))
        await feed_until(run, lambda: len(fake.streams) == 2)


@pytest.mark.parametrize("fault", ["InternalFailureException", "ServiceUnavailableException", None])
async def test_a_broken_stream_is_reopened_and_transcription_goes_on(fault: str | None) -> None:
    faults = [fakes.StreamFault(stream=0, after_events=3, exception=fault)]
    # The first stream breaks 300 ms into the speech, before it counts as an utterance
    # (min_speech_ms), so the one line goes to the utterance after the reconnect.
    async with fakes.FakeTranscribe(
        lines=["after the break"], faults=faults, min_speech_ms=300
    ) as fake:
        async with fakes.LiveRun([transcribe(fake)], info()) as run:
            await run.audio(speech_like(0.4, 8000), pace_s=0.002)
            await feed_until(run, lambda: len(fake.streams) == 2)
            await run.audio(utterances([("speech", 0.6), ("silence", 0.5)], 8000), start_ms=30_000)
            await run.end()
        assert len(fake.streams) == 2 and fake.streams[1].ended
        assert finals(run) == ["after the break"]
        assert run.provider_errors == []


async def test_reconnects_are_bounded() -> None:
    faults = [
        fakes.StreamFault(stream=n, after_events=1, exception="InternalFailureException")
        for n in range(5)
    ]
    async with fakes.FakeTranscribe(faults=faults) as fake:
        async with fakes.LiveRun([transcribe(fake, max_reconnects=2)], info()) as run:
            await run.audio(speech_like(0.2, 8000))
            await feed_until(run, lambda: bool(run.provider_errors))
        (error,) = run.provider_errors
        assert error.kind == "unavailable" and "InternalFailureException" in str(error)
        assert len(fake.streams) == 3  # the first stream and two reconnects


@pytest.mark.parametrize(
    ("status", "kind", "streams_tried"),
    [(403, "auth", 1), (429, "quota", 1), (503, "unavailable", 2)],
)
async def test_handshake_refusals(status: int, kind: str, streams_tried: int) -> None:
    async with fakes.FakeTranscribe(reject_status=status) as fake:
        async with fakes.LiveRun([transcribe(fake, max_reconnects=1)], info()) as run:
            await run.audio(speech_like(0.2, 8000))
            await feed_until(run, lambda: bool(run.provider_errors))
        (error,) = run.provider_errors
        assert (error.kind, error.status) == (kind, status)
        assert len(fake.rejected) == streams_tried


async def test_nothing_listening_is_unavailable() -> None:
    async with fakes.FakeTranscribe() as fake:
        url = fake.url
    stage = Transcribe(endpoint=url, max_reconnects=1, reconnect_backoff_s=0.01)
    async with fakes.LiveRun([stage], info()) as run:
        await run.audio(speech_like(0.2, 8000))
        await feed_until(run, lambda: bool(run.provider_errors))
    assert run.provider_errors[0].kind == "unavailable"


async def test_barge_in_does_not_disturb_the_stream() -> None:
    async with fakes.FakeTranscribe(lines=["one", "two"]) as fake:
        async with fakes.LiveRun([transcribe(fake)], info()) as run:
            t = await run.audio(utterances(TWO_UTTERANCES[:3], 8000))
            await run.until(lambda: finals(run) == ["one"])
            run.ctx.begin_turn()
            run.pipeline.interrupt()
            await run.audio(utterances(TWO_UTTERANCES[3:], 8000), start_ms=t)
            await run.end()
        assert finals(run) == ["one", "two"] and len(fake.streams) == 1


async def test_finals_wait_for_the_vad_and_one_utterance_is_one_transcript() -> None:
    """Transcribe may finalize mid-utterance (at a short pause): the dialogue must not start a
    reply while the caller is still talking, nor answer half a sentence."""
    async with (
        fakes.FakeTranscribe(lines=["I would like", "a cake please"]) as fake,
        fakes.LiveRun([transcribe(fake)], info()) as run,
    ):
        await run.push(SpeechStarted(at_ms=0))
        pattern = [("speech", 0.5), ("silence", 0.4), ("speech", 0.5), ("silence", 0.4)]
        with capture_logs() as logs:
            t = await run.audio(utterances(pattern, 8000))
            # The stage has taken both finals off the stream (it logs each one it takes) ...
            await run.until(lambda: [e["event"] for e in logs].count("stt_final") == 2)
        assert finals(run) == []  # ... and holds them: the VAD has not ended the utterance
        assert [f.text for f in run.of(Transcript)][-1] == "a cake"  # interim results flow
        await run.push(SpeechEnded(at_ms=t, started_ms=0))
        await run.until(lambda: bool(finals(run)))
        (final,) = (f for f in run.of(Transcript) if f.final)
        assert final.text == "I would like a cake please"
        assert final.confidence == pytest.approx(0.9)
        assert final.at_ms == pytest.approx(1400, abs=100)  # end of the last words
        kinds = [type(f).__name__ for f in run.frames if not isinstance(f, AudioIn)]
        assert kinds.index("SpeechEnded") < len(kinds) - 1  # the transcript follows it
        await run.end()


async def test_a_final_arriving_after_the_vad_end_is_sent_at_once() -> None:
    async with fakes.FakeTranscribe(lines=["opening hours"]) as fake:
        # A final timeout far beyond the wait below: the final cannot come from the timer.
        async with fakes.LiveRun([transcribe(fake, final_timeout_ms=10_000)], info()) as run:
            await run.push(SpeechStarted(at_ms=0))
            t = await run.audio(speech_like(0.5, 8000))
            await run.until(lambda: any(not f.final for f in run.of(Transcript)))
            await run.push(SpeechEnded(at_ms=t, started_ms=0))
            await run.settled()  # the stage has handled the VAD's end ...
            assert finals(run) == []  # ... and waits: Transcribe has not finalized yet
            await run.audio(silence(0.4, 8000), start_ms=t)
            await run.until(lambda: finals(run) == ["opening hours"])
            await run.end()
        assert finals(run) == ["opening hours"]


async def test_a_final_that_never_comes_is_replaced_by_the_last_partial() -> None:
    async with fakes.FakeTranscribe(lines=["book a table"]) as fake:
        stage = transcribe(fake, final_timeout_ms=100)
        async with fakes.LiveRun([stage], info()) as run:
            await run.push(SpeechStarted(at_ms=0))
            t = await run.audio(speech_like(0.6, 8000))
            await run.until(lambda: any(not f.final for f in run.of(Transcript)))
            await run.push(SpeechEnded(at_ms=t, started_ms=0))
            await run.until(lambda: bool(finals(run)))
            assert finals(run) == ["book a table"]
            # The real final comes later: it is not sent a second time. The call's end closes
            # the stream only after every result on it has been read.
            await run.audio(silence(0.4, 8000), start_ms=t)
            await run.until(lambda: fake.finals_sent == ["book a table"])
            await run.end()
        assert finals(run) == ["book a table"]


async def test_join_finals_off_sends_each_final_as_it_comes() -> None:
    async with (
        fakes.FakeTranscribe(lines=["I would like", "a cake please"]) as fake,
        fakes.LiveRun([transcribe(fake, join_finals=False)], info()) as run,
    ):
        await run.push(SpeechStarted(at_ms=0))
        pattern = [("speech", 0.5), ("silence", 0.4), ("speech", 0.5), ("silence", 0.4)]
        await run.audio(utterances(pattern, 8000))
        await run.until(lambda: finals(run) == ["I would like", "a cake please"])
        await run.end()


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        Transcribe(endpoint="http://not-a-websocket")
    with pytest.raises(ValueError):
        Transcribe(chunk_ms=500)
    with pytest.raises(ValueError):
        Transcribe(language="english")
    assert Transcribe().params.partial_results is True
