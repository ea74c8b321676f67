"""One call: Plivo events in, frames through the pipeline, ``playAudio`` and checkpoints out.

The session owns everything that is about the call rather than about a stage: the stream's format
(never switched), pacing and the playback ledger (what was sent, what was heard), barge-in and
false interruptions, turn timing, reprompts, hanging up and transfers, and hostile input. It talks
to the socket only through a two-method ``Transport``, so the server, the simulator and the tests
drive the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from voicebridge.audio.codec import codec_for
from voicebridge.call.barge_in import BargeInPolicy, Verdict
from voicebridge.call.context import CallContext, CallInfo
from voicebridge.call.continuation import quiet_cut, unheard_rest
from voicebridge.call.ledger import Piece, PlaybackLedger
from voicebridge.call.options import SessionOptions
from voicebridge.call.outbox import Outbox
from voicebridge.call.reply_watch import ReplyWatch
from voicebridge.call.turns import TurnTracker
from voicebridge.clock import Clock, MonotonicClock, StreamClock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.frames import (
    AgentAudio,
    AgentText,
    CallEnded,
    CallStarted,
    Dtmf,
    Frame,
    Hangup,
    MediaIn,
    OutputAudio,
    SpeechEnded,
    SpeechStarted,
    Transcript,
    Transfer,
)
from voicebridge.observe.observer import CallObserver
from voicebridge.plivo import messages
from voicebridge.plivo.errors import ProtocolError, UnsupportedFormat
from voicebridge.plivo.events import (
    ClearedAudioEvent,
    DtmfEvent,
    ErrorEvent,
    MediaEvent,
    PlayedStreamEvent,
    PlayFailedEvent,
    StartEvent,
    StopEvent,
    UnknownEvent,
    parse_event,
)
from voicebridge.plivo.formats import StreamFormat
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage
from voicebridge.telephony.call_control import CallControl
from voicebridge.text import split_sentences

if TYPE_CHECKING:
    from voicebridge.call.snapshot import CallSnapshot


class CloseCode:
    """WebSocket close codes the session uses (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


class Transport(Protocol):
    """How a session reaches its socket."""

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None: ...


class StateHooks(Protocol):
    """Where a session's resumable state goes (``voicebridge.server.resume_registry``)."""

    async def on_start(self, session: Session, call_id: str) -> CallSnapshot | None:
        """A stream started: the snapshot of the dropped stream it resumes, if any."""
        ...

    def changed(self, session: Session) -> None:
        """Something worth saving happened (a piece heard, a turn ended, the caller spoke)."""
        ...


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds on what one call may do before it is closed as unusable."""

    max_bad_messages: int = 50  # consecutive malformed messages
    max_messages_before_start: int = 100
    max_call_seconds: float = 3600.0
    tick_s: float = 0.1  # housekeeping period: pacing, lost acks, reprompts, limits
    hangup_attempt_s: float = 10.0  # a REST hang-up or transfer that takes longer is given up


class Session:
    """One Plivo stream. Feed it with ``handle_message``; end it with ``end``."""

    def __init__(
        self,
        spec: PipelineSpec,
        transport: Transport,
        *,
        clock: Clock | None = None,
        limits: SessionLimits | None = None,
        stage_factory: Callable[[], list[Stage]] | None = None,
        logger: Any = None,
        record_events: bool = False,
        call_control: CallControl | None = None,
        observer: CallObserver | None = None,
        state_hooks: StateHooks | None = None,
    ) -> None:
        self.spec = spec
        self.state_hooks = state_hooks
        self.options: SessionOptions = spec.session
        self.transport = transport
        self.clock: Clock = clock or MonotonicClock()
        self.limits = limits or SessionLimits()
        self.call_control = call_control
        self.observer = observer or CallObserver()  # metrics, recording, event log
        self._stage_factory = stage_factory or spec.create_stages
        self.log = logger or structlog.get_logger("voicebridge.session")
        self.ctx: CallContext | None = None
        self.pipeline: Pipeline | None = None
        self.format: StreamFormat | None = None
        self.ledger = PlaybackLedger()
        self.outbox: Outbox | None = None
        self.barge_in = BargeInPolicy(self.options.barge_in)
        self.turns = TurnTracker()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.stats: dict[str, int] = {
            "media": 0,
            "bad_messages": 0,
            "pre_start_messages": 0,
            "played_acks": 0,
            "ignored_acks": 0,
            "clears": 0,
            "resumes": 0,
            "reprompts": 0,
            "sent": 0,
        }
        # With record_events, a timeline of the call on the caller's stream time (seconds):
        # what the simulator's reports and the per-call event log are made from.
        self.events: list[dict[str, Any]] | None = [] if record_events else None
        self._bad_streak = 0
        self._stream_ms = 0.0
        self._origin = 0.0
        self._play_encoder: messages.PlayAudioEncoder | None = None
        self._caller_speaking = False
        self._completed_turn = 0
        self._sent_turn = 0  # the newest turn whose last piece went out whole
        self._agent_since_ms = 0.0  # stream time the newest agent reply began
        self._newest_turn_seen = 0
        self._pending_action: Hangup | Transfer | None = None
        self._acting = False
        self._housekeeping: asyncio.Task[None] | None = None
        self._ending = False
        self._interrupted_audio: list[tuple[Piece, OutputAudio]] = []
        self._sent_audio: dict[str, OutputAudio] = {}
        self._last_activity_s = 0.0
        self._reprompts = 0
        self._can_speak = False
        self._turn_played = asyncio.Event()  # set when a turn finishes playing or is cleared
        self.replies = ReplyWatch(self)  # fillers, reply timeouts, giving up on a dead provider
        # For resuming after a dropped socket (voicebridge.call.capture): the text of each
        # reply by history entry, re-spoken turns -> the entry they speak for, finished entries,
        # call time used before this stream, and how many times the call was suspended.
        self._reply_text: dict[int, list[str]] = {}
        self._respoken: dict[int, int] = {}
        self._done_entries: set[int] = set()
        self._elapsed_before = 0.0
        self._epoch = 0
        self._stream_token = uuid.uuid4().hex
        self.resumed_from: CallSnapshot | None = None

    # --- time, recording and sending ----------------------------------------------------------
    @property
    def stream_time(self) -> float:
        """Seconds of caller audio received so far: the call's own timeline."""
        return self._stream_ms / 1000.0

    def _now(self) -> float:
        """Seconds since the stream started: the later of the session's clock and the caller's
        audio received. Plivo streams in real time, so the two agree; a peer that streams faster
        (a test client, a burst after a network stall) moves the call's time with its audio, so
        pacing and playout estimates follow what the peer actually plays."""
        return max(self.clock.now() - self._origin, self._stream_ms / 1000.0)

    def _note(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.append({"t": round(self._stream_ms / 1000.0, 3), "kind": kind, **fields})

    async def _send(self, text: str) -> None:
        self.stats["sent"] += 1
        await self.transport.send_text(text)

    # --- inbound ------------------------------------------------------------------------------
    async def handle_message(self, message: str | bytes) -> None:
        """Handle one WebSocket message from Plivo. Never raises for bad input."""
        if self._ending:
            return
        try:
            event = parse_event(message)
        except UnsupportedFormat as exc:
            await self._refuse(CloseCode.UNSUPPORTED_DATA, "unsupported_format", str(exc))
            return
        except ProtocolError as exc:
            if self.ctx is None and (exc.field or "").startswith("start."):
                # Plivo sends start once: a start we cannot read leaves the stream unusable.
                await self._refuse(CloseCode.POLICY_VIOLATION, "invalid_start", str(exc))
            else:
                await self._bad_message(exc.reason, str(exc))
            return
        self._bad_streak = 0
        if isinstance(event, MediaEvent):
            await self._on_media(event)
        elif isinstance(event, StartEvent):
            await self._on_start(event)
        elif isinstance(event, PlayedStreamEvent):
            await self._on_played(event.name)
        elif isinstance(event, DtmfEvent):
            await self._on_dtmf(event)
        elif isinstance(event, ClearedAudioEvent):
            self.log.debug("cleared_audio_acked")
        elif isinstance(event, StopEvent):
            self.log.info("stop_event", reason=event.reason)
            await self.end("stop_event")
        elif isinstance(event, PlayFailedEvent | ErrorEvent):
            # Not ``event=``: structlog's first argument is the event name.
            self.log.warning("plivo_reported_error", plivo_event=event.kind, reason=event.reason)
        elif isinstance(event, UnknownEvent):
            self.log.info("unknown_event_ignored", event_name=event.event[:64])

    async def _on_start(self, event: StartEvent) -> None:
        if self.ctx is not None:
            self.log.warning("duplicate_start_ignored", stream_id=event.stream_id[:64])
            return
        fmt = self.format = event.format
        self.log = self.log.bind(call_id=event.call_id, stream_id=event.stream_id)
        info = CallInfo(
            call_id=event.call_id,
            stream_id=event.stream_id,
            account_id=event.account_id,
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            extra_headers=dict(event.extra_headers),
        )
        self.ctx = CallContext(info, clock=self.clock, logger=self.log)
        self._origin = self.clock.now()
        snapshot = None
        if self.state_hooks is not None:
            snapshot = await self.state_hooks.on_start(self, event.call_id)
        if snapshot is not None:
            from voicebridge.call.capture import restore

            restore(self, snapshot)
            self.resumed_from = snapshot
        self._play_encoder = messages.PlayAudioEncoder(fmt, event.stream_id)
        chunk = int(fmt.bytes_per_ms * self.options.chunk_ms)
        chunk -= chunk % fmt.bytes_per_sample
        self.outbox = Outbox(
            self.ledger,
            max_lead_ms=self.options.max_lead_ms,
            chunk_bytes=max(fmt.bytes_per_sample, chunk),
            bytes_per_ms=fmt.bytes_per_ms,
        )
        try:
            stages = self._stage_factory()
            self.pipeline = Pipeline(
                stages,
                self.ctx,
                self._sink,
                observer=self._observe,
                observe=(SpeechStarted, SpeechEnded, Transcript, AgentText, AgentAudio),
                on_error=self._stage_failed,
                on_provider_error=self._provider_failed,
                on_dropped=lambda count: self.observer.frames_dropped("backpressure", count),
            )
            await self.pipeline.start()
        except Exception as exc:
            self.log.error("pipeline_start_failed", error=repr(exc))
            self.pipeline = None
            await self._refuse(CloseCode.INTERNAL_ERROR, "pipeline_start_failed", str(exc))
            return
        roles = self.pipeline.roles()
        self._can_speak = "tts" in roles
        self.observer.call_started(info)
        # Without a transcriber, "no words" proves nothing: never call an interruption false.
        self.barge_in.words_known = "stt" in roles
        self._note(
            "call_started",
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            extra_headers=dict(event.extra_headers),
        )
        self.log.info(
            "call_started",
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            extra_headers=event.extra_headers,
        )
        await self.pipeline.push(
            CallStarted(
                call_id=info.call_id,
                stream_id=info.stream_id,
                account_id=info.account_id,
                encoding=info.encoding,
                sample_rate=info.sample_rate,
                extra_headers=info.extra_headers,
                resumed=snapshot is not None,
            )
        )
        if snapshot is not None:
            from voicebridge.call.capture import respeak

            said = await respeak(self, snapshot)
            self.log.info(
                "call_resumed",
                epoch=snapshot.epoch,
                turn=snapshot.turn,
                history=len(snapshot.history),
                respoken=" ".join(said)[:200],
            )
            self._note("call_resumed", epoch=snapshot.epoch, respoken=" ".join(said))
        self._housekeeping = asyncio.get_running_loop().create_task(
            self._housekeep(), name=f"housekeeping-{info.call_id[:16]}"
        )
        self._state_changed()  # a shared store knows of the call from its first moment

    async def _on_media(self, event: MediaEvent) -> None:
        if self.pipeline is None or self.format is None:
            await self._before_start("media")
            return
        payload = event.payload
        size = len(payload)
        if size == 0:
            return
        if size % self.format.bytes_per_sample:
            await self._bad_message(
                "odd_l16_payload",
                f"media.payload: L16 audio needs whole 16-bit samples, got {size} bytes",
            )
            return
        self.stats["media"] += 1
        timestamp = self._stream_ms
        self._stream_ms += size / self.format.bytes_per_ms
        self.observer.caller_audio(payload, timestamp / 1000.0)
        await self.pipeline.push(MediaIn(payload, timestamp))
        if isinstance(self.clock, StreamClock):
            await self.clock.advance_to(self._origin + self._stream_ms / 1000.0)
        await self._decide_barge_in()
        if self.outbox:
            await self._pump()

    async def _on_dtmf(self, event: DtmfEvent) -> None:
        if self.pipeline is None:
            await self._before_start("dtmf")
            return
        self.log.info("dtmf", digit=event.digit)
        self._note("dtmf", digit=event.digit)
        self._caller_active()
        if self.options.barge_in.dtmf_interrupts and self._agent_active():
            self.barge_in.cleared_by_dtmf()
            await self._clear("dtmf")
        await self.pipeline.push(Dtmf(event.digit, at_ms=self._stream_ms))

    async def _on_played(self, name: str) -> None:
        now = self._now()
        result = self.ledger.ack(name, now)
        if result.piece is None:
            self.stats["ignored_acks"] += 1
            self.log.info("ack_ignored", checkpoint=name[:128], reason=result.ignored_reason)
            self._note("ack_ignored", name=name[:128], reason=result.ignored_reason)
            return
        self.stats["played_acks"] += 1
        for piece in result.settled:
            self._piece_played(piece, now)
        if self.outbox:
            await self._pump()
        await self._maybe_act()

    def _piece_played(self, piece: Piece, now: float) -> None:
        self._note("played", name=piece.name, turn=piece.turn, text=piece.text)
        self._sent_audio.pop(piece.name, None)
        if piece.index == 1:
            self.turns.played(piece.turn, max(0.0, now - piece.duration_ms / 1000.0))
        self._record_heard(piece)
        if piece.last:
            self._turn_done(piece.turn, now)
        self._state_changed()

    def _turn_done(self, turn: int, now: float) -> None:
        self._completed_turn = max(self._completed_turn, turn)
        self._last_activity_s = now
        entry = self._respoken.get(turn, turn)
        self._done_entries.add(entry)
        self._reply_text.pop(entry, None)
        self._forget_replies_before(turn - 8)
        timing = self.turns.completed(turn, now).as_dict()
        self.ledger.forget_turns_through(turn - 2)
        self.log.info("turn_played", **timing)
        self._note("turn_metrics", **timing)
        self.observer.turn_completed(timing)
        self._turn_played.set()

    # --- bad input ----------------------------------------------------------------------------
    async def _bad_message(self, reason: str, detail: str) -> None:
        self.stats["bad_messages"] += 1
        self._bad_streak += 1
        self.log.warning("bad_message", reason=reason, detail=detail[:200])
        if self._bad_streak >= self.limits.max_bad_messages:
            await self._refuse(
                CloseCode.POLICY_VIOLATION,
                "too_many_bad_messages",
                f"{self._bad_streak} malformed messages in a row (last: {reason})",
            )

    async def _before_start(self, kind: str) -> None:
        self.stats["pre_start_messages"] += 1
        count = self.stats["pre_start_messages"]
        if count == 1:
            self.log.warning("event_before_start", event_name=kind)
        if count >= self.limits.max_messages_before_start:
            await self._refuse(
                CloseCode.POLICY_VIOLATION, "no_start", f"{count} events arrived before 'start'"
            )

    async def _refuse(self, code: int, reason: str, detail: str) -> None:
        self.log.warning("closing_stream", reason=reason, detail=detail[:200], code=code)
        await self.end(reason, code=code, close_reason=f"{reason}: {detail}")

    # --- what the stages say ------------------------------------------------------------------
    def _observe(self, frame: Frame) -> bool | None:
        """Called the moment a stage makes a frame of interest (before any queue).

        Returns False to drop the frame: a backchannel said over the agent never reaches the
        dialogue.
        """
        now = self._now()
        if isinstance(frame, SpeechStarted):
            self._caller_speaking = True
            self._caller_active()
            self.barge_in.speech_started(frame.at_ms)
            self._note("speech_started", at=round(frame.at_ms / 1000.0, 3))
        elif isinstance(frame, SpeechEnded):
            self._caller_speaking = False
            self._last_activity_s = now
            self.barge_in.speech_ended(frame.at_ms)
            self.turns.speech_ended(frame.at_ms / 1000.0)
            self._note("speech_ended", at=round(frame.at_ms / 1000.0, 3))
        elif isinstance(frame, Transcript):
            self._note("transcript", text=frame.text, final=frame.final)
            backchannel = self.barge_in.transcript(frame.text, frame.final)
            if not backchannel and frame.final and frame.text.strip() and self._agent_active():
                backchannel = not self.barge_in.content_words(frame.text)
            if backchannel:
                self.log.info("backchannel_ignored", text=frame.text[:80])
                self._note("backchannel", text=frame.text)
                return False
            if frame.final and frame.text.strip() and self.ctx:
                self.turns.transcript(now)
                self.ctx.add_caller_text(frame.text.strip())
                self.replies.caller_turn_ended(now)
                self.log.info("caller_said", text=frame.text[:200])
                self._state_changed()
        elif isinstance(frame, AgentText):
            if frame.turn > self._newest_turn_seen:
                self._newest_turn_seen = frame.turn
                self._agent_since_ms = self._stream_ms
            if frame.turn not in self._respoken:
                self._reply_text.setdefault(frame.turn, []).append(frame.text)
            self.turns.agent_text(frame.turn, now)
            self.replies.agent_text(frame)
            self._note("agent_text", turn=frame.turn, text=frame.text, last=frame.last)
        elif isinstance(frame, AgentAudio):
            self.turns.agent_audio(frame.turn, now)
        return None

    async def _sink(self, frame: Frame) -> None:
        if isinstance(frame, OutputAudio):
            if self.ctx is None or self.outbox is None or self._ending:
                return
            if self.ctx.is_stale(frame.turn) or not self.replies.wanted(frame.turn):
                return
            self.outbox.add(frame, history_turn=self._respoken.get(frame.turn))
            await self._pump()
        elif isinstance(frame, Hangup | Transfer):
            detail = frame.reason if isinstance(frame, Hangup) else frame.to
            self.log.info("call_action_requested", action=type(frame).__name__, detail=detail)
            self._note(type(frame).__name__.lower(), reason=frame.reason, detail=detail)
            self._pending_action = frame
            self._state_changed()
            await self._maybe_act()

    async def _pump(self) -> None:
        """Send what pacing allows now."""
        outbox, encoder, ctx = self.outbox, self._play_encoder, self.ctx
        if outbox is None or encoder is None or ctx is None or self._ending:
            return
        now = self._now()
        for send in outbox.due(now):
            if send.started is not None and send.piece is not None:
                self._sent_audio[send.piece.name] = send.started  # kept for a resume
                self.turns.sent(send.started.turn, now)
                self.replies.audio_sent(send.started.turn, now, send.started.duration_ms / 1000)
            if send.payload is not None:
                self.observer.agent_audio(send.payload, now)
                await self._send(encoder.encode(send.payload))
            elif send.checkpoint is not None:
                piece = send.checkpoint
                if piece.last:
                    self._sent_turn = max(self._sent_turn, piece.turn)
                await self._send(messages.checkpoint(ctx.info.stream_id, piece.name))
                self._note(
                    "checkpoint",
                    name=piece.name,
                    turn=piece.turn,
                    text=piece.text,
                    duration=round(piece.duration_ms / 1000.0, 3),
                )

    def _record_heard(self, piece: Piece) -> None:
        if self.ctx is None or not piece.heard_text or self.replies.is_filler(piece.turn):
            return
        entry = self.ctx.agent_entry(piece.entry_turn)
        entry.text = f"{entry.text} {piece.heard_text}".strip()
        if piece.history_turn is not None and piece.last:
            entry.interrupted = False  # a false interruption, resumed to the end

    # --- barge-in -----------------------------------------------------------------------------
    def _agent_active(self) -> bool:
        """Agent audio is unplayed or queued, or a reply is being prepared for a live turn."""
        if self.ctx is None:
            return False
        if self.ledger.has_unplayed(self._now()) or self.outbox:
            return True
        settled = max(self._completed_turn, self._sent_turn, self.ctx.stale_through)
        return self.ctx.turn > settled

    async def _decide_barge_in(self) -> None:
        verdict = self.barge_in.decide(self._stream_ms, self._agent_active(), self._agent_since_ms)
        if verdict is Verdict.CLEAR:
            await self._clear("speech")
        elif verdict is Verdict.RESUME:
            await self._resume()

    async def _clear(self, cause: str) -> None:
        """Barge-in: stop the agent now, cancel its work, settle what was heard."""
        if self.ctx is None or self.pipeline is None or self._ending or self.outbox is None:
            return
        now = self._now()
        stale = self.pipeline.interrupt()
        queued = self.outbox.drop_all()
        cleared = self.ledger.clear(now)
        for piece in cleared.played:
            self._piece_played(piece, now)
        self.stats["clears"] += 1
        onset = self.barge_in.speech_onset_ms if cause == "speech" else None
        reaction = self._stream_ms / 1000.0 - onset / 1000.0 if onset is not None else None
        await self._send(messages.clear_audio(self.ctx.info.stream_id))
        self.observer.agent_cleared(now)
        self.observer.barge_in(reaction, cause)
        self._turn_played.set()  # a goodbye being waited for may have been cut off
        self.replies.cleared()
        interrupted = cleared.interrupted
        if interrupted is not None and not self.replies.is_filler(interrupted.turn):
            entry = self.ctx.agent_entry(interrupted.entry_turn)
            entry.text = f"{entry.text} {interrupted.heard_text}".strip()
            entry.interrupted = True
            self.turns.interrupted(interrupted.turn)
        # Keep what was interrupted, in case the interruption proves false.
        self._interrupted_audio = []
        if cause == "speech":
            for piece in cleared.cleared:
                audio = self._sent_audio.get(piece.name)
                if audio is not None:
                    self._interrupted_audio.append((piece, audio))
            self._interrupted_audio += [(_unsent_piece(f, h), f) for f, h in queued]
        self._sent_audio.clear()
        if self._pending_action is not None:
            self.log.info("call_action_cancelled_by_barge_in")
            self._pending_action = None
        self._note(
            "barge_in",
            cause=cause,
            cleared=[p.name for p in cleared.cleared],
            heard=interrupted.heard_text if interrupted else None,
        )
        self._state_changed()
        self.log.info(
            "barge_in",
            cause=cause,
            stale_through=stale,
            cleared_pieces=len(cleared.cleared),
            heard=interrupted.heard_text if interrupted else None,
        )

    async def _resume(self) -> None:
        """A false interruption: go on from the first word the caller did not hear."""
        if not self._interrupted_audio or self.ctx is None or self.outbox is None:
            return
        if self.ctx.turn > self.ctx.stale_through:
            # The dialogue already answered something new: the interruption was real.
            self._interrupted_audio = []
            return
        items, self._interrupted_audio = self._interrupted_audio, []
        turn = self.ctx.begin_turn()
        self._respoken[turn] = items[0][0].entry_turn
        self._newest_turn_seen = turn
        self._agent_since_ms = self._stream_ms
        codec = codec_for(self.ctx.info.encoding)
        rate = self.ctx.info.sample_rate
        resent: list[str] = []
        for position, (piece, audio) in enumerate(items):
            payload, text, ends = audio.payload, audio.text, audio.word_ends_ms
            if piece.heard_ms > 0:
                rest = unheard_rest(
                    audio.text,
                    len(piece.heard_text.split()),
                    audio.duration_ms,
                    audio.word_ends_ms,
                )
                if not rest.text:
                    continue
                target = int(rest.start_ms * rate / 1000.0)
                if rest.exact:  # the speaker said where the word ends: cut right there
                    cut = min(target, len(payload) // codec.bytes_per_sample)
                else:  # an estimate: look for a quiet spot before it
                    cut = quiet_cut(codec.decode(payload), rate, target)
                payload = payload[cut * codec.bytes_per_sample :]
                text = rest.text
                shift_ms = rest.start_ms - 1000.0 * cut / rate
                ends = (
                    tuple(max(0.0, end + shift_ms) for end in rest.word_ends_ms)
                    if rest.word_ends_ms is not None
                    else None
                )
            last = position == len(items) - 1
            self.outbox.add(
                OutputAudio(
                    payload=payload,
                    turn=turn,
                    text=text,
                    last=last,
                    duration_ms=len(payload) / self.format.bytes_per_ms if self.format else 0.0,
                    word_ends_ms=ends,
                ),
                history_turn=piece.entry_turn,
            )
            resent.append(text)
        self.stats["resumes"] += 1
        self.log.info("false_interruption_resumed", turn=turn, text=" ".join(resent)[:200])
        self._note("resume", turn=turn, text=" ".join(resent))
        await self._pump()

    # --- the agent speaking on its own (reprompts, fallbacks) ---------------------------------
    async def say(self, text: str, *, then: Hangup | None = None, direct: bool = False) -> bool:
        """Speak ``text`` through the pipeline's speaker as a new turn; False if none.

        ``direct`` hands it to the speaker stage itself, past a dialogue that may be busy.
        """
        if self.pipeline is None or self.ctx is None or not self._can_speak:
            return False
        pipeline = self.pipeline
        pieces = split_sentences(text)
        turn = self.ctx.begin_turn()
        for index, piece in enumerate(pieces):
            frame = AgentText(piece, turn=turn, last=index == len(pieces) - 1)
            self._observe(frame)  # made here, not by a stage: the observer would not see it
            await (pipeline.push_to("tts", frame) if direct else pipeline.push(frame))
        if then is not None:
            await (pipeline.push_to("tts", then) if direct else pipeline.push(then))
        return True

    async def request_action(self, action: Hangup | Transfer) -> None:
        """Hang up or transfer once what was already said has played."""
        self._pending_action = action
        await self._maybe_act()

    def _caller_active(self) -> None:
        self._last_activity_s = self._now()
        self._reprompts = 0

    async def _idle_check(self, now: float) -> None:
        wait = self.options.idle_reprompt_s
        if not wait or self._caller_speaking or self._agent_active() or self._pending_action:
            return
        if now - self._last_activity_s < wait:
            return
        self._last_activity_s = now
        if self._reprompts < self.options.idle_reprompts:
            self._reprompts += 1
            self.stats["reprompts"] += 1
            self._note("reprompt", count=self._reprompts)
            if not await self.say(self.options.reprompt_text):
                self.log.warning("reprompt_unavailable", reason="the pipeline has no tts stage")
            return
        self._note("idle_goodbye")
        self.log.info("idle_goodbye", reprompts=self._reprompts)
        if not await self.say(self.options.idle_goodbye_text, then=Hangup(reason="idle")):
            await self.end("idle", close_reason="caller idle")

    # --- housekeeping -------------------------------------------------------------------------
    async def _housekeep(self) -> None:
        limit = self.limits.max_call_seconds
        if self.options.max_call_s:
            limit = min(limit, self.options.max_call_s) if limit else self.options.max_call_s
        while not self._ending:
            await self.clock.sleep(self.limits.tick_s)
            now = self._now()
            for piece in self.ledger.expire_overdue(now):
                self.log.warning("ack_lost", checkpoint=piece.name)
                self._note("ack_lost", name=piece.name)
                self._piece_played(piece, now)
            if self.outbox:
                await self._pump()
            await self._decide_barge_in()
            await self._maybe_act()
            await self._idle_check(now)
            await self.replies.tick(now)
            if limit and now + self._elapsed_before >= limit:
                self.log.info("max_call_duration_reached", seconds=limit)
                await self.end("max_call_duration", close_reason="maximum call duration reached")

    async def _maybe_act(self) -> None:
        """Hang up or transfer once everything the agent said before it has played."""
        action = self._pending_action
        if action is None or self._acting or self._ending or self.outbox or self.ledger.pending:
            return
        self._acting = True
        task = asyncio.get_running_loop().create_task(self._act(action))
        task.add_done_callback(_log_task_failure(self.log, "call_action_failed"))

    async def _act(self, action: Hangup | Transfer) -> None:
        call_id = self.ctx.info.call_id if self.ctx else ""
        control = self.call_control
        if isinstance(action, Transfer):
            if control is None:
                self.log.warning(
                    "transfer_unavailable", to=action.to, reason="no Plivo credentials"
                )
                self._note("transfer_unavailable", to=action.to)
                self._pending_action = None
                self._acting = False
                return
            try:
                await asyncio.wait_for(
                    control.transfer(call_id, action.to), self.limits.hangup_attempt_s
                )
            except Exception as exc:
                self.log.error("transfer_failed", to=action.to, error=str(exc)[:300])
                self._note("transfer_failed", to=action.to, error=str(exc)[:300])
                self._pending_action = None
                self._acting = False
                await self.say(self.options.fallback_text)
                return
            self._note("transferred", to=action.to)
            await self.end("transferred", close_reason="call transferred")
            return
        if control is not None:
            try:
                outcome = await asyncio.wait_for(
                    control.hangup(call_id), self.limits.hangup_attempt_s
                )
                self._note("rest_hangup", outcome=outcome)
            except Exception as exc:  # the socket close below still ends the stream
                self.log.error("rest_hangup_failed", error=str(exc)[:300])
                self._note("rest_hangup_failed", error=str(exc)[:300])
        await self.end(f"hangup:{action.reason}", close_reason="agent hung up")

    def _provider_failed(self, stage: Stage, exc: ProviderError) -> None:
        """A provider let us down: one clear log line, then the fallback line, not dead air."""
        self.stats["provider_errors"] = self.stats.get("provider_errors", 0) + 1
        self.log.error(
            "provider_failed",
            stage=exc.stage,
            provider=exc.provider,
            kind=exc.kind,
            status=exc.status,
            error=exc.provider_message[:300],
        )
        self._note("provider_error", stage=exc.stage, provider=exc.provider, error_kind=exc.kind)
        self.observer.provider_error(exc.stage, exc.kind)
        if self._ending:
            return
        # The fallback line, or a goodbye if the provider stays down (voicebridge.call.reply_watch).
        task = asyncio.get_running_loop().create_task(self.replies.provider_failed(stage, exc))
        task.add_done_callback(_log_task_failure(self.log, "fallback_failed"))

    def _stage_failed(self, stage: Stage, exc: BaseException) -> None:
        self.log.error("stage_failed", stage=stage.name, error=repr(exc)[:300])
        task = asyncio.get_running_loop().create_task(
            self.end(
                "stage_failed",
                code=CloseCode.INTERNAL_ERROR,
                close_reason=f"stage {stage.name} failed",
            )
        )
        task.add_done_callback(_log_task_failure(self.log, "end_failed"))

    # --- resuming after a dropped socket -------------------------------------------------------
    def _state_changed(self) -> None:
        if self.state_hooks is not None and not self._ending:
            self.state_hooks.changed(self)

    def _forget_replies_before(self, turn: int) -> None:
        """Bounded memory on long calls: old replies are long settled (played or cut off)."""
        for table in (self._reply_text, self._respoken):
            for old in [t for t in table if t < turn]:
                del table[old]
        self._done_entries = {t for t in self._done_entries if t >= turn}

    def suspendable(self, close_code: int | None) -> bool:
        """The socket went away mid-call without anyone ending the call: Plivo may come back.

        A normal close (1000) is Plivo ending the stream with the call; anything else (1005 or
        1006 for a connection lost without a close frame, 1001, 1011, 1012 for a server
        restart, ...) is a drop Plivo retries."""
        return (
            not self._ending
            and self.ctx is not None
            and self.pipeline is not None
            and close_code != CloseCode.NORMAL
        )

    def snapshot(self, *, epoch: int | None = None) -> CallSnapshot | None:
        """The call's resumable state now (``voicebridge.call.capture``)."""
        from voicebridge.call.capture import capture

        return capture(self, epoch=self._epoch if epoch is None else epoch)

    @property
    def epoch(self) -> int:
        """How many times this call's stream dropped and was suspended before this one."""
        return self._epoch

    # --- ending -------------------------------------------------------------------------------
    async def wind_up(
        self, reason: str, goodbye: str | None, timeout_s: float, *, close_reason: str = ""
    ) -> None:
        """End the call politely because the service is going away: say ``goodbye`` if the
        pipeline can speak and wait (at most ``timeout_s``) until it has played, hang up, and
        close the socket with 1001 (going away)."""
        if self._ending:
            await self.ended.wait()
            return
        self._pending_action = None
        if goodbye and await self.say(goodbye):
            turn = self.ctx.turn if self.ctx else 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._played_through(turn), timeout_s)
        if self.call_control is not None and self.ctx is not None and not self._ending:
            try:
                outcome = await asyncio.wait_for(
                    self.call_control.hangup(self.ctx.info.call_id), self.limits.hangup_attempt_s
                )
                self._note("rest_hangup", outcome=outcome)
            except Exception as exc:  # the socket close below still ends the stream
                self.log.error("rest_hangup_failed", error=str(exc)[:300])
        await self.end(reason, code=CloseCode.GOING_AWAY, close_reason=close_reason or reason)

    async def _played_through(self, turn: int) -> None:
        """Wait until ``turn`` has played to its end, been cut off, or the call ended."""
        while not self._ending and self.ctx is not None:
            if self._completed_turn >= turn or self.ctx.stale_through >= turn:
                return
            self._turn_played.clear()
            await self._turn_played.wait()

    async def end(
        self, reason: str, *, code: int = CloseCode.NORMAL, close_reason: str | None = None
    ) -> None:
        """End the call: stop the pipeline, close the socket. Safe to call more than once."""
        if self._ending:
            await self.ended.wait()
            return
        self._ending = True
        self.end_reason = reason
        self._turn_played.set()  # wake a goodbye waiting to be played: it never will be
        if self._housekeeping is not None and self._housekeeping is not asyncio.current_task():
            self._housekeeping.cancel()
        if self.pipeline is not None:
            with contextlib.suppress(Exception):
                await self.pipeline.push(CallEnded(reason))
            await self.pipeline.stop()
        with contextlib.suppress(Exception):
            await self.transport.close(code, (close_reason or reason)[:120])
        self._note("call_ended", reason=reason)
        self.log.info("call_ended", reason=reason, **self.stats)
        try:
            await self.observer.call_ended(self)
        except Exception as exc:  # a full disk must not keep the call from ending
            self.log.error("call_observer_failed", error=repr(exc)[:300])
        self.ended.set()


def _unsent_piece(frame: OutputAudio, history_turn: int | None) -> Piece:
    """A stand-in ledger piece for audio that was queued but never sent (nothing heard)."""
    return Piece(
        frame.turn, 0, "", frame.text, frame.duration_ms, 0.0, 0.0, frame.last, history_turn
    )


def _log_task_failure(log: Any, event: str) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(event, error=repr(task.exception()))

    return done
