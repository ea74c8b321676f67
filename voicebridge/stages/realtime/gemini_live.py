"""The ``gemini_live`` stage: Google's Gemini Live API as transcriber, dialogue and speaker.

Caller audio goes to the model as 16 kHz PCM, its answer comes back as 24 kHz PCM, both through
the project's resampler. Gemini detects the caller's turns itself (``turn_detection: server``),
or the ``vad`` stage before this one does (``voicebridge``: its speech edges become
``activityStart`` / ``activityEnd``). Either way the ``vad`` stage's speech onsets drive
voicebridge's barge-in, and Gemini's own interruption (``serverContent.interrupted``: it stops
generating when it hears the caller) ends the reply on this side too.

What the Live API cannot do is forget audio it sent: after an interruption the session keeps
everything generated and sent to the client, which is more than the caller heard (generation
runs ahead of playout). There is no ``truncate``. So when voicebridge's barge-in cuts the agent
off, this stage does the next best thing: it tells the model, as context (``client_content``
that asks for no reply), exactly which words the caller heard, the history's heard text, which
comes from the same ledger milliseconds ``openai_realtime`` truncates at.

Lines the call itself must say (greeting, fallback, reprompts, goodbyes) are asked of the model
as "say this, word for word". Tools are the ``llm`` stage's. A dropped session is re-established
(provider guard: retries, backoff, breaker, on the call's clock) with the heard history as its
initial context (``history_config.initial_history_in_client_content``), or, when Gemini last
said the session could be resumed (between replies), resumed by its session resumption handle,
which keeps the model's own context. The session's reader, reconnects, the call's own lines and
the keypad work as in ``openai_realtime`` (:mod:`~voicebridge.stages.realtime.s2s_stage`).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from voicebridge.clock import MonotonicClock
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
from voicebridge.runtime.resilience import Attempt, ProviderGuard
from voicebridge.runtime.stage import StageError, StageParams
from voicebridge.stages.dialogue.toolbox import CallAction, Toolbox
from voicebridge.stages.dialogue.tools import ToolCall
from voicebridge.stages.realtime.gemini_link import LiveLink, build_client
from voicebridge.stages.realtime.gemini_session import (
    PROVIDER,
    SAY,
    GeminiLiveParams,
    api_key,
    heard_note,
    history_turns,
    live_config,
)
from voicebridge.stages.realtime.model_audio import L16_16K, L16_24K, ModelAudio
from voicebridge.stages.realtime.replay import ReplayLine, replay_lines
from voicebridge.stages.realtime.reply_pieces import Piece, ReplyPieces
from voicebridge.stages.realtime.s2s_stage import SpeechToSpeechStage

L16_16K_MIME = "audio/pcm;rate=16000"


class _Reply:
    """One model turn being spoken, as agent turn ``turn``."""

    def __init__(self, turn: int, pieces: ReplyPieces) -> None:
        self.turn = turn
        self.pieces = pieces
        self.item = f"turn-{turn}"
        self.cut = False  # voicebridge's barge-in cut it off
        self.caller_words: list[str] = []  # the caller's words this turn answers


class GeminiLive(SpeechToSpeechStage[LiveLink]):
    type_name = "gemini_live"
    role = "speech_to_speech"
    description = (
        "Gemini Live speech-to-speech: hears the caller, answers with audio; a barge-in tells "
        "the model exactly what the caller heard."
    )
    Params = GeminiLiveParams

    @classmethod
    def frame_flow(cls, params: StageParams) -> StageFlow | None:
        """The ``vad`` stage before it reports the caller's speech (barge-in); it passes its
        edges on and makes the rest."""
        return StageFlow(
            consumes=(AudioIn, SpeechStarted, SpeechEnded),
            produces=(Transcript, AgentAudio, Hangup, Transfer),
            drops=(AudioIn,),
        )

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: GeminiLiveParams = self.params
        endpoint = f"{p.base_url or 'generativelanguage.googleapis.com'} {p.model}"
        self.guard = ProviderGuard(self.name, PROVIDER, endpoint, p.resilience)
        self._toolbox = Toolbox(p, self.type_name)
        self._instructions = p.instruction_text()
        self._client: Any = None
        self._audio: ModelAudio | None = None
        self._reply: _Reply | None = None
        self._recent: deque[_Reply] = deque(maxlen=4)
        self._caller: list[str] = []  # caller words not yet given to a reply
        self._asked: int | None = None  # the turn a line was asked for, until its reply begins
        self._after: CallAction | None = None  # a hang-up or transfer waiting to be said
        self._after_turn: int | None = None  # ...after this turn (None: the next that speaks)
        # Caller words of a reply the dropped session was giving: on their way into the
        # history, maybe not there yet when the new session is given it.
        self._in_flight: list[ReplayLine] = []
        self._watch: asyncio.Task[Any] | None = None  # a reply is due: its deadline
        self._moving = False  # goAway: a new session is due once the model is free
        self._handle: str | None = None  # the newest session resumption handle
        self._resumable = False  # Gemini's last word: the session may be resumed now

    # --- set-up and tear-down ---------------------------------------------------------------
    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """At service start: no key, or (``verify_at_start``) a key or model Gemini refuses,
        fail start-up instead of every call."""
        assert isinstance(params, GeminiLiveParams)
        stage = cls.type_name
        try:
            key = api_key(stage, params)
            if not params.verify_at_start:
                return
            client = await build_client(key, params.base_url)
            link = LiveLink(stage, MonotonicClock(), L16_16K_MIME)
            config = live_config(params, Toolbox(params, stage).functions(), "Say OK.")
            try:
                await link.open(client, params.model, config, params.connect_timeout_s)
            finally:
                await link.close()
        except ProviderError as error:
            hint = f"; check {params.api_key_env}" if error.kind == "auth" else ""
            raise StageError(
                f"{stage}: Gemini refused the session for model {params.model!r} "
                f"({error.kind}): {error.provider_message}{hint}"
            ) from error

    async def start(self) -> None:
        p: GeminiLiveParams = self.params
        self._audio = ModelAudio(self.ctx.info.sample_rate, L16_16K, L16_24K)
        try:
            self._client = await build_client(api_key(self.name, p), p.base_url)
            await self._connect(replay=False)
        except ProviderError as exc:
            raise StageError(
                f"{self.name}: the Gemini session did not open: {exc.kind}: {exc.provider_message}"
            ) from exc
        self._start_reader()

    async def _connect(self, *, replay: bool) -> None:
        self._use(await self._open(replay=replay))

    async def _open(self, *, replay: bool) -> LiveLink:
        """A new session through the guard. With ``replay`` it carries the conversation on: by
        Gemini's resumption handle when Gemini last said the session could be resumed (between
        replies), else, or if the handle is refused, with the heard history as its context."""
        handle = self._handle if replay and self._resumable else None
        if handle is not None:
            try:
                link = await self._session(handle=handle)
            except ProviderError as error:
                if error.kind != "invalid":
                    raise  # an outage: the next try resumes again
                self.log.warning("s2s_resume_refused", error=error.provider_message[:200])
                self._handle, self._resumable = None, False
            else:
                self.log.info("s2s_session_resumed", session=self.sessions + 1)
                return link
        p: GeminiLiveParams = self.params
        lines = replay_lines(self.ctx.history, p.replay_history) if replay else []
        recorded = {(line.role, line.text) for line in lines}
        lines += [line for line in self._in_flight if (line.role, line.text) not in recorded]
        link = await self._session(lines=lines)
        if lines:
            self.log.info("s2s_history_replayed", entries=len(lines), session=self.sessions + 1)
        return link

    async def _session(
        self, *, handle: str | None = None, lines: list[ReplayLine] | None = None
    ) -> LiveLink:
        """Open one session: a resumed one (``handle``), or a new one given ``lines``."""
        p: GeminiLiveParams = self.params
        functions = self._toolbox.functions()
        config = live_config(p, functions, self._instructions, history=bool(lines), handle=handle)
        turns = history_turns(lines) if lines else None

        async def attempt(_: Attempt) -> LiveLink:
            link = self._trying(LiveLink(self.name, self.net_clock, L16_16K_MIME))
            await link.open(self._client, p.model, config, p.connect_timeout_s, turns)
            return link

        return await self.guard.call(attempt, clock=self.net_clock, log=self.log)

    def _use(self, link: LiveLink) -> None:
        self.sessions += 1
        self.handled = link.received
        self._in_flight = []
        self._handle, self._resumable = None, False  # until this session sends its own
        self._link = link

    # --- frames -----------------------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        link = self._link
        voicebridge_turns = self.params.turn_detection == "voicebridge"
        if isinstance(frame, AudioIn):
            if link is not None and self._audio is not None:
                link.send_audio(self._audio.encode_in(frame.pcm))
            self._maybe_move()
        elif isinstance(frame, AgentText):
            self._call_says(frame)
        else:
            if isinstance(frame, SpeechStarted):
                self._reply_began()  # the caller goes on: their turn is not over
                if voicebridge_turns and link is not None:
                    link.send("activity_start")
            elif isinstance(frame, SpeechEnded):
                if link is not None and self._reply is None:
                    self._expect_reply()
                if voicebridge_turns and link is not None:
                    link.send("activity_end")
            elif isinstance(frame, Hangup | Transfer) and self._saying is not None:
                self._after = CallAction(frame, "")  # after the goodbye being read out
                self._after_turn = self._saying
                return
            else:
                self._call_event(frame)
            await self.emit(frame)
        self._raise_pending()

    def _next_line(self) -> None:
        link = self._link
        if link is None or self._reply is not None or self._asked is not None:
            return
        line = self._pop_line()
        if line is not None:
            self._asked = line.turn
            content = {"role": "user", "parts": [{"text": SAY.format(text=line.text)}]}
            link.send("content", ([content], True))
            self._expect_reply()

    async def _keypad_entered(self, text: str, link: LiveLink) -> None:
        self._caller.append(text)
        link.send("content", ([{"role": "user", "parts": [{"text": text}]}], True))

    async def _close_turn(self, turn: int) -> None:
        last = AgentAudio(ModelAudio.silence(), turn=turn, last=True)
        await self._turn_over(turn, last, spoke=False)

    async def _turn_over(self, turn: int, last: AgentAudio, *, spoke: bool) -> None:
        """A turn's last piece, then a hang-up or transfer that waited for this turn (or, with
        no turn named, for the next reply with words in it)."""
        await self.emit(last)
        if turn == self._saying:
            self._saying = None
        action = self._after
        if action is None or (self._after_turn is not None and turn != self._after_turn):
            return
        if self._after_turn is None and not spoke:
            return
        self._after = self._after_turn = None
        if not self.ctx.is_stale(turn):
            await self.emit(action.frame)

    # --- a reply that never begins ---------------------------------------------------------
    def _expect_reply(self) -> None:
        """A reply is due (the caller's turn ended, or a line was asked for): if no audio of
        one comes within ``timeout_s`` the model has stalled."""
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
        error = ProviderError(
            self.name, PROVIDER, "timeout", f"no reply began within {timeout:g} s"
        )
        self.guard.breaker.failure(error, self.guard.registry.clock.now())
        asked, self._asked = self._asked, None
        if asked is not None:  # the line asked for will not come: its turn still ends
            await self._close_turn(asked)
        words = " ".join(" ".join(self._caller).split())
        if words:  # what the caller said goes into the history before the fallback
            self._caller = []
            await self.emit(Transcript(words, final=True, reply_turn=0))
        self._fail(error)

    # --- barge-in ----------------------------------------------------------------------------
    def interrupt(self, stale_through: int) -> None:
        """voicebridge cut the agent off. Gemini keeps all it sent of the reply (it has no
        truncate), so it is told, as context, the words the caller heard: the history's."""
        link = self._link
        for reply in list(self._recent):
            if reply.turn > stale_through or reply.cut:
                continue
            reply.cut = True
            heard_ms = self.ctx.heard_audio.ms(reply.turn)
            if heard_ms >= reply.pieces.model_ms - 0.5 and reply is not self._reply:
                continue  # heard to its end: nothing to correct
            heard = self.ctx.agent_entry(reply.turn).text
            if link is not None:
                note = {"role": "user", "parts": [{"text": heard_note(heard)}]}
                link.send("content", ([note], False))
            self.log.info("s2s_heard_note", turn=reply.turn, heard_ms=round(heard_ms, 1))
        if self._reply is not None and self._reply.cut:
            self._reply = None
            if self._audio is not None:
                self._audio.reset_out()
        self._drop_lines(stale_through)
        if self._after is not None:  # the caller cut in: whatever was to follow is moot
            self._after = self._after_turn = None

    # --- the model's messages ---------------------------------------------------------------
    async def _on_message(self, message: Any) -> None:
        content = message.server_content
        if content is not None:
            if content.input_transcription is not None and content.input_transcription.text:
                self._caller_words(content.input_transcription.text)
            if content.model_turn is not None:
                for part in content.model_turn.parts or ():
                    inline = part.inline_data
                    if inline is not None and inline.data and "audio" in (inline.mime_type or ""):
                        await self._audio_part(inline.data)
            if content.output_transcription is not None and content.output_transcription.text:
                reply = self._reply
                if reply is not None:
                    reply.pieces.text(reply.item, content.output_transcription.text)
            if content.interrupted:
                await self._end_reply(interrupted=True)
            elif content.turn_complete:
                await self._end_reply(interrupted=False)
        if message.tool_call is not None and message.tool_call.function_calls:
            self._reply_began()  # the model is answering, through a tool first
            calls = [
                ToolCall(
                    id=str(call.id or ""),
                    name=str(call.name or "")[:64],
                    arguments=_json(call.args),
                )
                for call in message.tool_call.function_calls
            ]
            self.spawn(self._run_calls(calls), name=f"{self.name}-tools")
        update = message.session_resumption_update
        if update is not None:  # not resumable while generating or running tools
            self._resumable = bool(update.resumable)
            if update.resumable and update.new_handle:
                self._handle = str(update.new_handle)[:1024]
        if message.go_away is not None:
            self.log.info("s2s_go_away", time_left=str(message.go_away.time_left)[:32])
            self._moving = True
        self._maybe_move()

    def _caller_words(self, text: str) -> None:
        reply = self._reply
        if reply is not None and not reply.cut:
            reply.caller_words.append(text)  # late words of what this reply answers
        else:
            self._caller.append(text)

    def _begin_reply(self) -> _Reply:
        asked, self._asked = self._asked, None
        turn = asked if asked is not None else self.ctx.begin_turn()
        reply = _Reply(turn, ReplyPieces(self.ctx.info.sample_rate, self.params.piece_ms))
        if asked is None:  # the model's own answer: to what the caller said
            reply.caller_words, self._caller = self._caller, []
        self._reply = reply
        self._recent.append(reply)
        return reply

    async def _audio_part(self, data: bytes) -> None:
        audio = self._audio
        if audio is None:
            return
        self._reply_began()
        reply = self._reply or self._begin_reply()
        if reply.cut:
            return
        pieces = reply.pieces.audio(reply.item, 0, audio.model_ms(data), audio.decode_out(data))
        for piece in pieces:
            await self._emit_piece(reply, piece)

    async def _emit_piece(self, reply: _Reply, piece: Piece) -> None:
        frame = AgentAudio(piece.pcm, turn=reply.turn, text=piece.text, last=piece.last)
        if piece.last:
            await self._turn_over(reply.turn, frame, spoke=reply.pieces.model_ms > 0)
        else:
            await self.emit(frame)

    async def _end_reply(self, *, interrupted: bool) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.cut:
            await self._finish(reply)
            if interrupted:
                self.log.info("s2s_model_interrupted", turn=reply.turn)
        elif self._asked is not None and not interrupted:
            # A line asked for came back without audio: its turn still ends.
            asked, self._asked = self._asked, None
            await self._close_turn(asked)
        self.guard.breaker.success()
        self._next_line()

    async def _finish(self, reply: _Reply) -> None:
        """The reply's last audio, the caller's words it answered, then its last piece."""
        if self._audio is not None:
            tail = self._audio.flush_out()
            for piece in reply.pieces.audio(reply.item, 0, 0.0, tail):
                await self._emit_piece(reply, piece)
        words = " ".join(" ".join(reply.caller_words).split())
        if words:
            await self.emit(Transcript(words, final=True, reply_turn=reply.turn))
        await self._emit_piece(reply, reply.pieces.finish())

    async def _run_calls(self, calls: list[ToolCall]) -> None:
        reply = self._reply
        said = reply is not None and reply.pieces.model_ms > 0
        link = self._link
        responses: list[dict[str, Any]] = []
        for call in calls:
            action = self._toolbox.action(call, said)
            if action is not None:
                self.log.info("s2s_call_action", tool=call.name)
                self._after = action
                # Said already: once this reply is over. Else once the closing line is said.
                self._after_turn = reply.turn if said and reply is not None else None
                result = "Done."
                if action.closing:
                    result += " Now say exactly this to the caller, and nothing else: "
                    result += action.closing
                responses.append({"id": call.id, "name": call.name, "response": {"result": result}})
                continue
            answer = await self._toolbox.answer(call, self.ctx, self.log)
            responses.append({"id": call.id, "name": call.name, "response": {"result": answer}})
        if link is not None and link is self._link:
            link.send("tool_response", responses)

    # --- failures and reconnecting ----------------------------------------------------------
    def _maybe_move(self) -> None:
        """After a goAway, move once the model is free and the caller has heard every reply
        to its end (the history the new session is given is what was heard)."""
        if not self._moving or self._reply is not None or self._asked is not None:
            return
        for reply in self._recent:
            if not reply.cut and self.ctx.heard_audio.ms(reply.turn) < reply.pieces.model_ms - 0.5:
                return
        self._moving = False
        self.spawn(self._move(), name=f"{self.name}-move")

    async def _move(self) -> None:
        """goAway: Gemini will close this session soon. Between replies, open the next one
        (with the heard history, as after a drop) and only then close the old one, so the call
        never goes silent. If the old session began a reply meanwhile, the move waits for its
        end; if the new one cannot be opened, the drop is handled when it comes."""
        old = self._link
        if old is None:
            return
        lines: list[ReplayLine] = []
        words = " ".join(" ".join(self._caller).split())
        if words:  # heard by the old session, not yet answered nor in the history
            lines.append(ReplayLine("user", words))
        self._in_flight += lines
        try:
            link = await self._open(replay=True)
        except ProviderError as error:
            self.log.warning("s2s_move_failed", kind=error.kind)
            self._in_flight = [line for line in self._in_flight if line not in lines]
            return
        if self._link is not old or self._reply is not None or self._asked is not None:
            await link.close()  # the old one is busy (or gone): move after this reply
            self._in_flight = [line for line in self._in_flight if line not in lines]
            self._moving = self._link is old
            return
        self._use(link)
        await old.close()
        self.log.info("s2s_session_moved", session=self.sessions)
        self._next_line()

    async def _lost(self, link: LiveLink, error: ProviderError) -> None:
        self._link = None
        self._reply_began()  # no reply will come on this socket
        self._moving = False
        await link.close()
        self.log.warning("s2s_session_lost", error=error.provider_message[:200])
        reply, self._reply = self._reply, None
        if reply is not None and not reply.cut:
            words = " ".join(" ".join(reply.caller_words).split())
            if words:
                self._in_flight.append(ReplayLine("user", words))
            await self._finish(reply)
        if reply is not None or self._asked is not None:
            self._fail(error)
        self._asked = None


def _json(value: Any) -> str:
    try:
        return json.dumps(value or {})
    except (TypeError, ValueError):
        return "{}"
