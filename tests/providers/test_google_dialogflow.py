"""``dialogflow`` (CX and ES) against a fake Dialogflow gRPC server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from voicebridge.call.context import CallInfo
from voicebridge.frames import AgentText, Dtmf, Frame, Hangup, Transcript, Transfer
from voicebridge.runtime.providers import ProviderError
from voicebridge.stages.dialogue.dialogflow import (
    CX_WELCOME_INTENT,
    Dialogflow,
    DialogflowParams,
    session_id,
)

sys.path.insert(0, str(Path(__file__).parent))
from google_fakes import CX, ES, Driven, FakeGoogle, until

INFO = CallInfo(
    call_id="3f9c1e2a-1111-2222-3333-444455556666",
    stream_id="s-1",
    extra_headers={"CustomerId": "C42", "X-PH-Tier": "gold"},
)
AGENT = "projects/proj-1/locations/global/agents/agent-1"
SESSION = f"{AGENT}/sessions/{INFO.call_id}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


def cx_stage(fake: FakeGoogle, **params: Any) -> Dialogflow:
    params.setdefault("project", "proj-1")
    params.setdefault("agent", "agent-1")
    return Dialogflow(endpoint=fake.endpoint, insecure=True, **params)


def es_stage(fake: FakeGoogle, **params: Any) -> Dialogflow:
    params.setdefault("project", "proj-1")
    return Dialogflow(version="es", endpoint=fake.endpoint, insecure=True, **params)


async def converse(stage: Dialogflow, frames: list[Frame], settle_s: float = 0.0) -> Driven:
    async with Driven([stage], INFO) as run:
        await run.push(*frames)
        if settle_s:
            await run.advance(settle_s)
            await until(lambda: not stage.has_background_work)
        await run.drain()
    return run


def texts(run: Driven) -> list[tuple[str, int, bool]]:
    return [(f.text, f.turn, f.last) for f in run.of(AgentText)]


def said(text: str) -> Transcript:
    return Transcript(text, final=True, confidence=0.9)


# --- Dialogflow CX -----------------------------------------------------------------------------


async def test_cx_welcome_session_and_call_parameters(fake: FakeGoogle) -> None:
    stage = cx_stage(fake, language="en-GB", parameters={"channel": "phone"}, time_zone="UTC")
    run = await converse(stage, [])
    assert not run.errors and not run.provider_errors

    (request,) = fake.requests[CX]
    assert request.session == SESSION
    assert request.query_input.language_code == "en-GB"
    assert request.query_input.intent.intent == f"{AGENT}/intents/{CX_WELCOME_INTENT}"
    assert dict(request.query_params.parameters) == {
        "CustomerId": "C42",
        "X-PH-Tier": "gold",
        "channel": "phone",
    }
    assert request.query_params.time_zone == "UTC"
    # One reply is one turn, its messages split into sentences.
    assert texts(run) == [("Welcome to the test agent.", 1, False), ("How can I help?", 1, True)]


async def test_cx_one_detect_intent_per_final_transcript(fake: FakeGoogle) -> None:
    frames: list[Frame] = [
        Transcript("what are", final=False),
        said("What are your hours?"),
        Transcript("   ", final=True),
    ]
    run = await converse(cx_stage(fake, welcome="none"), frames)
    (request,) = fake.requests[CX]
    assert request.query_input.text.text == "What are your hours?"
    assert request.query_input.language_code == "en-US"
    assert dict(request.query_params.parameters)["CustomerId"] == "C42"
    assert texts(run) == [
        ("You said What are your hours?.", 1, False),
        ("Anything else?", 1, True),
    ]
    # Every frame passed through, and the reply follows the transcript it answers.
    kinds = [type(f).__name__ for f in run.frames]
    assert kinds == [
        "CallStarted", "Transcript", "Transcript", "AgentText", "AgentText", "Transcript",
    ]  # fmt: skip


async def test_cx_parameters_are_sent_once_per_session(fake: FakeGoogle) -> None:
    await converse(cx_stage(fake), [said("hello"), said("again")])
    first, second, third = fake.requests[CX]
    assert dict(first.query_params.parameters)["X-PH-Tier"] == "gold"
    assert not second.query_params.parameters and not third.query_params.parameters
    assert {r.session for r in fake.requests[CX]} == {SESSION}


async def test_cx_end_interaction_hangs_up_after_speaking(fake: FakeGoogle) -> None:
    run = await converse(cx_stage(fake, welcome="none"), [said("OK bye")])
    tail = [type(f).__name__ for f in run.frames[-2:]]
    assert tail == ["AgentText", "Hangup"]
    assert texts(run) == [("Goodbye.", 1, True)]
    assert run.of(Hangup)[0].reason == "dialogflow"


async def test_cx_live_agent_handoff_transfers_to_handoff_to(fake: FakeGoogle) -> None:
    run = await converse(
        cx_stage(fake, welcome="none", handoff_to="+15550100"), [said("a human please")]
    )
    (transfer,) = run.of(Transfer)
    assert (transfer.to, transfer.reason) == ("+15550100", "live_agent_handoff")
    assert isinstance(run.frames[-1], Transfer)


async def test_cx_handoff_without_a_number_is_logged_not_acted(fake: FakeGoogle) -> None:
    with capture_logs() as logs:
        run = await converse(cx_stage(fake, welcome="none"), [said("human")])
    assert run.of(Transfer) == [] and texts(run) == [("Connecting you to an agent.", 1, True)]
    assert any(e["event"] == "dialogflow_handoff_ignored" for e in logs)


async def test_cx_telephony_transfer_uses_the_agents_number(fake: FakeGoogle) -> None:
    run = await converse(cx_stage(fake, welcome="none", handoff_to="+1999"), [said("transfer")])
    assert [t.to for t in run.of(Transfer)] == ["+15550199"]


async def test_cx_dtmf_with_finish_digit(fake: FakeGoogle) -> None:
    frames: list[Frame] = [Dtmf("1"), Dtmf("2"), Dtmf("3"), Dtmf("#")]
    run = await converse(cx_stage(fake, welcome="none"), frames)
    (request,) = fake.requests[CX]
    assert request.query_input.dtmf.digits == "123"
    assert request.query_input.dtmf.finish_digit == "#"
    assert texts(run) == [("You entered 1 2 3.", 1, True)]


async def test_cx_dtmf_entry_ends_after_a_pause(fake: FakeGoogle) -> None:
    stage = cx_stage(fake, welcome="none", dtmf_timeout_ms=1500)
    run = await converse(stage, [Dtmf("4"), Dtmf("2")], settle_s=2.0)
    (request,) = fake.requests[CX]
    assert request.query_input.dtmf.digits == "42" and not request.query_input.dtmf.finish_digit
    assert texts(run) == [("You entered 4 2.", 1, True)]


async def test_cx_digits_are_sent_before_a_transcript(fake: FakeGoogle) -> None:
    await converse(cx_stage(fake, welcome="none"), [Dtmf("7"), said("that's my code")])
    first, second = fake.requests[CX]
    assert first.query_input.dtmf.digits == "7"
    assert second.query_input.text.text == "that's my code"


async def test_cx_environment_region_and_event_welcome(fake: FakeGoogle) -> None:
    stage = cx_stage(
        fake,
        agent="projects/p2/locations/europe-west2/agents/a2",
        environment="prod",
        welcome="event:call_start",
    )
    await converse(stage, [])
    (request,) = fake.requests[CX]
    assert request.session == (
        f"projects/p2/locations/europe-west2/agents/a2/environments/prod/sessions/{INFO.call_id}"
    )
    assert request.query_input.event.event == "call_start"


async def test_cx_text_welcome_and_an_empty_reply_still_ends_the_turn(fake: FakeGoogle) -> None:
    run = await converse(cx_stage(fake, welcome="text:hello"), [said("stay silent")])
    assert fake.requests[CX][0].query_input.text.text == "hello"
    assert texts(run)[-1] == ("", 2, True)  # nothing to say, but the turn is closed


# --- Dialogflow ES -----------------------------------------------------------------------------


async def test_es_welcome_event_session_context_and_payload(fake: FakeGoogle) -> None:
    run = await converse(es_stage(fake, language="de-DE"), [said("hallo")])
    welcome, hello = fake.requests[ES]
    session = f"projects/proj-1/agent/sessions/{INFO.call_id}"
    assert welcome.session == session and hello.session == session
    assert welcome.query_input.event.name == "WELCOME"
    assert welcome.query_input.event.language_code == "de-DE"
    (context,) = welcome.query_params.contexts
    assert context.name == f"{session}/contexts/voicebridge-call"
    assert dict(context.parameters) == {"CustomerId": "C42", "X-PH-Tier": "gold"}
    assert context.lifespan_count > 0
    assert dict(hello.query_params.payload)["CustomerId"] == "C42"  # every turn, for webhooks
    assert not hello.query_params.contexts
    assert (
        hello.query_input.text.text == "hallo" and hello.query_input.text.language_code == "de-DE"
    )
    # Only the messages for all platforms are spoken.
    assert [t for t, _, _ in texts(run)] == [
        "Welcome to the test agent.",
        "How can I help?",
        "You said hallo.",
    ]
    assert [turn for _, turn, _ in texts(run)] == [1, 1, 2]


@pytest.mark.parametrize("words", ["bye now", "I'm done"])
async def test_es_end_of_conversation_hangs_up(fake: FakeGoogle, words: str) -> None:
    run = await converse(es_stage(fake, welcome="none"), [said(words)])
    assert isinstance(run.frames[-1], Hangup)


async def test_es_live_agent_handoff_and_regional_session(fake: FakeGoogle) -> None:
    stage = es_stage(
        fake, welcome="none", handoff_to="sip:desk@example.com", location="europe-west1"
    )
    run = await converse(stage, [said("human")])
    assert fake.requests[ES][0].session == (
        f"projects/proj-1/locations/europe-west1/agent/sessions/{INFO.call_id}"
    )
    assert [t.to for t in run.of(Transfer)] == ["sip:desk@example.com"]


async def test_es_dtmf_goes_as_text(fake: FakeGoogle) -> None:
    await converse(es_stage(fake, welcome="none"), [Dtmf("9"), Dtmf("9"), Dtmf("#")])
    (request,) = fake.requests[ES]
    assert request.query_input.text.text == "99"


# --- errors, retries, cancellation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "auth"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid"),
        (grpc.StatusCode.NOT_FOUND, "invalid"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "timeout"),
    ],
)
async def test_errors_are_reported_and_not_retried(
    fake: FakeGoogle, code: grpc.StatusCode, kind: str
) -> None:
    fake.fail(CX, code, "agent says no")
    run = await converse(cx_stage(fake, welcome="none"), [said("hi"), said("hi again")])
    (error,) = run.provider_errors
    assert isinstance(error, ProviderError)
    assert (error.kind, error.status, error.stage, error.provider) == (
        kind,
        code.name,
        "dialogflow",
        "dialogflow-cx",
    )
    assert "agent says no" in str(error)
    # Not repeated (DetectIntent moves the session on); the next utterance works.
    assert len(fake.requests[CX]) == 2
    assert texts(run)[-1][0] == "Anything else?"


async def test_unavailable_is_retried_a_bounded_number_of_times(fake: FakeGoogle) -> None:
    fake.fail(CX, grpc.StatusCode.UNAVAILABLE, times=1)
    run = await converse(cx_stage(fake, welcome="none"), [said("hi")])
    assert not run.provider_errors and len(fake.requests[CX]) == 2
    fake.requests[CX].clear()
    fake.fail(CX, grpc.StatusCode.UNAVAILABLE, "down", times=5)
    run = await converse(cx_stage(fake, welcome="none", retries=2), [said("hi")])
    assert [e.kind for e in run.provider_errors] == ["unavailable"]
    assert len(fake.requests[CX]) == 3


async def test_es_errors_name_es(fake: FakeGoogle) -> None:
    fake.fail(ES, grpc.StatusCode.PERMISSION_DENIED, "no access to agent")
    run = await converse(es_stage(fake), [])
    (error,) = run.provider_errors
    assert (error.kind, error.provider) == ("auth", "dialogflow-es")


async def test_barge_in_cancels_detect_intent_in_flight(fake: FakeGoogle) -> None:
    fake.delay_s[CX] = 5.0
    stage = cx_stage(fake, welcome="none")
    async with Driven([stage], INFO) as run:
        await run.push(said("tell me a long story"))
        await until(lambda: fake.started[CX] == 1)
        run.pipeline.interrupt()
        await until(lambda: fake.cancelled[CX] == 1)
        fake.delay_s[CX] = 0.0
        await run.push(said("never mind"))
        await until(lambda: len(run.of(AgentText)) == 2)
    assert [t for t, _, _ in texts(run)] == ["You said never mind.", "Anything else?"]
    assert not run.errors and not run.provider_errors


async def test_barge_in_cancels_a_keypad_reply(fake: FakeGoogle) -> None:
    fake.delay_s[CX] = 5.0
    stage = cx_stage(fake, welcome="none", dtmf_timeout_ms=500)
    async with Driven([stage], INFO) as run:
        await run.push(Dtmf("1"))
        await run.advance(0.6)
        await until(lambda: fake.started[CX] == 1)
        run.pipeline.interrupt()
        await until(lambda: fake.cancelled[CX] == 1)
        await until(lambda: not stage.has_background_work)  # the reply's task is gone
    assert run.of(AgentText) == [] and not run.provider_errors


async def test_logs_time_to_first_text(fake: FakeGoogle) -> None:
    with capture_logs() as logs:
        await converse(cx_stage(fake), [])
    (entry,) = [e for e in logs if e["event"] == "dialogue_first_text"]
    assert entry["ms"] >= 0 and entry["why"] == "welcome" and entry["pieces"] == 2


# --- parameters and names ----------------------------------------------------------------------


def test_session_ids_are_dialogflow_safe() -> None:
    assert session_id("CA1234-abcd") == "CA1234-abcd"
    long_id = "x" * 80
    assert session_id(long_id) == session_id(long_id) and len(session_id(long_id)) == 32
    assert len(session_id("has spaces/and:colons")) == 32


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="agent"):
        DialogflowParams()
    DialogflowParams(version="es")
    with pytest.raises(ValueError, match="welcome"):
        DialogflowParams(agent="a", welcome="shout:hi")
    with pytest.raises(ValueError):
        DialogflowParams(agent="a", dtmf_finish_digit="##")
    assert DialogflowParams(agent="a", welcome="").welcome == "none"
