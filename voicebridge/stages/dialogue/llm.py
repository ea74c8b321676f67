"""The ``llm`` stage: the agent's replies from any OpenAI-compatible chat completions endpoint.

OpenAI itself by default; with ``base_url`` any server that speaks the same API (vLLM,
llama.cpp's server, Ollama, LiteLLM, Azure-style gateways). Replies are streamed: tokens are cut
into sentence-sized ``AgentText`` pieces as they arrive, so the speaker starts on the first
sentence while the model is still writing the rest.

What the model is shown is what the caller actually heard: the system prompt, then
``ctx.history`` (agent turns as played, an interrupted one ending in "[interrupted]"), then the
caller's new words. The session adds a final transcript to the history the moment the
transcriber emits it, so it is not added twice.

The model may call tools: user functions declared in YAML (see
:mod:`voicebridge.stages.dialogue.tools`), whose results go back to it for a follow-up
completion, and the built-ins ``hang_up`` and ``transfer_call``, which speak a closing line and
then end or hand off the call.

A barge-in cancels ``process``: the HTTP stream is closed at once (the ``async with`` around it),
so the provider stops generating. Failures become one ``ProviderError``. Requests go through
the shared :class:`~voicebridge.runtime.resilience.ProviderGuard` (``resilience:`` params): a failed
completion is retried only while none of its sentences has been emitted, and a stream that ends
without its finish (a cut connection) is an error, never a retry: what was said stays said.
Connection params, the shared SDK client and the error mapping are in
:mod:`voicebridge.stages.openai_client`, shared with the ``openai_tts`` speaker.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import openai
from pydantic import Field

from voicebridge.frames import (
    AgentText,
    AudioIn,
    CallStarted,
    Dtmf,
    Frame,
    Hangup,
    Transcript,
)
from voicebridge.observe.trace_context import trace_headers
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import Attempt
from voicebridge.runtime.stage import Stage, StageError, StageParams
from voicebridge.stages.dialogue.toolbox import Toolbox, ToolParams
from voicebridge.stages.dialogue.tools import HANG_UP, TRANSFER, ToolCall
from voicebridge.stages.openai_client import (
    ClientLease,
    OpenAIClientParams,
    api_key,
    openai_guard,
    provider_error,
    provider_name,
)
from voicebridge.text import SentenceChunker, fill_vars, split_sentences

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly, efficient agent answering a phone call. Your words are spoken aloud: "
    "reply in one to three short sentences of plain text, without lists, markdown, emoji or "
    "URLs. If the caller was cut off or you were interrupted, the message ends in "
    "[interrupted]; carry on naturally from what was actually said."
)
_KEYPAD = re.compile(r"^\[keypad: ([0-9*#A-D]*)\]$")


# --- the stage ----------------------------------------------------------------------------------


class LlmParams(ToolParams, OpenAIClientParams):
    """The model, its prompt and limits; the tools and keypad are
    :class:`~voicebridge.stages.dialogue.toolbox.ToolParams` (shared with the speech-to-speech
    stages)."""

    model: str = Field("gpt-4.1-mini", description="chat model name at the endpoint")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="the agent's instructions")
    temperature: float | None = Field(None, ge=0, le=2, description="None = the model's default")
    max_tokens: int | None = Field(
        400, ge=1, le=100_000, description="cap on one completion's length (None = no cap)"
    )
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = Field(
        "max_completion_tokens",
        description="how the cap is sent: OpenAI wants max_completion_tokens, some "
        "self-hosted servers only know max_tokens",
    )
    greeting: str = Field("", description="spoken as is when the call starts (not generated)")
    max_history: int = Field(40, ge=1, le=1000, description="most recent history entries sent")
    min_sentence_chars: int = Field(
        12, ge=1, le=400, description="shorter sentences are joined to the next one"
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="extra JSON fields for the endpoint (provider-specific)"
    )


@dataclass
class _Round:
    """What one streamed completion produced."""

    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None


class _Reply:
    """One agent turn being spoken: sentence pieces out as soon as they are complete."""

    def __init__(self, stage: Llm, turn: int) -> None:
        self.stage = stage
        self.turn = turn
        self.chunker = SentenceChunker(stage.params.min_sentence_chars)
        self.started = time.perf_counter()
        self.pieces = 0
        self.first_token_ms: int | None = None
        self.attempt: Attempt | None = None  # the request in flight, told what got out

    def ms(self) -> int:
        return round(1000 * (time.perf_counter() - self.started))

    def begin_attempt(self, attempt: Attempt) -> None:
        """A (re)try of a completion: nothing of a failed try that was not emitted survives."""
        self.attempt = attempt
        self.chunker = SentenceChunker(self.stage.params.min_sentence_chars)

    def token(self) -> None:
        if self.attempt is not None:
            self.attempt.progress()
        if self.first_token_ms is None:
            self.first_token_ms = self.ms()
            self.stage.log.info("llm_first_token", ms=self.first_token_ms, turn=self.turn)

    async def push(self, text: str) -> None:
        for sentence in self.chunker.push(text):
            await self._emit(sentence, last=False)

    async def flush(self) -> None:
        """Say what is still buffered (before a tool runs, the caller hears this much)."""
        for sentence in self.chunker.flush():
            await self._emit(sentence, last=False)

    async def finish(self, extra: str = "") -> None:
        """The reply's final pieces; the last carries ``last`` (empty if nothing is left)."""
        pieces = self.chunker.flush() + split_sentences(extra)
        if not pieces:
            await self._emit("", last=True)
            return
        for index, piece in enumerate(pieces):
            await self._emit(piece, last=index == len(pieces) - 1)

    async def _emit(self, text: str, *, last: bool) -> None:
        if text and self.pieces == 0:
            self.stage.log.info("llm_first_sentence", ms=self.ms(), turn=self.turn)
        if text:
            self.pieces += 1
            if self.attempt is not None:
                self.attempt.commit()  # the caller will hear it: this request is never repeated
        await self.stage.emit(AgentText(text, turn=self.turn, last=last))


