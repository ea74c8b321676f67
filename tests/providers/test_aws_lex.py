"""The ``lex`` dialogue against a local fake of the Lex V2 runtime REST API (boto3 endpoint_url)."""

from __future__ import annotations

from typing import Any

import aws_fakes as fakes
import pytest

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.config import load_pipeline_text
from voicebridge.frames import AgentText, CallStarted, Dtmf, Frame, Hangup, Transcript
from voicebridge.runtime.providers import ProviderError
from voicebridge.sim.signals import speech_like
from voicebridge.stages.dialogue.lex import LexDialogue, lex_session_id
from voicebridge.testing.harness import CallHarness, call_started

pytestmark = pytest.mark.usefixtures("aws_env")

BOT = "BOTID12345"
ALIAS = "ALIAS12345"
INFO = CallInfo(
    call_id="5f1b9a2e-0000-4000-8000-000000000001",
    sample_rate=8000,
    extra_headers={"X-PH-Account": "42", "X-PH-Lang": "en"},
)


def lex(fake: Any, **params: Any) -> LexDialogue:
    defaults: dict[str, Any] = {
        "bot_id": BOT,
        "bot_alias_id": ALIAS,
        "locale_id": "en_GB",
        "endpoint_url": fake.url,
        "retry_backoff_s": 0.01,
    }
    return LexDialogue(**{**defaults, **params})


async def bound(stage: LexDialogue, info: CallInfo = INFO) -> list[Frame]:
    out: list[Frame] = []

    async def emit(frame: Frame) -> None:
        out.append(frame)

    stage.bind(CallContext(info), emit)
    await stage.start()
    return out


def texts(frames: list[Frame]) -> list[tuple[str, bool]]:
    return [(f.text, f.last) for f in frames if isinstance(f, AgentText)]


def said(text: str) -> Transcript:
    return Transcript(text, final=True)


async def test_recognize_text_request_path_body_session_and_signature() -> None:
    async with fakes.FakeAwsHttp() as fake:
        stage = lex(fake, session_attributes={"channel": "phone"})
        out = await bound(stage)
        await stage.process(said("what are your hours"))
        await stage.process(said("and tomorrow"))
        first, second = fake.lex_requests()
        assert first.path == (
            f"/bots/{BOT}/botAliases/{ALIAS}/botLocales/en_GB/sessions/{INFO.call_id}/text"
        )
        assert first.json == {
            "text": "what are your hours",
            "sessionState": {
                "sessionAttributes": {"channel": "phone", "X-PH-Account": "42", "X-PH-Lang": "en"}
            },
        }
        assert second.json == {"text": "and tomorrow"}  # Lex keeps the session state
        assert first.signed and first.service == "lex"
        assert first.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
        assert texts(out) == [
            ("You said what are your hours.", True),
            ("You said and tomorrow.", True),
        ]
        turns = [f.turn for f in out if isinstance(f, AgentText)]
        assert turns == [1, 2]  # one new turn per reply
        assert isinstance(out[0], Transcript)  # frames are passed on


def test_session_ids_are_made_valid_for_lex() -> None:
    assert lex_session_id("abc-123") == "abc-123"
    assert lex_session_id("call id/with spaces?") == "call-id-with-spaces-"
    assert lex_session_id("x") == "call-x"
    assert lex_session_id("") == "call-unknown"
    assert len(lex_session_id("a" * 300)) == 100


async def test_a_session_id_with_reserved_characters_reaches_lex_intact() -> None:
    async with fakes.FakeAwsHttp() as fake:
        stage = lex(fake, header_attributes=False)
        await bound(stage, CallInfo(call_id="call:7 / weird"))
        await stage.process(said("hi"))
        (request,) = fake.lex_requests()
        assert request.signed  # the percent-encoded path was signed as sent
        assert request.path.endswith("/sessions/call%3A7---weird/text")
        assert request.json == {"text": "hi"}  # nothing to send as attributes


