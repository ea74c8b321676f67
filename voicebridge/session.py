"""One call: Plivo events in, frames through the pipeline, ``playAudio`` and checkpoints out.

The session owns everything that is about the call rather than about a stage: the stream's format
(never switched), the playback ledger (what was sent, what was heard), barge-in, hanging up, and
hostile input. It talks to the socket only through a two-method ``Transport``, so the server, the
simulator and the tests drive the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from voicebridge.clock import Clock, MonotonicClock, StreamClock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.session_options import SessionOptions
from voicebridge.context import CallContext, CallInfo
from voicebridge.frames import (
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
from voicebridge.pipeline import Pipeline
from voicebridge.playback import Piece, PlaybackLedger
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
from voicebridge.stage import Stage


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


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds on what one call may do before it is closed as unusable."""

    max_bad_messages: int = 50  # consecutive malformed messages
    max_messages_before_start: int = 100
    max_call_seconds: float = 3600.0
    tick_s: float = 0.25  # housekeeping period: lost acks, hang-up, call duration


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
    ) -> None:
        self.spec = spec
        self.options: SessionOptions = spec.session
        self.transport = transport
        self.clock: Clock = clock or MonotonicClock()
        self.limits = limits or SessionLimits()
        self._stage_factory = stage_factory or spec.create_stages
        self.log = logger or structlog.get_logger("voicebridge.session")
        self.ctx: CallContext | None = None
        self.pipeline: Pipeline | None = None
        self.format: StreamFormat | None = None
        self.ledger = PlaybackLedger()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.stats: dict[str, int] = {
            "media": 0,
            "bad_messages": 0,
            "pre_start_messages": 0,
            "played_acks": 0,
            "ignored_acks": 0,
            "clears": 0,
            "sent": 0,
        }
        # With record_events, a timeline of the call on the caller's stream time (seconds):
        # what the simulator's reports and the per-call event log are made from.
        self.events: list[dict[str, Any]] | None = [] if record_events else None
        self._bad_streak = 0
        self._stream_ms = 0.0
        self._play_encoder: messages.PlayAudioEncoder | None = None
        self._chunk_bytes = 0
        self._speech_onset_ms: float | None = None
        self._barged_for_onset: float | None = None
        self._completed_turn = 0
        self._hangup_reason: str | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._ending = False

    # --- recording and sending ------------------------------------------------------------------
    @property
    def stream_time(self) -> float:
        """Seconds of caller audio received so far: the call's own timeline."""
        return self._stream_ms / 1000.0

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
            self._on_played(event.name)
        elif isinstance(event, DtmfEvent):
            await self._on_dtmf(event)
        elif isinstance(event, ClearedAudioEvent):
            self.log.debug("cleared_audio_acked")
        elif isinstance(event, StopEvent):
            self.log.info("stop_event", reason=event.reason)
            await self.end("stop_event")
        elif isinstance(event, PlayFailedEvent | ErrorEvent):
            self.log.warning(
                "plivo_reported_error", event=type(event).__name__, reason=event.reason
            )
        elif isinstance(event, UnknownEvent):
            self.log.info("unknown_event_ignored", event_name=event.event[:64])

    async def _on_start(self, event: StartEvent) -> None:
        if self.ctx is not None:
            self.log.warning("duplicate_start_ignored", stream_id=event.stream_id[:64])
            return
        self.format = event.format
        self.log = self.log.bind(call_id=event.call_id, stream_id=event.stream_id)
        info = CallInfo(
            call_id=event.call_id,
            stream_id=event.stream_id,
            account_id=event.account_id,
            encoding=event.format.encoding,
            sample_rate=event.format.sample_rate,
            extra_headers=dict(event.extra_headers),
        )
        self.ctx = CallContext(info, clock=self.clock, logger=self.log)
        self._play_encoder = messages.PlayAudioEncoder(event.format, event.stream_id)
        self._chunk_bytes = max(
            event.format.bytes_per_sample,
            int(event.format.bytes_per_ms * self.options.chunk_ms)
            // event.format.bytes_per_sample
            * event.format.bytes_per_sample,
        )
        self._started_at = self.clock.now()
        try:
            stages = self._stage_factory()
            self.pipeline = Pipeline(
                stages,
                self.ctx,
                self._sink,
                observer=self._observe,
                observe=(SpeechStarted, SpeechEnded, Transcript, AgentText),
                on_error=self._stage_failed,
            )
            await self.pipeline.start()
        except Exception as exc:
            self.log.error("pipeline_start_failed", error=repr(exc))
            self.pipeline = None
            await self._refuse(CloseCode.INTERNAL_ERROR, "pipeline_start_failed", str(exc))
            return
        self._note(
            "call_started",
            encoding=event.format.encoding,
            sample_rate=event.format.sample_rate,
            extra_headers=dict(event.extra_headers),
        )
        self.log.info(
            "call_started",
            encoding=event.format.encoding,
            sample_rate=event.format.sample_rate,
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
            )
        )
        self._housekeeping = asyncio.get_running_loop().create_task(
            self._housekeep(), name=f"housekeeping-{info.call_id[:16]}"
        )

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
        await self.pipeline.push(MediaIn(payload, timestamp))
        if isinstance(self.clock, StreamClock):
            await self.clock.advance_to(self._stream_ms / 1000.0)
        if self._speech_onset_ms is not None and self._barge_in_due():
            await self._barge_in("speech")

    async def _on_dtmf(self, event: DtmfEvent) -> None:
        if self.pipeline is None:
            await self._before_start("dtmf")
            return
        self.log.info("dtmf", digit=event.digit)
        self._note("dtmf", digit=event.digit)
        if self.options.barge_in.dtmf_interrupts and self._agent_active():
            await self._barge_in("dtmf")
        await self.pipeline.push(Dtmf(event.digit, at_ms=self._stream_ms))

    def _on_played(self, name: str) -> None:
        result = self.ledger.ack(name, self.clock.now())
        if result.piece is None:
            self.stats["ignored_acks"] += 1
            self.log.info("ack_ignored", checkpoint=name[:128], reason=result.ignored_reason)
            self._note("ack_ignored", name=name[:128], reason=result.ignored_reason)
            return
        self.stats["played_acks"] += 1
        self._note("played", name=name, turn=result.piece.turn, text=result.piece.text)
        self._record_heard(result.piece)
        if result.turn_complete:
            self._completed_turn = max(self._completed_turn, result.piece.turn)
            self.log.info("turn_played", turn=result.piece.turn)
        self._maybe_hang_up()

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

    # --- pipeline output ----------------------------------------------------------------------
    def _observe(self, frame: Frame) -> None:
        """Called the moment a stage emits a frame of interest (before any queue)."""
        if isinstance(frame, SpeechStarted):
            self._speech_onset_ms = frame.at_ms
            self._note("speech_started", at=round(frame.at_ms / 1000.0, 3))
        elif isinstance(frame, SpeechEnded):
            self._speech_onset_ms = None
            self._note("speech_ended", at=round(frame.at_ms / 1000.0, 3))
        elif isinstance(frame, Transcript):
            self._note("transcript", text=frame.text, final=frame.final)
            if frame.final and frame.text.strip() and self.ctx:
                self.ctx.add_caller_text(frame.text.strip())
                self.log.info("caller_said", text=frame.text[:200])
        elif isinstance(frame, AgentText):
            self._note("agent_text", turn=frame.turn, text=frame.text, last=frame.last)

    async def _sink(self, frame: Frame) -> None:
        if isinstance(frame, OutputAudio):
            await self._play(frame)
        elif isinstance(frame, Hangup):
            self.log.info("hangup_requested", reason=frame.reason)
            self._note("hangup", reason=frame.reason)
            self._hangup_reason = frame.reason
            self._maybe_hang_up()
        elif isinstance(frame, Transfer):
            self.log.warning("transfer_not_supported", to=frame.to)
            self._note("transfer", to=frame.to)

    async def _play(self, frame: OutputAudio) -> None:
        ctx, encoder = self.ctx, self._play_encoder
        if ctx is None or encoder is None or ctx.is_stale(frame.turn) or self._ending:
            return
        payload = frame.payload
        step = self._chunk_bytes
        send = self._send
        for offset in range(0, len(payload), step):
            await send(encoder.encode(payload[offset : offset + step]))
        piece = self.ledger.record(
            frame.turn, frame.text, frame.duration_ms, self.clock.now(), frame.last
        )
        await send(messages.checkpoint(ctx.info.stream_id, piece.name))
        self._note(
            "checkpoint",
            name=piece.name,
            turn=piece.turn,
            text=piece.text,
            duration=round(piece.duration_ms / 1000.0, 3),
        )

    def _record_heard(self, piece: Piece) -> None:
        if self.ctx is None or not piece.heard_text:
            return
        entry = self.ctx.agent_entry(piece.turn)
        entry.text = f"{entry.text} {piece.heard_text}".strip()

    # --- barge-in -----------------------------------------------------------------------------
    def _agent_active(self) -> bool:
        """Agent audio is unplayed, or a reply is being prepared for a live turn."""
        if self.ctx is None:
            return False
        if self.ledger.has_unplayed(self.clock.now()):
            return True
        return self.ctx.turn > max(self._completed_turn, self.ctx.stale_through)

    def _barge_in_due(self) -> bool:
        """Caller speech has lasted the guard while the agent is talking (once per onset)."""
        onset = self._speech_onset_ms
        options = self.options.barge_in
        if onset is None or not options.enabled or self._barged_for_onset == onset:
            return False
        if self._stream_ms - onset < options.guard_ms or not self._agent_active():
            return False
        self._barged_for_onset = onset
        return True

    async def _barge_in(self, cause: str) -> None:
        if self.ctx is None or self.pipeline is None or self._ending:
            return
        now = self.clock.now()
        stale = self.pipeline.interrupt()
        cleared = self.ledger.clear(now)
        self.stats["clears"] += 1
        await self._send(messages.clear_audio(self.ctx.info.stream_id))
        interrupted = cleared.interrupted
        self._note(
            "barge_in",
            cause=cause,
            cleared=[p.name for p in cleared.cleared],
            heard=interrupted.heard_text if interrupted else None,
        )
        if interrupted is not None:
            entry = self.ctx.agent_entry(interrupted.turn)
            entry.text = f"{entry.text} {interrupted.heard_text}".strip()
            entry.interrupted = True
        self.log.info(
            "barge_in",
            cause=cause,
            stale_through=stale,
            cleared_pieces=len(cleared.cleared),
            heard=interrupted.heard_text if interrupted else None,
        )

    # --- housekeeping -------------------------------------------------------------------------
    async def _housekeep(self) -> None:
        limit = self.limits.max_call_seconds
        if self.options.max_call_s:
            limit = min(limit, self.options.max_call_s) if limit else self.options.max_call_s
        while not self._ending:
            await self.clock.sleep(self.limits.tick_s)
            now = self.clock.now()
            for piece in self.ledger.expire_overdue(now):
                self.log.warning("ack_lost", checkpoint=piece.name)
                self._record_heard(piece)
                if piece.last:
                    self._completed_turn = max(self._completed_turn, piece.turn)
            self._maybe_hang_up()
            if limit and now - self._started_at >= limit:
                self.log.info("max_call_duration_reached", seconds=limit)
                await self.end("max_call_duration", close_reason="maximum call duration reached")

    def _maybe_hang_up(self) -> None:
        if self._hangup_reason is None or self._ending or self.ledger.pending:
            return
        task = asyncio.get_running_loop().create_task(
            self.end(f"hangup:{self._hangup_reason}", close_reason="agent hung up")
        )
        task.add_done_callback(_log_task_failure(self.log, "hangup_failed"))

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

    # --- ending -------------------------------------------------------------------------------
    async def end(
        self, reason: str, *, code: int = CloseCode.NORMAL, close_reason: str | None = None
    ) -> None:
        """End the call: stop the pipeline, close the socket. Safe to call more than once."""
        if self._ending:
            await self.ended.wait()
            return
        self._ending = True
        self.end_reason = reason
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
        self.ended.set()


def _log_task_failure(log: Any, event: str) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(event, error=repr(task.exception()))

    return done
