"""The ``polly`` stage against a local fake of Polly's REST API, through boto3's endpoint_url."""

from __future__ import annotations

from typing import Any

import aws_fakes as fakes
import numpy as np
import pytest

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.frames import AgentAudio, AgentText, Frame, Hangup
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import StageError
from voicebridge.stages.aws_common import ssml_to_text
from voicebridge.stages.tts.polly import Polly

pytestmark = pytest.mark.usefixtures("aws_env")


async def bound(stage: Polly, rate: int = 8000) -> list[Frame]:
    """Bind a stage to a call by hand, so process() raises straight into the test."""
    out: list[Frame] = []

    async def emit(frame: Frame) -> None:
        out.append(frame)

    stage.bind(CallContext(CallInfo(call_id="c-1", sample_rate=rate)), emit)
    await stage.start()
    return out


def polly(fake: Any, **params: Any) -> Polly:
    return Polly(endpoint_url=fake.url, retry_backoff_s=0.01, **params)


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_each_sentence_is_one_request_and_one_piece_of_audio(rate: int) -> None:
    async with fakes.FakeAwsHttp(ms_per_char=20) as fake:
        stage = polly(fake, voice_id="Matthew", engine="neural", language_code="en-US")
        out = await bound(stage, rate)
        await stage.process(AgentText("Hello there. How are you today?", turn=1, last=True))
        audio = [f for f in out if isinstance(f, AgentAudio)]
        assert [a.text for a in audio] == ["Hello there.", "How are you today?"]
        assert [a.last for a in audio] == [False, True]
        assert all(a.turn == 1 and a.pcm.dtype == np.int16 for a in audio)
        # The fake renders 20 ms per character at the requested rate: no resampling happened.
        assert [a.pcm.size for a in audio] == [rate * 20 * 12 // 1000, rate * 20 * 18 // 1000]
        assert int(np.abs(audio[0].pcm).max()) > 1000
        requests = fake.polly_requests()
        assert [r.json["Text"] for r in requests] == ["Hello there.", "How are you today?"]
        assert requests[0].json == {
            "Text": "Hello there.",
            "TextType": "text",
            "OutputFormat": "pcm",
            "SampleRate": str(rate),
            "VoiceId": "Matthew",
            "Engine": "neural",
            "LanguageCode": "en-US",
        }
        assert all(r.signed and r.service == "polly" for r in requests)
        assert requests[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")


async def test_ssml_is_sent_whole_and_heard_as_plain_text() -> None:
    async with fakes.FakeAwsHttp() as fake:
        stage = polly(fake, engine="standard", lexicon_names=["names"])
        out = await bound(stage)
        ssml = "<speak>Hi. <break time='300ms'/> It is &lt;fine&gt;.</speak>"
        await stage.process(AgentText(ssml, turn=2))
        (audio,) = [f for f in out if isinstance(f, AgentAudio)]
        assert audio.text == "Hi. It is <fine>."
        (request,) = fake.polly_requests()
        assert request.json["TextType"] == "ssml" and request.json["Text"] == ssml
        assert request.json["Engine"] == "standard" and request.json["LexiconNames"] == ["names"]
    assert ssml_to_text("<speak>a<b/>b <emphasis>c</emphasis>.</speak>") == "a b c."


async def test_other_frames_pass_and_an_empty_last_piece_still_ends_the_turn() -> None:
    async with fakes.FakeAwsHttp() as fake:
        stage = polly(fake)
        out = await bound(stage)
        await stage.process(Hangup("x"))
        await stage.process(AgentText("   ", turn=3, last=True))
        assert isinstance(out[0], Hangup)
        assert isinstance(out[1], AgentAudio) and out[1].last and out[1].text == ""
        assert fake.polly_requests() == []


async def test_throttling_is_retried_then_succeeds() -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.fail_next("ThrottlingException", 400, n=2, message="Rate exceeded")
        stage = polly(fake, max_attempts=3)
        out = await bound(stage)
        await stage.process(AgentText("Retry me.", turn=1))
        assert len([f for f in out if isinstance(f, AgentAudio)]) == 1
        assert [r.status for r in fake.requests] == [400, 400, 200]


@pytest.mark.parametrize(
    ("code", "status", "kind", "tries"),
    [
        ("AccessDeniedException", 403, "auth", 1),
        ("UnrecognizedClientException", 403, "auth", 1),
        ("ThrottlingException", 400, "quota", 3),
        ("LimitExceededException", 400, "quota", 3),
        ("ValidationException", 400, "invalid", 1),
        ("TextLengthExceededException", 400, "invalid", 1),
        ("InvalidSsmlException", 400, "invalid", 1),
        ("ServiceFailureException", 500, "unavailable", 3),
        ("InternalFailure", 500, "unavailable", 3),
        ("ServiceUnavailable", 503, "unavailable", 3),
    ],
)
async def test_errors_become_one_provider_error_of_the_right_kind(
    code: str, status: int, kind: str, tries: int
) -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.fail_next(code, status, n=5, message=f"the {code} message")
        stage = polly(fake, max_attempts=3)
        await bound(stage)
        with pytest.raises(ProviderError) as caught:
            await stage.process(AgentText("Say it.", turn=1))
        error = caught.value
        assert error.kind == kind and error.stage == "polly" and error.provider == "Amazon Polly"
        assert code in str(error) and f"the {code} message" in str(error)
        assert len(fake.requests) == tries


async def test_a_slow_answer_is_a_timeout() -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.hold_next(2)  # no answer while the test runs
        stage = polly(fake, read_timeout_s=0.2, max_attempts=2)
        await bound(stage)
        with pytest.raises(ProviderError) as caught:
            await stage.process(AgentText("Slow.", turn=1))
        assert caught.value.kind == "timeout"
        assert len(fake.requests) == 2  # a timeout is retried: synthesis has no side effect


async def test_no_service_listening_is_unavailable() -> None:
    async with fakes.FakeAwsHttp() as fake:
        url = fake.url
    stage = Polly(endpoint_url=url, max_attempts=2, retry_backoff_s=0.01, connect_timeout_s=1)
    await bound(stage)
    with pytest.raises(ProviderError) as caught:
        await stage.process(AgentText("Anyone?", turn=1))
    assert caught.value.kind == "unavailable"


async def test_missing_credentials_is_an_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with fakes.FakeAwsHttp() as fake:
        stage = polly(fake)
        await bound(stage)
        with pytest.raises(ProviderError) as caught:
            await stage.process(AgentText("Who am I?", turn=1))
        assert caught.value.kind == "auth" and fake.requests == []


async def test_barge_in_cancels_the_request_and_skips_the_rest_of_the_reply() -> None:
    async with fakes.FakeAwsHttp() as fake:
        answer = fake.hold_next()  # Polly answers "One." only when the test says so
        async with fakes.LiveRun([polly(fake)]) as run:
            turn = run.ctx.begin_turn()
            await run.push(AgentText("One. Two. Three.", turn=turn))
            await run.until(lambda: len(fake.polly_requests()) == 1)
            run.pipeline.interrupt()
            await run.until(lambda: run.pipeline.idle)
            assert fake.answered == 0  # idle while the answer is still held: not awaited
            answer.set()  # the slow answer comes ...
            await run.until(lambda: fake.answered == 1)
            # ... and the stage carries on with the next turn.
            turn = run.ctx.begin_turn()
            await run.push(AgentText("Next.", turn=turn))
            await run.until(lambda: len(run.of(AgentAudio)) == 1)
            await run.end()
        assert [a.text for a in run.of(AgentAudio)] == ["Next."]  # the late answer was dropped
        spoken = [r.json["Text"] for r in fake.polly_requests()]
        assert spoken == ["One.", "Next."]  # "Two." and "Three." never requested
        assert run.errors == [] and run.provider_errors == []


async def test_region_is_required_at_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(StageError, match="no AWS region"):
        await Polly.preload(Polly.Params())
    await Polly.preload(Polly.Params(region="eu-west-1"))


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        Polly(engine="turbo")
    with pytest.raises(ValueError):
        Polly(api_key="nope")
    assert Polly().params.voice_id == "Joanna"


async def test_word_timings_come_from_speech_marks_requested_beside_the_audio() -> None:
    async with fakes.FakeAwsHttp(ms_per_char=20) as fake:
        stage = polly(fake, word_timings=True)
        out = await bound(stage, 8000)
        await stage.process(AgentText("Call us at 9 - we're open.", turn=1, last=True))
        (audio,) = [f for f in out if isinstance(f, AgentAudio)]
        marks, pcm = sorted(fake.polly_requests(), key=lambda r: r.json["OutputFormat"])
        assert marks.json["OutputFormat"] == "json" and marks.json["SpeechMarkTypes"] == ["word"]
        assert "SampleRate" not in marks.json and marks.json["Text"] == pcm.json["Text"]
        # Words start at 20 ms per character: "Call"@0, "us"@100, "at"@160, "9"@220,
        # "we're"@300, "open"@420. A word ends when the next starts; "-" (no mark) ends with
        # "9"; the last ends with the audio (26 characters: 520 ms).
        assert audio.word_ends_ms == (100, 160, 220, 300, 300, 420, 520)


async def test_without_marks_the_audio_still_plays() -> None:
    async with fakes.FakeAwsHttp(ms_per_char=20, mark_failures=5) as fake:
        stage = polly(fake, word_timings=True, max_attempts=1)
        out = await bound(stage, 8000)
        await stage.process(AgentText("Hello there.", turn=1, last=True))
        (audio,) = [f for f in out if isinstance(f, AgentAudio)]
        assert audio.pcm.size == 8000 * 20 * 12 // 1000 and audio.word_ends_ms is None
        # SSML is never marked (its offsets are into the markup, not the words heard).
        await stage.process(AgentText("<speak>Hi <break time='1s'/> there</speak>", turn=2))
        requests = fake.polly_requests()
        assert [r.json["OutputFormat"] for r in requests].count("json") == 1