async def test_message_types_become_agent_text() -> None:
    reply = {
        "messages": [
            {"contentType": "PlainText", "content": "Sure. Your table is booked."},
            {"contentType": "SSML", "content": "<speak>See you <emphasis>soon</emphasis>.</speak>"},
            {"contentType": "CustomPayload", "content": '{"ui": "card"}'},
            {
                "contentType": "ImageResponseCard",
                "imageResponseCard": {"title": "Anything else?", "buttons": []},
            },
        ],
        "sessionState": {"dialogAction": {"type": "ElicitIntent"}},
    }
    async with fakes.FakeAwsHttp() as fake:
        fake.lex_replies.extend([reply, reply])
        keep = lex(fake)
        out = await bound(keep)
        await keep.process(said("book a table"))
        assert texts(out) == [
            ("Sure.", False),
            ("Your table is booked.", False),
            ("<speak>See you <emphasis>soon</emphasis>.</speak>", False),
            ("Anything else?", True),
        ]
        strip = lex(fake, ssml="strip")
        out = await bound(strip)
        await strip.process(said("book a table"))
        assert texts(out)[2] == ("See you soon.", False)


@pytest.mark.parametrize(
    ("state", "end_on_close", "hangup"),
    [
        ("Fulfilled", "hangup", True),
        ("Failed", "hangup", True),
        ("Fulfilled", "continue", False),
        ("InProgress", "hangup", False),
    ],
)
async def test_close_ends_the_call_after_the_last_words(
    state: str, end_on_close: str, hangup: bool
) -> None:
    reply = {
        "messages": [{"contentType": "PlainText", "content": "All done. Goodbye."}],
        "sessionState": {
            "dialogAction": {"type": "Close"},
            "intent": {"name": "Book", "state": state},
        },
    }
    async with fakes.FakeAwsHttp() as fake:
        fake.lex_replies.append(reply)
        stage = lex(fake, end_on_close=end_on_close)
        out = await bound(stage)
        await stage.process(said("that's all"))
        kinds = [type(f).__name__ for f in out]
        if hangup:
            assert kinds == ["Transcript", "AgentText", "AgentText", "Hangup"]
            assert out[-1] == Hangup(reason=f"lex_{state.lower()}")
            await stage.process(said("wait, one more thing"))  # the bot is done listening
            assert len(fake.lex_requests()) == 1
        else:
            assert "Hangup" not in kinds


async def test_greeting_start_text_and_keypad_entry() -> None:
    async with fakes.FakeAwsHttp() as fake:
        stage = lex(fake, greeting="Welcome to the bakery.", start_text="hello")
        out = await bound(stage)
        await stage.process(call_started(INFO))
        assert texts(out) == [("Welcome to the bakery.", True), ("You said hello.", True)]
        for digit in "123#":
            await stage.process(Dtmf(digit))
        assert [r.json["text"] for r in fake.lex_requests()] == ["hello", "123"]
        assert texts(out)[-1] == ("You said 123.", True)
        await stage.process(Transcript("interim words", final=False))
        await stage.process(Transcript("   ", final=True))
        assert len(fake.lex_requests()) == 2  # interim and empty transcripts are not sent


async def test_throttling_is_retried_but_server_errors_are_not_repeated() -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.fail_next("ThrottlingException", 429, n=1)
        stage = lex(fake)
        out = await bound(stage)
        await stage.process(said("hello"))
        assert texts(out) == [("You said hello.", True)]
        assert [r.status for r in fake.requests] == [429, 200]
        fake.requests.clear()
        fake.fail_next("InternalServerException", 500, n=3)
        with pytest.raises(ProviderError) as caught:
            await stage.process(said("again"))
        assert caught.value.kind == "unavailable"
        assert len(fake.requests) == 1  # the bot may have moved on: never sent twice


@pytest.mark.parametrize(
    ("code", "status", "kind", "tries"),
    [
        ("AccessDeniedException", 403, "auth", 1),
        ("UnrecognizedClientException", 403, "auth", 1),
        ("ThrottlingException", 429, "quota", 3),
        ("ValidationException", 400, "invalid", 1),
        ("ResourceNotFoundException", 404, "invalid", 1),
        ("ConflictException", 409, "invalid", 1),
        ("InternalServerException", 500, "unavailable", 1),
        ("BadGatewayException", 502, "unavailable", 1),
        ("DependencyFailedException", 424, "unavailable", 1),
    ],
)
async def test_errors_become_one_provider_error_of_the_right_kind(
    code: str, status: int, kind: str, tries: int
) -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.fail_next(code, status, n=5, message=f"the {code} message")
        stage = lex(fake, max_attempts=3)
        out = await bound(stage)
        with pytest.raises(ProviderError) as caught:
            await stage.process(said("hello"))
        error = caught.value
        assert (error.kind, error.stage, error.provider) == (kind, "lex", "Amazon Lex")
        assert f"{code}: the {code} message" in str(error)
        assert len(fake.requests) == tries
        assert texts(out) == []


