"""The state a call core keeps, and the few helpers every part of it uses.

``CallCore`` is built in layers, each a small class on top of the one before, so that each file
reads on its own: this state; ``Speaking`` (sending agent audio and settling what was heard);
``Interruptions`` (barge-in and the false-interruption continuation); ``AgentActions`` (hanging
up, transferring, provider failures, late replies, idle reprompts); and ``CallCore`` itself
(the inputs). Every layer only appends to ``_out``; each public input returns what it gathered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from voicebridge.call.actions import Action, Close, Send
from voicebridge.call.barge_in import BargeInPolicy
from voicebridge.call.context import CallContext
from voicebridge.call.events import CallEvent, EventBus, FramesDropped, StreamRefused
from voicebridge.call.fair_share import FairShare
from voicebridge.call.ledger import Piece, PlaybackLedger
from voicebridge.call.options import SessionOptions
from voicebridge.call.outbox import Outbox
from voicebridge.call.reply_book import ReplyBook
from voicebridge.call.reply_watch import ReplyWatch
from voicebridge.call.turns import Turns
from voicebridge.frames import Hangup, OutputAudio, Transfer
from voicebridge.plivo import messages
from voicebridge.plivo.formats import StreamFormat

Out = Action | CallEvent


class CloseCode:
    """WebSocket close codes the call uses (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Bounds on what one call may do before it is closed as unusable."""

    max_bad_messages: int = 50  # consecutive malformed messages
    max_messages_before_start: int = 100
    max_call_seconds: float = 3600.0
    tick_s: float = 0.1  # housekeeping period: pacing, lost acks, reprompts, limits
    hangup_attempt_s: float = 10.0  # a REST hang-up or transfer that takes longer is given up
    media_burst_s: float = 2.0  # caller audio may run this far ahead of real time (fair share)
    media_flood_s: float = 5.0  # this much audio dropped as beyond real time closes the socket


@dataclass(slots=True)
class CallStats:
    """Counters of one call (logged when it ends). Counters only: no decision reads them."""

    media: int = 0
    bad_messages: int = 0
    pre_start_messages: int = 0
    played_acks: int = 0
    ignored_acks: int = 0
    clears: int = 0
    continued: int = 0  # false interruptions the agent went on after
    reprompts: int = 0
    sent: int = 0
    provider_errors: int = 0
    flood_dropped: int = 0  # caller frames beyond real time (fair share)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class CallState:
    """What one call knows. Public attributes are read by snapshots, tests and reports."""

    # --- time and outputs -------------------------------------------------------------------------
    def __init__(
        self,
        options: SessionOptions | None = None,
        limits: CallLimits | None = None,
        *,
        bus: EventBus | None = None,
        has_call_control: bool = False,
        media_settles: bool = False,
    ) -> None:
        self.options = options or SessionOptions()
        # True when the driver lets the pipeline take each caller frame before the core decides
        # on it (a virtual clock driven by the audio): it then calls ``after_media`` itself.
        # Otherwise (real time) nothing runs between the push and the decision, so ``receive``
        # decides at once and the hot path costs one call.
        self.media_settles = media_settles
        self.limits = limits or CallLimits()
        self.bus = bus or EventBus()  # consulted only for whether costly events are wanted
        self.stats = CallStats()
        self.turns = Turns()
        self.ledger = PlaybackLedger()
        self.barge_in = BargeInPolicy(self.options.barge_in)
        self.replies = ReplyWatch(self.options.replies)
        self.book = ReplyBook()
        self.ctx: CallContext | None = None
        self.format: StreamFormat | None = None
        self.outbox: Outbox | None = None
        self.pending_action: Hangup | Transfer | None = None
        self.can_speak = False
        self.started = False  # the pipeline runs
        self.ending = False
        self.has_call_control = has_call_control
        self.reprompts = 0
        self.elapsed_before = 0.0  # call time used by this call's earlier streams
        self.epoch = 0  # how many times this call's stream dropped before this one
        self.reconnects = 0
        self.stream_token = uuid.uuid4().hex  # this stream's snapshots are claimed once
        self.stream_ms = 0.0  # caller audio received: the call's own timeline
        self.fair = FairShare(self.limits.media_burst_s, self.limits.media_flood_s)
        self._origin: float | None = None
        # Where the call's clock counts from: ``_origin``, moved earlier whenever caller audio
        # received runs ahead of it (see ``call_time``). ``_origin`` itself stays put: the fair
        # share measures caller audio against real time since ``start``.
        self._clock_origin: float | None = None
        self._out: list[Out] = []
        self._encoder: messages.PlayAudioEncoder | None = None
        self._bad_streak = 0
        self._caller_speaking = False
        self._acting = False
        self._last_activity_s = 0.0
        self._interrupted: list[tuple[Piece, OutputAudio]] = []  # kept for a continuation
        self._sent_audio: dict[str, OutputAudio] = {}
        self._speakerless: set[int] = set()  # turns whose text comes with their audio
        self._want_caller_audio = False
        self._want_agent_audio = False
        self.output_held = False  # agent audio queued but not sent (``HeldOutput``)
        self.only_turn: int | None = None  # set: every other turn's audio is dropped

    @property
    def stream_time(self) -> float:
        """Seconds of caller audio received so far."""
        return self.stream_ms / 1000.0

    @property
    def origin(self) -> float | None:
        """Clock seconds when ``start`` arrived (None before)."""
        return self._origin

    def call_time(self, now: float) -> float:
        """Seconds since the stream started: one clock that runs at real time and is never
        behind the caller audio received. Caller audio can run ahead of the time since
        ``start`` arrived (``start`` itself was delayed); the clock then jumps forward to it and
        keeps that lead, rather than standing still until real time catches up. A clock that
        stood still stamped a piece's sending later than its playing (the ack came after
        real time had caught up), and the turn's ``playout_start_s`` came out negative."""
        origin = self._clock_origin
        if origin is None:
            return self.stream_ms / 1000.0
        return max(now - origin, self.stream_ms / 1000.0)

    def _audio_received_through(self, now: float) -> None:
        """Caller audio now reaches ``stream_ms``: pull the clock's origin back if it ran
        ahead, so every later reading is at least that far on."""
        origin = self._clock_origin
        if origin is not None and now - origin < self.stream_ms / 1000.0:
            self._clock_origin = now - self.stream_ms / 1000.0

    def _emit(self, event: CallEvent) -> None:
        self._out.append(event)

    def _take(self) -> Sequence[Out]:
        """What this input produced; nothing is the shared empty tuple (no allocation: most
        caller frames produce nothing)."""
        out = self._out
        if not out:
            return ()
        self._out = []
        return out

    def _send(self, text: str) -> None:
        self.stats.sent += 1
        self._out.append(Send(text))

    def _t(self) -> float:
        return round(self.stream_ms / 1000.0, 3)

    def _close(
        self, reason: str, *, code: int = CloseCode.NORMAL, close_reason: str | None = None
    ) -> None:
        if self.ending:
            return
        self.ending = True
        self._out.append(Close(reason, code, (close_reason or reason)[:120]))

    def _report_drops(self, now: float, every_s: float = 1.0) -> None:
        """Caller frames dropped as beyond real time, as one event per ``every_s`` at most."""
        count = self.fair.report(now, every_s)
        if count:
            self._emit(FramesDropped(self._t(), "flood", count))

    def _refuse(self, code: int, reason: str, detail: str) -> None:
        self._emit(StreamRefused(self._t(), reason, detail[:200], code))
        self._close(reason, code=code, close_reason=f"{reason}: {detail}")
