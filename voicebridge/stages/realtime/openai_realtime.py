"""The ``openai_realtime`` stage: OpenAI's Realtime API as transcriber, dialogue and speaker.

The caller's audio streams to the model as it arrives (``input_audio_buffer.append``); the model
decides when the caller's turn ends (server or semantic VAD), or voicebridge's ``vad`` stage does
(``turn_detection: voicebridge``: its end of speech commits the audio and asks for a reply). The
model's audio comes back as pieces of ``AgentAudio`` (``reply_pieces``) that the call core sends
with a checkpoint each; the caller's words (input transcription) go into the history before the
reply that answers them, the model's own transcript rides on its pieces.

When the caller talks over the agent and voicebridge's barge-in policy cuts it off (the session
sends ``clearAudio``), this stage's ``interrupt`` sends ``response.cancel`` and, for the item
being spoken, ``conversation.item.truncate`` with ``audio_end_ms`` = the milliseconds of that
item Plivo acknowledged as played plus the elapsed part of the piece that was playing, which is
what the call's ledger recorded (``ctx.heard_audio``). The model's conversation, the history and
the call report end at the same word.

Lines the call itself must say (a greeting, the fallback after a failure, reprompts, goodbyes)
reach this stage as ``AgentText``; the model reads them out (``response.create`` with the line as
its instructions), so one voice speaks the whole call. Tools are the ``llm`` stage's: user
functions, ``hang_up`` and ``transfer_call``.

Resilience: the session opens (key, model and settings confirmed) when the call starts, through
the provider guard (retries, backoff and the circuit breaker, on the call's clock). A failed
reply or a dropped socket is one ``ProviderError`` (the call core answers with the fallback
line); a dropped session is re-established and given the heard history as context. The
session's reader, reconnects, the call's own lines and the keypad work as in ``gemini_live``
(:mod:`~voicebridge.stages.realtime.s2s_stage`).
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import openai

from voicebridge.frames import (
    AgentAudio,
    AgentText,
    AudioIn,
    Frame,
    Hangup,
    SpeechEnded,
    SpeechStarted,
    Transcript,
    Transfer,
)
from voicebridge.runtime.flow import StageFlow
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import Attempt
from voicebridge.runtime.stage import StageError, StageParams
from voicebridge.stages.dialogue.toolbox import CallAction, Toolbox
from voicebridge.stages.dialogue.tools import ToolCall
from voicebridge.stages.openai_client import ClientLease, api_key, openai_guard, provider_name
from voicebridge.stages.realtime.model_audio import ModelAudio, WireFormat
from voicebridge.stages.realtime.openai_link import RealtimeLink, event_error
from voicebridge.stages.realtime.openai_session import (
    OpenAIRealtimeParams,
    append_json,
    history_item,
    respond,
    session_config,
    tool_output,
    turn_of,
    user_text,
    wire_format,
)
from voicebridge.stages.realtime.replay import replay_lines
from voicebridge.stages.realtime.reply_pieces import Piece, ReplyPieces
from voicebridge.stages.realtime.s2s_stage import Line, SpeechToSpeechStage
from voicebridge.stages.realtime.verify import verify_session

_RECENT_REPLIES = 4  # replies whose audio may still be playing (a barge-in truncates them)
# Error codes that say a client event was moot, not that anything failed.
_HARMLESS = frozenset({"response_cancel_not_active", "input_audio_buffer_commit_empty"})
_BUSY = "conversation_already_has_active_response"
_KEPT_ITEMS = 16  # caller items remembered while their transcript is due


@dataclass
class _Reply:
    """One model response: the agent turn it speaks for, its pieces, its function calls."""

    response_id: str
    turn: int
    pieces: ReplyPieces
    calls: list[ToolCall] = field(default_factory=list)
    done: bool = False
    cut: bool = False  # a barge-in cancelled and truncated it


def _turn(requested: Line | int) -> int:
    return requested.turn if isinstance(requested, Line) else requested


class OpenAIRealtime(SpeechToSpeechStage[RealtimeLink]):
    type_name = "openai_realtime"
    role = "speech_to_speech"
    description = (
        "OpenAI Realtime speech-to-speech: hears the caller, answers with audio; barge-in "
        "truncates the model at what the caller heard."
    )
    Params = OpenAIRealtimeParams

    @classmethod
    def frame_flow(cls, params: StageParams) -> StageFlow | None:
        assert isinstance(params, OpenAIRealtimeParams)
        if params.turn_detection == "voicebridge":  # the vad stage ends turns and reports speech
            return StageFlow(
                consumes=(AudioIn, SpeechEnded),
                produces=(Transcript, AgentAudio, Hangup, Transfer),
                drops=(AudioIn,),
            )
        return super().frame_flow(params)

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: OpenAIRealtimeParams = self.params
        self.provider = provider_name(p.base_url)
        self.guard = openai_guard(self.name, self.provider, p, p.model)
        self._lease = ClientLease(p)
        self._toolbox = Toolbox(p, self.type_name)
        self._instructions = p.instruction_text()
        self._client: openai.AsyncOpenAI | None = None
        self._fmt: WireFormat | None = None
        self._audio: ModelAudio | None = None
        self._origin_ms: float | None = None  # stream ms where this session's input audio starts
        self._replies: dict[str, _Reply] = {}
        self._recent: deque[_Reply] = deque(maxlen=_RECENT_REPLIES)
        self._active: _Reply | None = None  # the response in progress
        self._requested: Line | int | None = None  # a response.create not yet answered
        self._after: dict[int, CallAction] = {}  # hang up / transfer once a turn is said
        self._answer_wanted: int | None = None  # voicebridge turns: a reply to ask for, as turn
        self._unanswered: list[str] = []  # committed caller items no reply has begun for
        self._answered: dict[str, int] = {}  # caller item -> the agent turn answering it
        self._spoke_until: dict[str, float] = {}  # caller item -> stream ms its speech ended
        self._onset_ms = 0.0
        self._tool_rounds = 0
        self._watch: asyncio.Task[Any] | None = None  # a reply is due: its deadline

    # --- set-up and tear-down ---------------------------------------------------------------
    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """At service start: a missing key, and (``verify_at_start``) a key, model or setting
        OpenAI refuses, fail start-up instead of every call."""
        assert isinstance(params, OpenAIRealtimeParams)
        api_key(cls.type_name, params)
        if params.verify_at_start:
            await verify_session(cls.type_name, params)

    async def start(self) -> None:
        p: OpenAIRealtimeParams = self.params
        self._client = await self._lease.acquire(self.name)
        info = self.ctx.info
        self._fmt = wire_format(p, info.encoding, info.sample_rate)
        self._audio = ModelAudio(info.sample_rate, self._fmt, self._fmt)
        try:
            await self._connect(replay=False)
        except ProviderError as exc:
            await self._lease.release()
            raise StageError(
                f"{self.name}: the {self.provider} session did not open: "
                f"{exc.kind}: {exc.provider_message}"
            ) from exc
        self._start_reader()

    async def stop(self) -> None:
        await super().stop()
        self._client = None
        await self._lease.release()

    async def _connect(self, *, replay: bool) -> None:
        """Open a session through the guard; with ``replay``, give it the heard history."""
        p: OpenAIRealtimeParams = self.params
        client, fmt = self._client, self._fmt
        assert client is not None and fmt is not None
        session = session_config(p, fmt, self._toolbox.functions(), self._instructions)

        async def attempt(_: Attempt) -> RealtimeLink:
            link = self._trying(RealtimeLink(self.name, self.provider, self.net_clock))
            await link.open(client, p.model, session, p.connect_timeout_s)
            return link

        link = await self.guard.call(attempt, clock=self.net_clock, log=self.log)
        self.sessions += 1
        self._origin_ms = None
        self.handled = link.received  # the events the opening read count as handled
        if replay:
            lines = replay_lines(self.ctx.history, p.replay_history)
            for line in lines:
                link.send(history_item(line))
            self.log.info("s2s_history_replayed", entries=len(lines), session=self.sessions)
        self._link = link

    # --- frames -----------------------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            self._caller_audio(frame)
        elif isinstance(frame, AgentText):
            self._call_says(frame)
        else:
            if isinstance(frame, SpeechEnded) and self.params.turn_detection == "voicebridge":
                self._commit()
            elif isinstance(frame, Hangup | Transfer) and self._saying is not None:
                # The call's own goodbye is still being read out: act once it has been said.
                self._after[self._saying] = CallAction(frame, "")
                return
            else:
                self._call_event(frame)
            await self.emit(frame)
        self._raise_pending()

    def _caller_audio(self, frame: AudioIn) -> None:
        link, audio = self._link, self._audio
        if link is None or audio is None:
            return  # no session: the caller's words while it is restored are lost
        if self._origin_ms is None:
            self._origin_ms = frame.timestamp_ms
        link.send_audio(append_json(audio.encode_in_b64(frame.pcm)))

    def _stream_ms(self, audio_ms: Any) -> float:
        """A position in this session's input audio as the call's stream ms."""
        offset = float(audio_ms) if isinstance(audio_ms, int | float) else 0.0
        return (self._origin_ms or 0.0) + offset

    def _commit(self) -> None:
        """voicebridge's VAD ended the caller's turn: commit the audio, ask for the reply."""
        link = self._link
        if link is None:
            return
        link.send({"type": "input_audio_buffer.commit"})
        turn = self.ctx.begin_turn()
        if self._active is not None or self._requested is not None:
            self._answer_wanted = turn
        else:
            self._request(turn)

    async def _keypad_entered(self, text: str, link: RealtimeLink) -> None:
        turn = self.ctx.begin_turn()
        await self.emit(Transcript(text, final=True, reply_turn=turn))
        link.send(user_text(text))
        self._tool_rounds = 0
        if self._active is not None or self._requested is not None:
            self._answer_wanted = turn
        else:
            self._request(turn)

    # --- asking the model -------------------------------------------------------------------
    def _request(self, turn: int, *, tools: bool = True) -> None:
        """Ask for the model's own reply, as agent turn ``turn``."""
        link = self._link
        if link is None:
            return
        self._requested = turn
        link.send(respond(turn, tools=tools))
        self._expect_reply()

    def _next_line(self) -> None:
        link = self._link
        if link is None or self._active is not None or self._requested is not None:
            return
        line = self._pop_line()
        if line is not None:
            self._requested = line
            link.send(respond(line.turn, say=line.text))
            self._expect_reply()
            return
        wanted, self._answer_wanted = self._answer_wanted, None
        if wanted is not None and not self.ctx.is_stale(wanted):
            self._request(wanted)

    def _expect_reply(self) -> None:
        """A reply is due: if none begins within ``timeout_s`` the model has stalled."""
        if self._watch is None:
            self._watch = self.spawn(self._watchdog(), name=f"{self.name}-deadline")

    def _reply_began(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    async def _watchdog(self) -> None:
        timeout = self.params.timeout_s
        await self.ctx.clock.sleep(timeout)
        self._watch = None
        self._requested = None
        error = ProviderError(
            self.name, self.provider, "timeout", f"no reply began within {timeout:g} s"
        )
        self._count_failure(error)
        self._fail(error)

    async def _close_turn(self, turn: int) -> None:
        """A turn that will say nothing still ends, so the call does not wait for it."""
        await self._turn_over(turn, AgentAudio(ModelAudio.silence(), turn=turn, last=True))

    # --- barge-in ----------------------------------------------------------------------------
    def interrupt(self, stale_through: int) -> None:
        """The caller cut the agent off: cancel the reply being made and truncate every reply
        still playing at what the ledger says was heard of it."""
        link = self._link
        for reply in list(self._recent):
            if reply.turn > stale_through or reply.cut:
                continue
            reply.cut = True
            if not reply.done and link is not None:
                link.send({"type": "response.cancel", "response_id": reply.response_id})
            heard = self.ctx.heard_audio.ms(reply.turn)
            cuts = reply.pieces.truncation(heard)
            for cut in cuts:
                if link is not None:
                    link.send(
                        {
                            "type": "conversation.item.truncate",
                            "item_id": cut.item_id,
                            "content_index": cut.content_index,
                            "audio_end_ms": cut.audio_end_ms,
                        }
                    )
            self.log.info(
                "s2s_truncated",
                turn=reply.turn,
                heard_ms=round(heard, 1),
                items=[(c.item_id[:64], c.audio_end_ms) for c in cuts],
            )
            if reply is self._active and self._audio is not None:
                self._audio.reset_out()
        self._drop_lines(stale_through)
        for turn in [t for t in self._after if t <= stale_through]:
            del self._after[turn]
        if self._answer_wanted is not None and self._answer_wanted <= stale_through:
            self._answer_wanted = None

    # --- the model's events -----------------------------------------------------------------
    def _message_kind(self, message: Any) -> str:
        return str(message.get("type"))[:64]

    async def _on_message(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("response.output_audio.delta", "response.audio.delta"):
            await self._audio_delta(event)
        elif kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            reply = self._reply_of(event)
            if reply is not None:
                reply.pieces.text(str(event.get("item_id", "")), str(event.get("delta", "")))
        elif kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
            reply = self._reply_of(event)
            if reply is not None:
                item_id = str(event.get("item_id", ""))
                reply.pieces.text_done(item_id, str(event.get("transcript") or ""))
        elif kind in ("response.output_audio.done", "response.audio.done"):
            await self._audio_done(event)
        elif kind == "response.created":
            self._response_created(event.get("response") or {})
        elif kind == "response.output_item.done":
            self._item_done(event)
        elif kind == "response.done":
            await self._response_done(event.get("response") or {})
        elif kind == "input_audio_buffer.speech_started":
            await self._speech_started(event)
        elif kind == "input_audio_buffer.speech_stopped":
            await self._speech_stopped(event)
        elif kind == "input_audio_buffer.committed":
            if self.params.input_transcription:  # its words will come: keep its place
                self._unanswered.append(str(event.get("item_id", ""))[:128])
                del self._unanswered[:-_KEPT_ITEMS]
            self._tool_rounds = 0
            if self.params.turn_detection != "voicebridge" and self._active is None:
                self._expect_reply()  # the server answers a committed turn on its own
        elif kind == "conversation.item.input_audio_transcription.completed":
            await self._caller_words(event)
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.log.warning("s2s_transcription_failed", error=str(event.get("error"))[:200])
        elif kind == "conversation.item.truncated":
            self.log.debug("s2s_item_truncated", audio_end_ms=event.get("audio_end_ms"))
        elif kind == "error":
            self._error_event(event.get("error"))

    def _reply_of(self, event: dict[str, Any]) -> _Reply | None:
        reply = self._replies.get(str(event.get("response_id", "")))
        return None if reply is None or reply.cut else reply

    async def _speech_started(self, event: dict[str, Any]) -> None:
        if self.params.turn_detection == "voicebridge":
            return
        self._onset_ms = self._stream_ms(event.get("audio_start_ms"))
        await self.emit(SpeechStarted(self._onset_ms))

    async def _speech_stopped(self, event: dict[str, Any]) -> None:
        if self.params.turn_detection == "voicebridge":
            return
        at_ms = self._stream_ms(event.get("audio_end_ms"))
        if self.params.input_transcription:
            self._spoke_until[str(event.get("item_id", ""))[:128]] = at_ms
            for stale in list(self._spoke_until)[:-_KEPT_ITEMS]:
                del self._spoke_until[stale]
        await self.emit(SpeechEnded(at_ms, self._onset_ms))

    async def _caller_words(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id", ""))
        text = " ".join(str(event.get("transcript") or "").split())
        at_ms = self._spoke_until.pop(item_id, 0.0)
        reply_turn = self._answered.pop(item_id, 0)
        if item_id in self._unanswered:
            self._unanswered.remove(item_id)
        if text:
            await self.emit(Transcript(text, final=True, at_ms=at_ms, reply_turn=reply_turn))

    def _response_created(self, response: dict[str, Any]) -> None:
        self._reply_began()
        response_id = str(response.get("id", ""))
        asked = turn_of(response)
        requested = self._requested
        if asked is not None and requested is not None and _turn(requested) == asked:
            self._requested = None  # the response we asked for (not one the server began)
        turn = asked if asked is not None else self.ctx.begin_turn()
        pieces = ReplyPieces(self.ctx.info.sample_rate, self.params.piece_ms)
        reply = _Reply(response_id, turn, pieces)
        self._replies[response_id] = reply
        self._recent.append(reply)
        self._active = reply
        if not (isinstance(requested, Line) and requested.turn == asked):
            # The model's own answer: to what the caller said since its last one.
            for item_id in self._unanswered:
                self._answered[item_id] = turn
            self._unanswered.clear()
            for stale in list(self._answered)[:-_KEPT_ITEMS]:
                del self._answered[stale]
        if self.ctx.is_stale(turn) and self._link is not None:  # cut off before it began
            reply.cut = True
            self._link.send({"type": "response.cancel", "response_id": response_id})

    async def _audio_delta(self, event: dict[str, Any]) -> None:
        reply, audio = self._reply_of(event), self._audio
        if reply is None or audio is None:
            return
        try:
            data = base64.b64decode(str(event.get("delta", "")), validate=False)
        except ValueError:
            return
        item_id = str(event.get("item_id", ""))
        index = event.get("content_index")
        pieces = reply.pieces.audio(
            item_id,
            index if isinstance(index, int) else 0,
            audio.model_ms(data),
            audio.decode_out(data),
        )
        for piece in pieces:
            await self._emit_piece(reply, piece)

    async def _audio_done(self, event: dict[str, Any]) -> None:
        reply, audio = self._reply_of(event), self._audio
        if reply is None or audio is None:
            return
        tail = audio.flush_out()
        if len(tail):
            item_id = str(event.get("item_id", ""))
            for piece in reply.pieces.audio(item_id, 0, 0.0, tail):
                await self._emit_piece(reply, piece)

    async def _emit_piece(self, reply: _Reply, piece: Piece) -> None:
        frame = AgentAudio(piece.pcm, turn=reply.turn, text=piece.text, last=piece.last)
        if piece.last and not reply.cut:
            await self._turn_over(reply.turn, frame)
        else:
            await self.emit(frame)

    async def _turn_over(self, turn: int, last: AgentAudio) -> None:
        """A turn's last piece, then the hang-up or transfer that was waiting for it."""
        await self.emit(last)
        if turn == self._saying:
            self._saying = None
        action = self._after.pop(turn, None)
        if action is not None and not self.ctx.is_stale(turn):
            await self.emit(action.frame)

    def _item_done(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        reply = self._reply_of(event)
        if reply is None or not isinstance(item, dict) or item.get("type") != "function_call":
            return
        reply.calls.append(
            ToolCall(
                id=str(item.get("call_id") or ""),
                name=str(item.get("name") or "")[:64],
                arguments=str(item.get("arguments") or ""),
            )
        )

    async def _response_done(self, response: dict[str, Any]) -> None:
        reply = self._replies.pop(str(response.get("id", "")), None)
        if reply is self._active:
            self._active = None
        status = response.get("status")
        if reply is not None:
            reply.done = True
            if not reply.cut:
                await self._emit_piece(reply, reply.pieces.finish())
        if status == "failed":
            details = response.get("status_details") or {}
            error = event_error(self.name, self.provider, details.get("error"))
            self._count_failure(error)
            self._fail(error)
        elif status == "completed":
            self.guard.breaker.success()
            if reply is not None and reply.calls and not reply.cut:
                self.spawn(self._run_calls(reply), name=f"{self.name}-tools")
                return
        self._next_line()

    async def _run_calls(self, reply: _Reply) -> None:
        """The model called tools: act on a hang-up or transfer, or answer and let it go on."""
        said = reply.pieces.model_ms > 0
        for call in reply.calls:
            action = self._toolbox.action(call, said)
            if action is None:
                continue
            self.log.info("s2s_call_action", tool=call.name, turn=reply.turn)
            if action.closing:
                turn = self.ctx.begin_turn()
                self._after[turn] = action
                self._say(Line(turn, action.closing))
            else:
                await self.emit(action.frame)
            return
        link = self._link
        answers = await asyncio.gather(
            *(self._toolbox.answer(call, self.ctx, self.log) for call in reply.calls)
        )
        if link is None or link is not self._link:
            return
        for call, answer in zip(reply.calls, answers, strict=True):
            link.send(tool_output(call.id, answer))
        self._tool_rounds += 1
        turn = self.ctx.begin_turn()
        if self._active is not None or self._requested is not None:
            self._answer_wanted = turn
        else:
            self._request(turn, tools=self._tool_rounds < self.params.max_tool_rounds)

    def _error_event(self, error: Any) -> None:
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "")
        if code in _HARMLESS:
            return
        self.log.warning(
            "s2s_error_event",
            code=code[:64],
            kind=str(error.get("type") or "")[:64],
            message=str(error.get("message") or "")[:200],
        )
        if code == _BUSY:  # a response.create raced one the server began: ask again later
            requested, self._requested = self._requested, None
            if isinstance(requested, Line):
                self._lines.appendleft(requested)
            elif isinstance(requested, int):
                self._answer_wanted = requested
            return
        if str(error.get("type")) in ("server_error", "overloaded_error"):
            problem = event_error(self.name, self.provider, error)
            self._count_failure(problem)
            self._fail(problem)

    # --- failures and reconnecting ----------------------------------------------------------
    def _count_failure(self, error: ProviderError) -> None:
        self.guard.breaker.failure(error, self.guard.registry.clock.now())

    async def _lost(self, link: RealtimeLink, error: ProviderError) -> None:
        """The socket dropped: end the reply in progress, report it, then restore the session."""
        self._link = None
        self._reply_began()  # no reply will come on this socket
        await link.close()
        self.log.warning("s2s_session_lost", error=error.provider_message[:200])
        active, self._active = self._active, None
        if active is not None and not active.cut:
            active.done = True
            await self._emit_piece(active, active.pieces.finish())
        had_work = active is not None or self._requested is not None or bool(self._unanswered)
        self._requested = None
        self._unanswered.clear()
        self._replies.clear()
        if had_work:  # the caller was owed a reply: say the fallback once the session is back
            self._fail(error)