async def test_a_slow_bot_is_a_timeout_and_is_not_repeated() -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.hold_next()  # no answer while the test runs
        stage = lex(fake, read_timeout_s=0.2)
        await bound(stage)
        with pytest.raises(ProviderError) as caught:
            await stage.process(said("hello"))
        assert caught.value.kind == "timeout"
        assert len(fake.requests) == 1


async def test_barge_in_cancels_the_request() -> None:
    async with fakes.FakeAwsHttp() as fake:
        answer = fake.hold_next()  # the bot answers only when the test says so
        async with fakes.LiveRun([lex(fake)], INFO) as run:
            await run.push(said("tell me a long story"))
            await run.until(lambda: len(fake.lex_requests()) == 1)
            run.pipeline.interrupt()
            await run.until(lambda: run.pipeline.idle)
            assert fake.answered == 0  # idle while the answer is still held: not awaited
            answer.set()  # the late answer comes ...
            await run.until(lambda: fake.answered == 1)
            await run.push(said("hello"))
            await run.until(lambda: len(run.of(AgentText)) == 1)
            await run.end()
        # ... and is dropped: only the next turn's answer is said.
        assert [t.text for t in run.of(AgentText)] == ["You said hello."]
        assert run.errors == [] and run.provider_errors == []


async def test_call_started_before_start_still_gets_a_session() -> None:
    async with fakes.FakeAwsHttp() as fake:
        stage = lex(fake, start_text="hi")
        out = await bound(stage, CallInfo(call_id=""))
        await stage.process(
            CallStarted("from-frame", "s", "a", "audio/x-l16", 8000, {"X-PH-A": "1"})
        )
        (request,) = fake.lex_requests()
        assert "/sessions/from-frame/text" in request.path
        assert request.json["sessionState"] == {"sessionAttributes": {"X-PH-A": "1"}}
        assert texts(out) == [("You said hi.", True)]


def pipeline(http_url: str) -> Any:
    return load_pipeline_text(
        f"""
name: lex-fallback
session: {{fallback_text: "Sorry, our assistant is unavailable."}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: [first question, second question]}}
  - type: voicebridge.stages.dialogue.lex:LexDialogue
    params: {{bot_id: {BOT}, endpoint_url: "{http_url}", greeting: Hello.}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
    )


async def test_a_lex_failure_speaks_the_fallback_line_and_the_call_goes_on() -> None:
    async with fakes.FakeAwsHttp() as fake:
        fake.fail_next("AccessDeniedException", 403, n=1, message="not allowed to call the bot")
        async with CallHarness(pipeline(fake.url)) as call:
            await call.idle(1.0)
            await call.speak(speech_like(0.6, 8000))
            await call.until(lambda: len(call.timeline("agent_text")) >= 2, limit_s=10)
            await call.idle(3.0)
            await call.speak(speech_like(0.6, 8000))
            await call.until(lambda: len(call.timeline("agent_text")) >= 3, limit_s=10)
            (error,) = call.timeline("provider_error")
            assert (error["provider"], error["error_kind"]) == ("Amazon Lex", "auth")
            spoken = [e["text"] for e in call.timeline("agent_text")]
            assert spoken == [
                "Hello.",
                "Sorry, our assistant is unavailable.",
                "You said second question.",
            ]
            assert call.wire.closed is None


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        LexDialogue()  # bot_id is required
    with pytest.raises(ValueError):
        LexDialogue(bot_id="not a bot id")
    with pytest.raises(ValueError):
        LexDialogue(bot_id=BOT, end_on_close="later")
    with pytest.raises(ValueError):
        LexDialogue(bot_id=BOT, dtmf_submit="x")
    params = LexDialogue(bot_id=BOT, dtmf_submit=None).params
    assert (params.bot_alias_id, params.locale_id, params.end_on_close) == (
        "TSTALIASID",
        "en_US",
        "hangup",
    )


async def test_no_service_listening_is_unavailable() -> None:
    async with fakes.FakeAwsHttp() as fake:
        url = fake.url
    stage = LexDialogue(bot_id=BOT, endpoint_url=url, max_attempts=2, retry_backoff_s=0.01)
    await bound(stage)
    with pytest.raises(ProviderError) as caught:
        await stage.process(said("anyone there"))
    assert caught.value.kind == "unavailable"