class Llm(Stage):
    type_name = "llm"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Replies with an OpenAI-compatible chat model, streamed sentence by sentence."
    Params = LlmParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: LlmParams = self.params
        self.provider = provider_name(p.base_url)
        self._lease = ClientLease(p)
        self._client: openai.AsyncOpenAI | None = None
        self._toolbox = Toolbox(p, "llm", "llm_tool_called")
        self.guard = openai_guard(self.name, self.provider, p, p.model)

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """At service start: refuse to run without a key rather than fail every call."""
        assert isinstance(params, LlmParams)
        api_key(cls.type_name, params)

    async def start(self) -> None:
        self._client = await self._lease.acquire(self.name)

    async def stop(self) -> None:
        self._client = None
        await self._lease.release()

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        p: LlmParams = self.params
        if isinstance(frame, Transcript):
            text = frame.text.strip()
            if frame.final and text:
                await self._reply(self.begin_turn(), pending=text)
        elif isinstance(frame, CallStarted):
            if p.greeting.strip() and not frame.resumed:
                await self._say(fill_vars(p.greeting, self.ctx.info.vars))
        elif isinstance(frame, Dtmf) and p.dtmf:
            self._note_digit(frame.digit)
            turn = self.begin_turn()
            if p.dtmf_wait_s and frame.digit != "#":
                # Another digit within the wait interrupts this turn (the session's DTMF
                # barge-in cancels us), so the model sees the whole number at once.
                await self.ctx.clock.sleep(p.dtmf_wait_s)
            await self._reply(turn, pending=None)

    async def _say(self, text: str) -> None:
        pieces = split_sentences(text)
        if not pieces:
            return
        turn = self.begin_turn()
        for index, piece in enumerate(pieces):
            await self.emit(AgentText(piece, turn=turn, last=index == len(pieces) - 1))

    def _note_digit(self, digit: str) -> None:
        """Keypad digits join the history as caller input; a run of digits is one entry."""
        history = self.ctx.history
        last = history[-1] if history else None
        if last is not None and last.role == "caller":
            match = _KEYPAD.fullmatch(last.text)
            if match is not None:
                last.text = f"[keypad: {match.group(1)}{digit}]"
                return
        self.ctx.add_caller_text(f"[keypad: {digit}]")

    # --- the prompt -------------------------------------------------------------------------

    def messages(self, pending: str | None) -> list[dict[str, Any]]:
        """System prompt, the history as heard, then ``pending`` unless already the last entry."""
        p: LlmParams = self.params
        messages: list[dict[str, Any]] = []
        if p.system_prompt.strip():
            prompt = fill_vars(p.system_prompt, self.ctx.info.vars)
            messages.append({"role": "system", "content": prompt})
        history = self.ctx.history
        for entry in history[-p.max_history :]:
            if not entry.text.strip():
                continue  # an agent turn cut off before the caller heard a word
            role = "user" if entry.role == "caller" else "assistant"
            messages.append({"role": role, "content": entry.as_prompt_text()})
        if pending is not None:
            last = history[-1] if history else None
            if last is None or last.role != "caller" or last.text.strip() != pending:
                messages.append({"role": "user", "content": pending})
        return messages

    # --- one reply --------------------------------------------------------------------------

    async def _reply(self, turn: int, pending: str | None) -> None:
        p: LlmParams = self.params
        reply = _Reply(self, turn)
        messages = self.messages(pending)
        rounds = 0
        calls_made = 0
        while True:
            offer_tools = bool(self._toolbox.schemas)
            tool_choice = None if rounds < p.max_tool_rounds else "none"
            result = await self._complete(messages, reply, offer_tools, tool_choice)
            rounds += 1
            if not result.calls:
                await reply.finish()
                break
            calls_made += len(result.calls)
            action = next((c for c in result.calls if c.name in (HANG_UP, TRANSFER)), None)
            if action is not None and await self._act(action, result, reply):
                break
            if rounds > p.max_tool_rounds:  # a server that ignored tool_choice "none"
                await reply.finish()
                break
            await reply.flush()  # the caller hears "Let me check that." while the tool runs
            messages.append(
                {
                    "role": "assistant",
                    "content": result.text or None,
                    "tool_calls": [call.message() for call in result.calls],
                }
            )
            toolbox = self._toolbox
            answers = await asyncio.gather(
                *(toolbox.answer(call, self.ctx, self.log) for call in result.calls)
            )
            for call, answer in zip(result.calls, answers, strict=True):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
        self.log.info(
            "llm_reply_done",
            ms=reply.ms(),
            first_token_ms=reply.first_token_ms,
            turn=turn,
            pieces=reply.pieces,
            rounds=rounds,
            tool_calls=calls_made,
        )

    async def _act(self, call: ToolCall, result: _Round, reply: _Reply) -> bool:
        """Hang up or transfer; False (with the tool answered) when the call cannot be done."""
        said = bool(result.text.strip()) or reply.pieces > 0
        action = self._toolbox.action(call, said)
        if action is None:
            return False
        await reply.finish(action.closing)
        if isinstance(action.frame, Hangup):
            self.log.info("llm_hang_up", turn=reply.turn)
        else:
            self.log.info("llm_transfer", turn=reply.turn, target=action.target[:64])
        await self.emit(action.frame)
        return True

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        reply: _Reply,
        offer_tools: bool,
        tool_choice: str | None,
    ) -> _Round:
        """Stream one completion; text is spoken as it comes, tool calls are collected."""

        async def attempt(try_: Attempt) -> _Round:
            reply.begin_attempt(try_)
            return await self._stream(messages, reply, offer_tools, tool_choice)

        try:
            return await self.guard.call(attempt, clock=self.ctx.clock, log=self.log)
        finally:
            reply.attempt = None

    async def _stream(
        self,
        messages: list[dict[str, Any]],
        reply: _Reply,
        offer_tools: bool,
        tool_choice: str | None,
    ) -> _Round:
        p: LlmParams = self.params
        client = self._client
        if client is None:
            raise StageError(f"{self.name}: not started")
        request: dict[str, Any] = {"model": p.model, "messages": messages, "stream": True}
        if p.temperature is not None:
            request["temperature"] = p.temperature
        if p.max_tokens is not None:
            request[p.max_tokens_field] = p.max_tokens
        if offer_tools:
            request["tools"] = self._toolbox.schemas
            if tool_choice is not None:
                request["tool_choice"] = tool_choice
        if p.extra_body:
            request["extra_body"] = dict(p.extra_body)
        headers = trace_headers()  # the call's W3C trace context, when tracing is on
        if headers:
            request["extra_headers"] = headers
        result = _Round()
        parts: list[str] = []
        partial: dict[int, dict[str, str]] = {}
        try:
            stream = await client.chat.completions.create(**request)
            async with stream:  # closes the HTTP stream on barge-in (CancelledError) too
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        delta = choice.delta
                        if delta.content:
                            reply.token()
                            parts.append(delta.content)
                            await reply.push(delta.content)
                        for tool_call in delta.tool_calls or ():
                            reply.token()
                            slot = partial.setdefault(
                                tool_call.index, {"id": "", "name": "", "arguments": ""}
                            )
                            if tool_call.id:
                                slot["id"] = tool_call.id
                            function = tool_call.function
                            if function is not None:
                                if function.name:
                                    slot["name"] += function.name
                                if function.arguments:
                                    slot["arguments"] += function.arguments
                        if choice.finish_reason:
                            result.finish_reason = choice.finish_reason
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(self.name, self.provider, exc) from exc
        if result.finish_reason is None:
            # The stream ended without its finish (no finish_reason, no [DONE]): cut short.
            raise ProviderError(
                self.name,
                self.provider,
                "unavailable",
                f"the reply stream ended before the reply did ({len(parts)} tokens)",
            )
        result.text = "".join(parts)
        result.calls = [
            ToolCall(
                id=slot["id"] or f"call_{index}", name=slot["name"], arguments=slot["arguments"]
            )
            for index, slot in sorted(partial.items())
            if slot["name"]
        ]
        if result.finish_reason == "length":
            self.log.warning("llm_reply_truncated", max_tokens=p.max_tokens)
        return result
