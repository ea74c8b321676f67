"""``CallCore``: one call's decisions as a state machine, with no I/O.

Shaped like h11's ``Connection``: the driver feeds it inputs (Plivo's messages, frames observed
in the pipeline, frames leaving it, clock ticks, results of REST calls) and carries out what
each returns: a list of ``Action``s (wire messages, pipeline commands, REST calls, closing) and
typed ``CallEvent``s, in the order they happened. It never awaits, so every decision can be
tested with a table of inputs and expected outputs, no event loop needed.

Time comes in as ``now``: clock seconds, the same clock the driver sleeps on. The call's own
timeline is the later of that clock (since ``start``) and the caller audio received: Plivo
streams in real time, so the two agree; a peer that streams faster (a test, a burst after a
network stall) moves the call's time with its audio.

What it owns: the stream's format (never switched), pacing (``Outbox``) and the playback ledger
(what was sent, what was heard), barge-in and false interruptions, turns (``Turns``, the one
owner of turn numbers) and their timing, reprompts, the reply watch, hang-ups and transfers,
hostile input, and the public snapshot a dropped call is resumed from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from voicebridge.call import capture
from voicebridge.call.actions import Push, SaveState, StartPipeline
from voicebridge.call.agent_actions import AgentActions
from voicebridge.call.context import CallContext, CallInfo
from voicebridge.call.events import (
    AckIgnored,
    AckLost,
    ActionRequested,
    AgentAudioSent,
    BackchannelIgnored,
    BadMessage,
    CallAnswered,
    CallerAudio,
    CallerSaid,
    CallFinished,
    CallResumed,
    ClearAcknowledged,
    DtmfPressed,
    DuplicateStart,
    EventBeforeStart,
    FramesDropped,
    PipelineFailed,
    PlivoReportedError,
    SpeechBegan,
    SpeechFinished,
    StopReceived,
    UnknownEventIgnored,
)
from voicebridge.call.outbox import Outbox
from voicebridge.call.snapshot import CallSnapshot
from voicebridge.call.state import CallLimits, CallState, CallStats, CloseCode, Out
from voicebridge.clock import Clock
from voicebridge.digits import normalise_transcript
from voicebridge.frames import (
    AgentAudio,
    AgentText,
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

__all__ = ["CallCore", "CallLimits", "CallState", "CallStats", "CloseCode", "Out"]


class CallCore(AgentActions):
    """One Plivo stream's call logic. Feed it; carry out what it returns.

    Inputs: ``receive`` (a Plivo message), ``after_media``, ``pipeline_started`` /
    ``pipeline_failed``, ``observe`` (+ ``drain``), ``caller_said``, ``output``, ``dropped``,
    ``tick``, ``say``, ``request_action``, ``control_done``, ``provider_failed``,
    ``stage_failed``, ``end``, ``finished``; for a dropped call, ``snapshot`` and ``restore``.
    """

    # The frames ``observe`` wants to see the moment a stage makes them.
    OBSERVED = (SpeechStarted, SpeechEnded, Transcript, AgentText, AgentAudio)
    # The frames ``output`` takes from the pipeline's end.
    OUTPUT = (OutputAudio, Hangup, Transfer)
    # An outbound call's variables (checked and signed upstream, set before the start event):
    # the stages read them as ``ctx.info.vars``.
    call_vars: Mapping[str, str] = MappingProxyType({})

    # --- inbound messages -------------------------------------------------------------------------
    def receive(self, message: str | bytes, now: float) -> Sequence[Out]:
        """One WebSocket message from Plivo. Bad input never raises: it is answered."""
        if self.ending:
            return []
        try:
            event = parse_event(message)
        except UnsupportedFormat as exc:
            self._refuse(CloseCode.UNSUPPORTED_DATA, "unsupported_format", str(exc))
            return self._take()
        except ProtocolError as exc:
            if self.ctx is None and (exc.field or "").startswith("start."):
                # Plivo sends start once: a start we cannot read leaves the stream unusable.
                self._refuse(CloseCode.POLICY_VIOLATION, "invalid_start", str(exc))
            else:
                self._bad_message(exc.reason, str(exc))
            return self._take()
        self._bad_streak = 0
        if isinstance(event, MediaEvent):
            self._on_media(event, now)
        elif isinstance(event, StartEvent):
            self._on_start(event, now)
        elif isinstance(event, PlayedStreamEvent):
            self._on_played(event.name, now)
        elif isinstance(event, DtmfEvent):
            self._on_dtmf(event, now)
        elif isinstance(event, ClearedAudioEvent):
            self._emit(ClearAcknowledged(self._t()))
        elif isinstance(event, StopEvent):
            self._emit(StopReceived(self._t(), event.reason))
            self._close("stop_event")
        elif isinstance(event, PlayFailedEvent | ErrorEvent):
            self._emit(PlivoReportedError(self._t(), event.kind, event.reason))
        elif isinstance(event, UnknownEvent):
            self._emit(UnknownEventIgnored(self._t(), event.event[:64]))
        return self._take()

    def _on_start(self, event: StartEvent, now: float) -> None:
        if self.ctx is not None:
            self._emit(DuplicateStart(self._t(), event.stream_id[:64]))
            return
        fmt = self.format = event.format
        info = CallInfo(
            call_id=event.call_id,
            stream_id=event.stream_id,
            account_id=event.account_id,
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            extra_headers=dict(event.extra_headers),
            vars=dict(self.call_vars),
        )
        self._origin = self._clock_origin = now
        self._encoder = messages.PlayAudioEncoder(fmt, event.stream_id)
        chunk = int(fmt.bytes_per_ms * self.options.chunk_ms)
        chunk -= chunk % fmt.bytes_per_sample
        self.outbox = Outbox(
            self.ledger,
            max_lead_ms=self.options.max_lead_ms,
            chunk_bytes=max(fmt.bytes_per_sample, chunk),
            bytes_per_ms=fmt.bytes_per_ms,
        )
        self._out.append(StartPipeline(info))

    def open_context(self, info: CallInfo, clock: Clock, logger: Any) -> CallContext:
        """The context the pipeline's stages share; its turns are this core's ``Turns``."""
        self.ctx = CallContext(info, clock=clock, logger=logger, turns=self.turns)
        if self.options.normalise_digits:
            self.ctx.dialogue_input = normalise_transcript
        return self.ctx

    def _on_media(self, event: MediaEvent, now: float) -> None:
        fmt = self.format
        if fmt is None or not self.started:
            self._before_start("media")
            return
        payload = event.payload
        size = len(payload)
        if size == 0:
            return
        if size % fmt.bytes_per_sample:
            self._bad_message(
                "odd_l16_payload",
                f"media.payload: L16 audio needs whole 16-bit samples, got {size} bytes",
            )
            return
        origin = self._origin
        if origin is not None and not self.fair.admits(self.stream_ms, now - origin):
            self._flood(size / fmt.bytes_per_ms, now)
            return
        self.stats.media += 1
        timestamp = self.stream_ms
        self.stream_ms += size / fmt.bytes_per_ms
        if not self.media_settles:  # else ``after_media`` does, once the driver's clock moved
            self._audio_received_through(now)
        if self._want_caller_audio:
            self._emit(CallerAudio(self._t(), payload, timestamp / 1000.0))
        self._out.append(Push(MediaIn(payload, timestamp)))
        if not self.media_settles:
            self._decide_barge_in(now)
            if self.outbox:
                self._pump(now)

    def _flood(self, ms: float, now: float) -> None:
        """A caller frame beyond real time (``FairShare``): dropped; a sustained flood closes."""
        self.stats.flood_dropped += 1
        if self.fair.drop(ms):
            self._report_drops(now, every_s=0)
            ahead = self.fair.dropped_ms / 1000.0
            self._refuse(
                CloseCode.POLICY_VIOLATION,
                "media_flood",
                f"{ahead:.1f} s of caller audio beyond real time",
            )

    def after_media(self, now: float) -> Sequence[Out]:
        """With ``media_settles``: the media frame was handed to the pipeline and its clock
        moved; decide a barge-in and send what pacing allows."""
        self._audio_received_through(now)
        self._decide_barge_in(now)
        if self.outbox:
            self._pump(now)
        return self._take()

    def _on_dtmf(self, event: DtmfEvent, now: float) -> None:
        if not self.started:
            self._before_start("dtmf")
            return
        self._emit(DtmfPressed(self._t(), event.digit))
        self._caller_active(now)
        if self.options.barge_in.dtmf_interrupts and self._agent_active(now):
            self.barge_in.cleared_by_dtmf()
            self._clear("dtmf", now)
        self._out.append(Push(Dtmf(event.digit, at_ms=self.stream_ms)))

    def _on_played(self, name: str, now: float) -> None:
        t = self.call_time(now)
        result = self.ledger.ack(name, t)
        if result.piece is None:
            self.stats.ignored_acks += 1
            self._emit(AckIgnored(self._t(), name[:128], result.ignored_reason))
            return
        self.stats.played_acks += 1
        for piece in result.settled:
            self._piece_played(piece, t)
        if self.outbox:
            self._pump(now)
        self._maybe_act()

    # --- bad input --------------------------------------------------------------------------------
    def _bad_message(self, reason: str, detail: str) -> None:
        self.stats.bad_messages += 1
        self._bad_streak += 1
        self._emit(BadMessage(self._t(), reason, detail[:200]))
        if self._bad_streak >= self.limits.max_bad_messages:
            self._refuse(
                CloseCode.POLICY_VIOLATION,
                "too_many_bad_messages",
                f"{self._bad_streak} malformed messages in a row (last: {reason})",
            )

    def _before_start(self, kind: str) -> None:
        self.stats.pre_start_messages += 1
        count = self.stats.pre_start_messages
        if count == 1:
            self._emit(EventBeforeStart(self._t(), kind))
        if count >= self.limits.max_messages_before_start:
            self._refuse(
                CloseCode.POLICY_VIOLATION, "no_start", f"{count} events arrived before 'start'"
            )

    # --- the pipeline -----------------------------------------------------------------------------
    def pipeline_failed(self, error: str) -> Sequence[Out]:
        self._emit(PipelineFailed(self._t(), error[:300]))
        self._refuse(CloseCode.INTERNAL_ERROR, "pipeline_start_failed", error)
        return self._take()

    def pipeline_started(
        self, roles: set[str], now: float, snapshot: CallSnapshot | None = None
    ) -> Sequence[Out]:
        """The pipeline runs: greet (through it), or go on from a dropped stream's snapshot."""
        ctx = self.ctx
        assert ctx is not None, "open_context() first"
        info = ctx.info
        self.started = True
        # A speech-to-speech stage says what the call itself must say (greetings, fallbacks).
        self.can_speak = bool(roles & {"tts", "speech_to_speech"})
        self.replies.enabled = {"dialogue", "tts"} <= roles
        # Without a transcriber, "no words" proves nothing: never call an interruption false.
        self.barge_in.words_known = "stt" in roles
        self._want_caller_audio = self.bus.wants(CallerAudio)
        self._want_agent_audio = self.bus.wants(AgentAudioSent)
        self._emit(
            CallAnswered(
                self._t(),
                info.call_id,
                info.stream_id,
                info.account_id,
                info.encoding,
                info.sample_rate,
                dict(info.extra_headers),
                self.epoch,
            )
        )
        self._out.append(Push(info.started(resumed=snapshot is not None)))
        if snapshot is not None:
            said = self._respeak(snapshot, now)
            respoken = " ".join(said)
            self._emit(
                CallResumed(
                    self._t(), snapshot.epoch, snapshot.turn, len(snapshot.history), respoken
                )
            )
        self._out.append(SaveState())  # a shared store knows of the call from its first moment
        return self._take()

    def observe(self, frame: Frame, now: float) -> bool:
        """A stage made a frame of interest (before any queue). False drops it: a backchannel
        said over the agent never reaches the dialogue. Only events and ``SaveState`` come of
        this: read them with ``drain()``."""
        if isinstance(frame, SpeechStarted):
            self._caller_speaking = True
            self._caller_active(now)
            self.barge_in.speech_started(frame.at_ms)
            self._emit(SpeechBegan(self._t(), round(frame.at_ms / 1000.0, 3)))
        elif isinstance(frame, SpeechEnded):
            self._caller_speaking = False
            self._last_activity_s = self.call_time(now)
            self.barge_in.speech_ended(frame.at_ms)
            self.turns.caller_ended(frame.at_ms / 1000.0)
            self._emit(SpeechFinished(self._t(), round(frame.at_ms / 1000.0, 3)))
        elif isinstance(frame, Transcript):
            if frame.reply_turn is not None:
                return True  # a speech-to-speech model heard and answered these words already
            backchannel = self.barge_in.transcript(frame.text, frame.final)
            if not backchannel and frame.final and frame.text.strip() and self._agent_active(now):
                backchannel = not self.barge_in.content_words(frame.text)
            if backchannel:
                self._emit(BackchannelIgnored(self._t(), frame.text[:200]))
                return False
            if frame.final and frame.text.strip():
                self.turns.caller_transcribed(self.call_time(now))
        elif isinstance(frame, AgentText):
            self._agent_text(frame, now)
        elif isinstance(frame, AgentAudio):
            self.turns.mark(frame.turn, "first_audio_s", self.call_time(now))
            self._spoken_text(frame, now)
        return True

    def caller_said(self, frame: Transcript, now: float) -> Sequence[Out]:
        """A final transcript reached the dialogue stage, after every transform on the way:
        this text, and only this, is the caller's words in the history and the logs."""
        text = frame.text.strip()
        if not frame.final or not text or self.ctx is None:
            return []
        if frame.reply_turn is not None:  # answered already (speech to speech)
            self.ctx.add_caller_text(text, before_turn=frame.reply_turn or None)
        else:
            self.ctx.add_caller_text(text)
            self.replies.caller_turn_ended(self.call_time(now), self.turns.begun)
        self._emit(CallerSaid(self._t(), text))
        self._out.append(SaveState())
        return self._take()

    def output(self, frame: Frame, now: float) -> Sequence[Out]:
        """A frame left the pipeline's last stage."""
        if isinstance(frame, OutputAudio):
            if self.ctx is None or self.outbox is None or self.ending:
                return []
            if self.turns.is_stale(frame.turn) or not self.replies.wanted(frame.turn):
                return []
            if self.only_turn is not None and frame.turn != self.only_turn:
                return []
            self.outbox.add(frame, history_turn=self.book.respoken.get(frame.turn))
            self._pump(now)
        elif isinstance(frame, Hangup | Transfer):
            hangup = isinstance(frame, Hangup)
            detail = frame.reason if isinstance(frame, Hangup) else frame.to
            self._emit(
                ActionRequested(self._t(), "hangup" if hangup else "transfer", frame.reason, detail)
            )
            self.pending_action = frame
            self._out.append(SaveState())
            self._maybe_act()
        return self._take()

    def dropped(self, count: int, reason: str = "backpressure") -> Sequence[Out]:
        self._emit(FramesDropped(self._t(), reason, count))
        return self._take()

    def drain(self) -> Sequence[Out]:
        """What ``observe`` left to carry out."""
        return self._take()

    # --- the clock --------------------------------------------------------------------------------
    def tick(self, now: float) -> Sequence[Out]:
        """Housekeeping, every ``limits.tick_s``: lost acks, pacing, barge-in, a pending
        hang-up, idle reprompts, late replies, the call's time limit."""
        if self.ending or self.ctx is None:
            return []
        t = self.call_time(now)
        for piece in self.ledger.expire_overdue(t):
            self._emit(AckLost(self._t(), piece.name))
            self._piece_played(piece, t)
        if self.outbox:
            self._pump(now)
        self._decide_barge_in(now)
        self._maybe_act()
        self._idle_check(now)
        self._report_drops(now)
        self._decide(self.replies.tick(t), now)
        limit = self.limits.max_call_seconds
        if self.options.max_call_s:
            limit = min(limit, self.options.max_call_s) if limit else self.options.max_call_s
        if limit and t + self.elapsed_before >= limit:
            self._close("max_call_duration", close_reason="maximum call duration reached")
        return self._take()

    # --- ending -----------------------------------------------------------------------------------
    def end(
        self, reason: str, *, code: int = CloseCode.NORMAL, close_reason: str = ""
    ) -> Sequence[Out]:
        """End the call from outside (the socket went away, the service drains)."""
        self._close(reason, code=code, close_reason=close_reason or reason)
        return self._take()

    def finished(self, reason: str) -> Sequence[Out]:
        """The driver stopped the pipeline and closed the socket: the call's last event."""
        self._report_drops(0.0, every_s=0)
        return (*self._take(), CallFinished(self._t(), reason, self.stats.as_dict()))

    def turn_settled(self, turn: int) -> bool:
        """``turn`` has played to its end or been cut off (or the call is over)."""
        return self.ending or self.turns.settled(turn)

    # --- resuming a dropped call ------------------------------------------------------------------
    def suspendable(self, close_code: int | None) -> bool:
        """The socket went away mid-call without anyone ending the call: Plivo may come back.

        A normal close (1000) is Plivo ending the stream with the call; anything else (1005 or
        1006 for a connection lost without a close frame, 1001, 1011, 1012 for a server
        restart, ...) is a drop Plivo retries."""
        return not self.ending and self.ctx is not None and close_code != CloseCode.NORMAL

    def snapshot(self, now: float, *, epoch: int | None = None) -> CallSnapshot | None:
        """The call's resumable state now, as if its socket dropped this instant."""
        return capture.take(self, self.call_time(now), epoch=self.epoch if epoch is None else epoch)

    def restore(self, snapshot: CallSnapshot, wall_now: float | None = None) -> None:
        """Go on from a dropped stream's snapshot (before ``pipeline_started``)."""
        capture.restore(self, snapshot, time.time() if wall_now is None else wall_now)
