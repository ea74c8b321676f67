"""The ``llm`` stage against a fake OpenAI chat completions server on 127.0.0.1.

The official SDK talks real HTTP and SSE to ``openai_fakes.FakeOpenAI`` through ``base_url``:
what it sent is asserted from the fake's records, what it streamed must become sentence-sized
``AgentText`` pieces (the first before the stream ends), tool calls become follow-up requests,
hang-ups and transfers, a barge-in closes the HTTP stream, and every failure class becomes one
``ProviderError`` of the right kind.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from voicebridge.call.context import CallInfo, HistoryEntry
from voicebridge.clock import VirtualClock
from voicebridge.frames import AgentText, CallStarted, Dtmf, Hangup, Transcript, Transfer
from voicebridge.runtime.stage import StageError
from voicebridge.stages.dialogue.llm import Llm, LlmParams
from voicebridge.stages.dialogue.tools import ToolContext, ToolSpec, run_tool
from voicebridge.stages.openai_client import provider_error

sys.path.insert(0, str(Path(__file__).parent))
import openai_fakes
from openai_fakes import ChatReply, FakeOpenAI, Rig

KEY = "sk-fake"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    openai_fakes.TOOL_CALLS.clear()


@pytest.fixture
async def fake() -> Any:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


def llm(fake: FakeOpenAI, **params: Any) -> Llm:
    params.setdefault("max_retries", 0)
    params.setdefault("resilience", {"retries": 0})  # one failure, one error
    params.setdefault("dtmf_wait_s", 0)
    return Llm(base_url=fake.base_url, **params)


def said(rig: Rig) -> list[tuple[str, bool]]:
    return [(t.text, t.last) for t in rig.texts()]


def last_done(rig: Rig) -> bool:
    return any(t.last for t in rig.texts())


# --- the request ------------------------------------------------------------------------------


async def test_request_carries_model_settings_history_and_tools(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Sure. We open at seven."))
    stage = llm(
        fake,
        model="gpt-test",
        system_prompt="You are Bea, the bakery's receptionist.",
        temperature=0.3,
        max_tokens=120,
        transfer_targets={"sales": "+15550101", "support": "sip:help@example.com"},
        tools=[
            ToolSpec(
                name="lookup_order",
                description="Find an order.",
                parameters={
                    "type": "object",
                    "properties": {"order_number": {"type": "string"}},
                    "required": ["order_number"],
                },
                function="openai_fakes:lookup_order",
            )
        ],
    )
    async with Rig([stage]) as rig:
        rig.ctx.history += [
            HistoryEntry("agent", "Hello, Harbor Street Bakery.", turn=1),
            HistoryEntry("caller", "hi when do you"),
            HistoryEntry("agent", "We are open from", turn=2, interrupted=True),
            HistoryEntry("agent", "", turn=3, interrupted=True),  # cut before a word: left out
            # The session adds the final transcript before the dialogue sees it.
            HistoryEntry("caller", "when do you open tomorrow"),
        ]
        await rig.push(Transcript("when do you open tomorrow"))
        await rig.wait_for(lambda: last_done(rig))
    (request,) = fake.chat_requests
    body = request.body
    assert request.auth == f"Bearer {KEY}"
    assert request.path == "/v1/chat/completions"
    assert body["model"] == "gpt-test" and body["stream"] is True
    assert body["temperature"] == 0.3 and body["max_completion_tokens"] == 120
    assert "max_tokens" not in body
    assert body["messages"] == [
        {"role": "system", "content": "You are Bea, the bakery's receptionist."},
        {"role": "assistant", "content": "Hello, Harbor Street Bakery."},
        {"role": "user", "content": "hi when do you"},
        {"role": "assistant", "content": "We are open from [interrupted]"},
        {"role": "user", "content": "when do you open tomorrow"},  # once, not twice
    ]
    tools = {tool["function"]["name"]: tool for tool in body["tools"]}
    assert set(tools) == {"lookup_order", "hang_up", "transfer_call"}
    assert tools["lookup_order"] == {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_number": {"type": "string"}},
                "required": ["order_number"],
            },
        },
    }
    transfer = tools["transfer_call"]["function"]["parameters"]
    assert transfer["properties"]["to"]["enum"] == ["sales", "support"]
    assert transfer["required"] == ["to"]
    assert said(rig) == [("Sure. We open at seven.", True)]


async def test_a_transcript_not_yet_in_the_history_is_sent_and_tools_can_be_off(
    fake: FakeOpenAI,
) -> None:
    stage = llm(fake, hang_up=False, max_tokens=None, system_prompt="", extra_body={"top_k": 5})
    async with Rig([stage]) as rig:
        await rig.push(Transcript("hello", final=False))  # interim: no request
        await rig.push(Transcript("   "))  # nothing said: no request
        await rig.push(Transcript("hello there"))
        await rig.wait_for(lambda: last_done(rig))
    (request,) = fake.chat_requests
    assert request.body["messages"] == [{"role": "user", "content": "hello there"}]
    assert "tools" not in request.body and "max_completion_tokens" not in request.body
    assert request.body["top_k"] == 5
    # The transcript itself is passed on, before the reply.
    kinds = [type(f).__name__ for f in rig.frames()]
    assert kinds == ["Transcript", "Transcript", "Transcript", "AgentText"]


async def test_max_tokens_field_for_servers_that_want_max_tokens(fake: FakeOpenAI) -> None:
    async with Rig([llm(fake, max_tokens=50, max_tokens_field="max_tokens")]) as rig:
        await rig.push(Transcript("hi"))
        await rig.wait_for(lambda: last_done(rig))
    body = fake.chat_requests[0].body
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body


# --- streaming --------------------------------------------------------------------------------


async def test_first_sentence_is_spoken_before_the_stream_ends(fake: FakeOpenAI) -> None:
    text = "Sure, I can help with that. Our shop opens at seven tomorrow. See you then!"
    fake.reply(ChatReply(text=text, hold_after=9))  # holds inside the second sentence
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("can you help"))
        # The fake sends the role and 9 tokens, then holds the stream open: the first sentence
        # must come out while it is held. (How far the fake has got when the text first appears
        # is up to the scheduler, as the sentence ends at token 6, so wait for the hold first.)
        await fake.wait_for(lambda: fake.holding == 1)
        await rig.wait_for(lambda: rig.texts())
        (first,) = rig.texts()
        assert (first.text, first.last, first.turn) == ("Sure, I can help with that.", False, 1)
        request = fake.chat_requests[0]
        assert not request.completed and request.chunks_sent == 10  # role + 9 tokens
        fake.release.set()
        await rig.wait_for(lambda: last_done(rig))
    assert said(rig) == [
        ("Sure, I can help with that.", False),
        ("Our shop opens at seven tomorrow.", False),
        ("See you then!", True),
    ]
    assert {t.turn for t in rig.texts()} == {1}
    assert fake.chat_requests[0].completed


async def test_greeting_is_spoken_without_a_request(fake: FakeOpenAI) -> None:
    stage = llm(fake, greeting="Hello, this is the bakery. How can I help?")
    async with Rig([stage]) as rig:
        await rig.push(
            CallStarted("call-1", "stream-1", "MA1", "audio/x-l16", 8000, extra_headers={})
        )
        await rig.wait_for(lambda: last_done(rig))
    assert said(rig) == [("Hello, this is the bakery.", False), ("How can I help?", True)]
    assert fake.chat_requests == []


async def test_keypad_digits_become_one_caller_entry(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="One."), ChatReply(text="Two."))
    async with Rig([llm(fake)]) as rig:
        await rig.push(Dtmf("4"))
        await rig.wait_for(lambda: len(rig.texts()) == 1)
        await rig.push(Dtmf("2"))
        await rig.wait_for(lambda: len(rig.texts()) == 2)
    first, second = (r.body["messages"][-1] for r in fake.chat_requests)
    assert first == {"role": "user", "content": "[keypad: 4]"}
    # No agent words were heard in between (no session here): the digits run on.
    assert second == {"role": "user", "content": "[keypad: 42]"}


async def test_keypad_can_be_ignored(fake: FakeOpenAI) -> None:
    async with Rig([llm(fake, dtmf=False)]) as rig:
        await rig.push(Dtmf("4"))
        await rig.idle()
    assert fake.chat_requests == [] and rig.texts() == []


# --- tools ------------------------------------------------------------------------------------


async def test_hang_up_speaks_the_goodbye_then_hangs_up(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(tool_calls=[("hang_up", {"goodbye": "Thanks for calling. Bye!"})]))
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("that's all, bye"))
        await rig.wait_for(lambda: rig.of(Hangup))
    assert said(rig) == [("Thanks for calling.", False), ("Bye!", True)]
    frames = rig.frames()
    assert isinstance(frames[-1], Hangup) and frames[-1].reason == "llm"
    assert len(fake.chat_requests) == 1  # no follow-up completion


async def test_hang_up_after_text_says_the_text_only(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Have a lovely day.", tool_calls=[("hang_up", {"goodbye": "Bye"})]))
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("bye"))
        await rig.wait_for(lambda: rig.of(Hangup))
    assert said(rig) == [("Have a lovely day.", True)]


async def test_hang_up_with_nothing_to_say_uses_the_configured_line(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(tool_calls=[("hang_up", "not json")]))
    async with Rig([llm(fake, hang_up_text="Bye now.")]) as rig:
        await rig.push(Transcript("bye"))
        await rig.wait_for(lambda: rig.of(Hangup))
    assert said(rig) == [("Bye now.", True)]


async def test_transfer_to_a_configured_target(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(tool_calls=[("transfer_call", {"to": "sales"})]))
    stage = llm(fake, transfer_targets={"sales": "+15550101"}, transfer_text="One moment.")
    async with Rig([stage]) as rig:
        await rig.push(Transcript("I want to buy a wedding cake"))
        await rig.wait_for(lambda: rig.of(Transfer))
    assert said(rig) == [("One moment.", True)]
    (transfer,) = rig.of(Transfer)
    assert transfer.to == "+15550101" and transfer.reason == "llm:sales"


async def test_transfer_to_an_unknown_target_is_refused_to_the_model(fake: FakeOpenAI) -> None:
    fake.reply(
        ChatReply(tool_calls=[("transfer_call", {"to": "+15559999"})]),
        ChatReply(text="Sorry, I can only transfer you to sales."),
    )
    async with Rig([llm(fake, transfer_targets={"sales": "+15550101"})]) as rig:
        await rig.push(Transcript("put me through to 555 9999"))
        await rig.wait_for(lambda: last_done(rig))
    assert rig.of(Transfer) == []
    assert said(rig) == [("Sorry, I can only transfer you to sales.", True)]
    tool_message = fake.chat_requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == "error: unknown transfer target; the targets are: sales"


USER_TOOLS = [
    {
        "name": "lookup_order",
        "description": "Find an order by number.",
        "parameters": {"type": "object", "properties": {"order_number": {"type": "string"}}},
        "function": "openai_fakes:lookup_order",
    },
    {
        "name": "opening_hours",
        "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
        "function": "openai_fakes:opening_hours",
    },
]


async def test_user_tools_are_called_and_answered_in_a_follow_up(fake: FakeOpenAI) -> None:
    fake.reply(
        ChatReply(
            text="Let me check that for you.",
            tool_calls=[
                ("lookup_order", {"order_number": "123"}),
                ("opening_hours", {"day": "Sunday"}),
            ],
        ),
        ChatReply(text="Order 123 is out for delivery. On Sunday we open at eight."),
    )
    async with Rig([llm(fake, tools=USER_TOOLS)]) as rig:
        await rig.push(Transcript("where is order 123"))
        await rig.wait_for(lambda: last_done(rig))
    assert said(rig) == [
        ("Let me check that for you.", False),  # heard while the tools ran
        ("Order 123 is out for delivery.", False),
        ("On Sunday we open at eight.", True),
    ]
    assert rig.time_of(rig.texts()[0]) <= fake.chat_requests[1].time
    assert openai_fakes.TOOL_CALLS == [
        ("lookup_order", {"order_number": "123"}, "call-1"),
        ("opening_hours", {"day": "Sunday"}, "call-1"),
    ]
    follow_up = fake.chat_requests[1].body["messages"]
    assert follow_up[-3] == {
        "role": "assistant",
        "content": "Let me check that for you.",
        "tool_calls": [
            {
                "id": "call_0_lookup_order",
                "type": "function",
                "function": {"name": "lookup_order", "arguments": '{"order_number": "123"}'},
            },
            {
                "id": "call_1_opening_hours",
                "type": "function",
                "function": {"name": "opening_hours", "arguments": '{"day": "Sunday"}'},
            },
        ],
    }
    assert follow_up[-2] == {
        "role": "tool",
        "tool_call_id": "call_0_lookup_order",
        "content": json.dumps({"order": "123", "status": "out for delivery"}),
    }
    assert follow_up[-1] == {
        "role": "tool",
        "tool_call_id": "call_1_opening_hours",
        "content": "open 7 to 6 on Sunday",
    }


async def test_failing_slow_and_unknown_tools_are_reported_to_the_model(fake: FakeOpenAI) -> None:
    tools = [
        {"name": "broken", "function": "openai_fakes:broken_tool"},
        {"name": "slow", "function": "openai_fakes:slow_tool", "timeout_s": 0.2},
    ]
    fake.reply(
        ChatReply(tool_calls=[("broken", {}), ("slow", {}), ("nope", {}), ("broken", "[1]")]),
        ChatReply(text="Sorry, I can't look that up right now."),
    )
    async with Rig([llm(fake, tools=tools)]) as rig:
        await rig.push(Transcript("check my order"))
        await rig.wait_for(lambda: last_done(rig))
    answers = [m["content"] for m in fake.chat_requests[1].body["messages"] if m["role"] == "tool"]
    assert answers == [
        "error: RuntimeError: database is down",
        "error: the tool did not answer within 0.2 s",
        "error: there is no tool named 'nope'",
        "error: the arguments are not a JSON object (tool arguments must be a JSON object)",
    ]
    assert said(rig) == [("Sorry, I can't look that up right now.", True)]
    assert rig.errors == [] and rig.provider_errors == []


async def test_a_tool_s_time_limit_runs_on_the_call_s_clock() -> None:
    clock = VirtualClock()

    async def hangs(arguments: dict[str, Any], ctx: ToolContext) -> str:
        await asyncio.Event().wait()
        return "never"

    context = ToolContext(info=CallInfo(call_id="call-1"), history=[])
    answer = asyncio.ensure_future(run_tool(hangs, {}, context, 5.0, clock=clock))
    await clock.advance(4.9)
    assert not answer.done()
    await clock.advance(0.1)
    assert await answer == "error: the tool did not answer within 5 s"


async def test_tool_rounds_are_bounded(fake: FakeOpenAI) -> None:
    loop = ChatReply(tool_calls=[("opening_hours", {})])
    fake.reply(loop, loop, ChatReply(text="We open at seven."))
    async with Rig([llm(fake, tools=USER_TOOLS, max_tool_rounds=2)]) as rig:
        await rig.push(Transcript("hours?"))
        await rig.wait_for(lambda: last_done(rig))
    choices = [r.body.get("tool_choice") for r in fake.chat_requests]
    assert choices == [None, None, "none"]  # the last round must answer in words
    assert said(rig) == [("We open at seven.", True)]


def test_tool_declarations_are_checked_at_load() -> None:
    with pytest.raises(ValueError, match="cannot import module"):
        LlmParams(tools=[{"name": "x", "function": "no_such_module_xyz:fn"}])
    with pytest.raises(ValueError, match="has no attribute"):
        LlmParams(tools=[{"name": "x", "function": "openai_fakes:nope"}])
    with pytest.raises(ValueError, match="built-in tool"):
        LlmParams(tools=[{"name": "hang_up", "function": "openai_fakes:lookup_order"}])
    with pytest.raises(ValueError, match="unique"):
        LlmParams(tools=[USER_TOOLS[0], USER_TOOLS[0]])
    with pytest.raises(ValueError, match="type 'object'"):
        LlmParams(
            tools=[
                {
                    "name": "x",
                    "parameters": {"type": "string"},
                    "function": USER_TOOLS[0]["function"],
                }
            ]
        )
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        LlmParams(api_key_env="sk-123-abc")
    assert LlmParams(base_url="").base_url is None  # ${OPENAI_BASE_URL:-} when unset


# --- barge-in ---------------------------------------------------------------------------------


async def test_barge_in_closes_the_stream_and_the_next_turn_works(fake: FakeOpenAI) -> None:
    fake.reply(
        ChatReply(text="Let me tell you about our cakes. We have many kinds.", hold_after=8),
        ChatReply(text="Okay, go ahead."),
    )
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("tell me about cakes"))
        await rig.wait_for(lambda: rig.texts())
        assert rig.pipeline.interrupt() == 1
        await fake.wait_for(lambda: fake.chat_requests[0].disconnected)
        assert not fake.chat_requests[0].completed
        await rig.push(Transcript("wait"))
        await rig.wait_for(lambda: last_done(rig))
    assert said(rig) == [("Let me tell you about our cakes.", False), ("Okay, go ahead.", True)]
    assert [t.turn for t in rig.texts()] == [1, 2]
    assert rig.errors == [] and rig.provider_errors == []


async def test_barge_in_while_waiting_for_the_first_token(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Too late.", first_token_delay_s=5))
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("hello"))
        await fake.wait_for(lambda: fake.chat_requests)
        rig.pipeline.interrupt()
        await fake.wait_for(lambda: fake.chat_requests[0].disconnected)
        await rig.idle()
    assert rig.texts() == [] and rig.provider_errors == []


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "status", "message"),
    [
        (ChatReply(status=401, error_message="Incorrect API key"), "auth", 401, "Incorrect API"),
        (ChatReply(status=403, error_message="Country not supported"), "auth", 403, "Country"),
        (ChatReply(status=429, error_message="Rate limit reached"), "quota", 429, "Rate limit"),
        (ChatReply(status=400, error_message="Unknown model"), "invalid", 400, "Unknown model"),
        (ChatReply(status=404, error_message="No such model"), "invalid", 404, "No such model"),
        (ChatReply(status=500, error_message="Server exploded"), "unavailable", 500, "exploded"),
        (ChatReply(status=503, error_message="Overloaded"), "unavailable", 503, "Overloaded"),
        (ChatReply(text="Too slow.", first_token_delay_s=2), "timeout", None, "timed out"),
        (ChatReply(text="Cut before any word.", cut_after=0), "unavailable", None, "Connection"),
        (ChatReply(text="Hi.", stream_error="The server had an error"), "unavailable", None, "had"),
    ],
    ids=["401", "403", "429", "400", "404", "500", "503", "slow", "cut", "stream-error"],
)
async def test_each_failure_is_one_provider_error(
    fake: FakeOpenAI, reply: ChatReply, kind: str, status: int | None, message: str
) -> None:
    fake.reply(reply)
    async with Rig([llm(fake, timeout_s=0.4)]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: rig.provider_errors)
    (error,) = rig.provider_errors
    assert (error.kind, error.status, error.stage, error.provider) == (
        kind,
        status,
        "llm",
        error.provider,
    )
    assert error.provider.startswith("openai-compatible (127.0.0.1:")
    assert message in error.provider_message
    assert str(error).startswith(f"llm: {error.provider} {kind} error")
    assert rig.errors == []  # not fatal


async def test_wrong_key_is_an_auth_error(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAKERY_LLM_KEY", "sk-wrong")
    async with Rig([llm(fake, api_key_env="BAKERY_LLM_KEY")]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: rig.provider_errors)
    assert rig.provider_errors[0].kind == "auth"
    assert fake.chat_requests[0].auth == "Bearer sk-wrong"


async def test_nothing_listening_is_unavailable(fake: FakeOpenAI) -> None:
    base_url = fake.base_url
    await fake.stop()
    async with Rig([Llm(base_url=base_url, max_retries=0)]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: rig.provider_errors)
    assert rig.provider_errors[0].kind == "unavailable"


async def test_the_sdk_retries_before_the_stream_starts(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(status=503, retry_after_ms=10), ChatReply(status=429, retry_after_ms=10))
    fake.reply(ChatReply(text="Third time lucky."))
    async with Rig([llm(fake, max_retries=2)]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: last_done(rig))
    assert said(rig) == [("Third time lucky.", True)]
    assert [r.status for r in fake.chat_requests] == [503, 429, 200]


async def test_never_retried_once_words_were_spoken(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="First sentence here. And then the line drops.", cut_after=6))
    async with Rig([llm(fake, max_retries=3)]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: rig.provider_errors)
    assert said(rig) == [("First sentence here.", False)]
    assert rig.provider_errors[0].kind == "unavailable"
    assert len(fake.chat_requests) == 1


async def test_no_key_for_openai_fails_at_preload_and_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(StageError, match="OPENAI_API_KEY"):
        await Llm.preload(LlmParams())
    with pytest.raises(StageError, match="OPENAI_API_KEY"):
        async with Rig([Llm()]):
            pass


async def test_a_self_hosted_server_needs_no_key(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    fake.api_key = None
    await Llm.preload(LlmParams(base_url=fake.base_url))
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: last_done(rig))
    assert fake.chat_requests[0].auth == "Bearer not-needed"


def test_unexpected_exceptions_map_to_other() -> None:
    error = provider_error("llm", "openai", ValueError("odd"))
    assert error.kind == "other" and "ValueError: odd" in error.provider_message


async def test_pieces_are_agent_text_frames(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Ok."))
    async with Rig([llm(fake)]) as rig:
        await rig.push(Transcript("hi"))
        await rig.wait_for(lambda: last_done(rig))
    assert rig.texts() == [AgentText("Ok.", turn=1, last=True)]


async def test_calls_share_one_client_closed_with_the_last_call(fake: FakeOpenAI) -> None:
    from voicebridge.stages import openai_client

    first, second, other = llm(fake), llm(fake), llm(fake, timeout_s=3)
    async with Rig([first]), Rig([second]), Rig([other]):
        assert first._client is second._client  # same endpoint, key and settings
        assert other._client is not first._client
        client = first._client
        assert client is not None and not client.is_closed()
        assert len(openai_client._clients) == 2
    assert client.is_closed() and openai_client._clients == {}
