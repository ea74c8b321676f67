"""``CallEvent``s: everything that happens in a call, typed, as one stream.

The call core emits an event at each decision (a piece played, a barge-in, a turn completed, a
provider failed...). Logs, Prometheus metrics, recordings, the per-call event log and the
simulator's analysis are all subscribers of this stream; nothing reports by hand at the decision
sites. Subscribing is public API: pass a subscriber to ``Session(subscribers=...)``, call
``session.subscribe(...)``, or name a class under ``subscribers:`` in a pipeline YAML.

Every event carries ``t``: seconds of the call's own timeline (caller audio received) when it
happened. ``as_dict()`` is its JSON form, ``{"t": ..., "kind": ..., **fields}``, as written to
the per-call event log. Events are plain frozen dataclasses: cheap to make, safe to keep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import structlog

log = structlog.get_logger("voicebridge.call.events")

Level = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Base of every event. ``kind`` names it in logs and event logs."""

    kind: ClassVar[str] = "event"
    level: ClassVar[Level] = "info"  # the level its log line is written at
    timeline: ClassVar[bool] = True  # False: media-rate events left out of the event log
    t: float

    def fields(self) -> dict[str, Any]:
        """The event's own fields, without ``t``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "t"}

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, **self.fields()}


# --- the call's life ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    """The stream's ``start`` arrived and the pipeline runs."""

    kind: ClassVar[str] = "call_started"
    call_id: str
    stream_id: str
    account_id: str
    encoding: str
    sample_rate: int
    extra_headers: dict[str, str] = field(default_factory=dict)
    epoch: int = 0  # how many times this call's stream dropped before this one (resumed: > 0)


@dataclass(frozen=True, slots=True)
class CallResumed(CallEvent):
    """A dropped stream came back: the conversation goes on (dropped-socket resume)."""

    kind: ClassVar[str] = "call_resumed"
    epoch: int
    turn: int
    history: int
    respoken: str


@dataclass(frozen=True, slots=True)
class CallFinished(CallEvent):
    """The call is over; ``stats`` are its counters. The last event of every call."""

    kind: ClassVar[str] = "call_ended"
    reason: str
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PipelineFailed(CallEvent):
    """The pipeline could not start; the stream is refused."""

    kind: ClassVar[str] = "pipeline_start_failed"
    level: ClassVar[Level] = "error"
    error: str


@dataclass(frozen=True, slots=True)
class StageFailed(CallEvent):
    """A stage raised something that is not a provider failure: a bug that ends the call."""

    kind: ClassVar[str] = "stage_failed"
    level: ClassVar[Level] = "error"
    stage: str
    error: str


@dataclass(frozen=True, slots=True)
class RemainderUnspoken(CallEvent):
    """A resumed call owed the caller words but the pipeline has no speaker."""

    kind: ClassVar[str] = "resume_remainder_unspoken"
    level: ClassVar[Level] = "warning"
    text: str


# --- the wire -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BadMessage(CallEvent):
    kind: ClassVar[str] = "bad_message"
    level: ClassVar[Level] = "warning"
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class EventBeforeStart(CallEvent):
    """The first event that came before ``start`` (later ones are only counted)."""

    kind: ClassVar[str] = "event_before_start"
    level: ClassVar[Level] = "warning"
    event_name: str


@dataclass(frozen=True, slots=True)
class StreamRefused(CallEvent):
    """The call closes the stream because what came off it is unusable."""

    kind: ClassVar[str] = "closing_stream"
    level: ClassVar[Level] = "warning"
    reason: str
    detail: str
    code: int


@dataclass(frozen=True, slots=True)
class DuplicateStart(CallEvent):
    kind: ClassVar[str] = "duplicate_start_ignored"
    level: ClassVar[Level] = "warning"
    stream_id: str


@dataclass(frozen=True, slots=True)
class StopReceived(CallEvent):
    kind: ClassVar[str] = "stop_event"
    reason: str | None


@dataclass(frozen=True, slots=True)
class PlivoReportedError(CallEvent):
    """Plivo's ``playFailed`` or ``error`` event."""

    kind: ClassVar[str] = "plivo_reported_error"
    level: ClassVar[Level] = "warning"
    plivo_event: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class UnknownEventIgnored(CallEvent):
    kind: ClassVar[str] = "unknown_event_ignored"
    event_name: str


@dataclass(frozen=True, slots=True)
class ClearAcknowledged(CallEvent):
    """Plivo's ``clearedAudio``."""

    kind: ClassVar[str] = "cleared_audio_acked"
    level: ClassVar[Level] = "debug"


# --- the caller ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallerAudio(CallEvent):
    """Caller audio in the stream's codec, starting ``at_s`` into the stream. Made only when a
    subscriber asks for it (50 a second)."""

    kind: ClassVar[str] = "caller_audio"
    level: ClassVar[Level] = "debug"
    timeline: ClassVar[bool] = False
    payload: bytes = field(repr=False)
    at_s: float


@dataclass(frozen=True, slots=True)
class SpeechBegan(CallEvent):
    kind: ClassVar[str] = "speech_started"
    level: ClassVar[Level] = "debug"
    at: float  # stream seconds of the onset (the VAD's, before its guard)


@dataclass(frozen=True, slots=True)
class SpeechFinished(CallEvent):
    kind: ClassVar[str] = "speech_ended"
    level: ClassVar[Level] = "debug"
    at: float


@dataclass(frozen=True, slots=True)
class CallerSaid(CallEvent):
    """A final transcript as the dialogue stage received it (after every transform stage):
    what goes into the history, and the only caller text any log carries."""

    kind: ClassVar[str] = "caller_said"
    text: str


@dataclass(frozen=True, slots=True)
class BackchannelIgnored(CallEvent):
    """Only backchannels ("uh-huh") said over the agent: kept from the dialogue."""

    kind: ClassVar[str] = "backchannel"
    text: str


@dataclass(frozen=True, slots=True)
class DtmfPressed(CallEvent):
    kind: ClassVar[str] = "dtmf"
    digit: str


# --- the agent -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentSaid(CallEvent):
    """A piece of reply text, as a stage (or the call itself) made it."""

    kind: ClassVar[str] = "agent_text"
    level: ClassVar[Level] = "debug"
    turn: int
    text: str
    last: bool


@dataclass(frozen=True, slots=True)
class AgentAudioSent(CallEvent):
    """Agent audio in the stream's codec, sent at call time ``at_s``. Made only when a
    subscriber asks for it."""

    kind: ClassVar[str] = "agent_audio"
    level: ClassVar[Level] = "debug"
    timeline: ClassVar[bool] = False
    payload: bytes = field(repr=False)
    at_s: float


@dataclass(frozen=True, slots=True)
class CheckpointSent(CallEvent):
    kind: ClassVar[str] = "checkpoint"
    level: ClassVar[Level] = "debug"
    name: str
    turn: int
    text: str
    duration: float


@dataclass(frozen=True, slots=True)
class PiecePlayed(CallEvent):
    """Plivo acknowledged the piece (or its ack was overdue, or it had played by estimate when
    a clear went out): the caller heard ``text``."""

    kind: ClassVar[str] = "played"
    level: ClassVar[Level] = "debug"
    name: str
    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class AckIgnored(CallEvent):
    kind: ClassVar[str] = "ack_ignored"
    name: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class AckLost(CallEvent):
    kind: ClassVar[str] = "ack_lost"
    level: ClassVar[Level] = "warning"
    name: str


@dataclass(frozen=True, slots=True)
class TurnCompleted(CallEvent):
    """A turn's last piece played. ``timing`` is ``TurnTiming.as_dict()``."""

    kind: ClassVar[str] = "turn_played"
    turn: int
    timing: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, **self.timing}


@dataclass(frozen=True, slots=True)
class BargeIn(CallEvent):
    """The agent was cut off: ``clearAudio`` went out. ``reaction_s`` runs from the caller's
    speech onset to the clear (None when a keypad press caused it); ``at_s`` is call time."""

    kind: ClassVar[str] = "barge_in"
    cause: str
    cleared: list[str]
    heard: str | None
    reaction_s: float | None
    stale_through: int
    at_s: float
    # ``TurnTiming.as_dict()`` of the turn that was playing: what was measured before the cut
    timing: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContinuedAfterFalseInterruption(CallEvent):
    """The interruption was false (a cough, "mm-hmm"): the agent goes on from the first word
    the caller did not hear, as ``turn``."""

    kind: ClassVar[str] = "continued"
    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class Reprompted(CallEvent):
    kind: ClassVar[str] = "reprompt"
    count: int


@dataclass(frozen=True, slots=True)
class RepromptUnavailable(CallEvent):
    kind: ClassVar[str] = "reprompt_unavailable"
    level: ClassVar[Level] = "warning"
    reason: str


@dataclass(frozen=True, slots=True)
class IdleGoodbye(CallEvent):
    kind: ClassVar[str] = "idle_goodbye"
    reprompts: int


@dataclass(frozen=True, slots=True)
class FillerSpoken(CallEvent):
    """The reply is late: a filler line ("One moment.") as its own turn."""

    kind: ClassVar[str] = "filler"
    turn: int
    text: str
    waited: float


@dataclass(frozen=True, slots=True)
class ReplyTimedOut(CallEvent):
    kind: ClassVar[str] = "reply_timeout"
    level: ClassVar[Level] = "warning"
    waited: float


@dataclass(frozen=True, slots=True)
class ProviderFailed(CallEvent):
    kind: ClassVar[str] = "provider_error"
    level: ClassVar[Level] = "error"
    stage: str
    provider: str
    error_kind: str
    status: int | str | None
    error: str


@dataclass(frozen=True, slots=True)
class ProviderDown(CallEvent):
    """The provider stays down: the call says goodbye and hangs up."""

    kind: ClassVar[str] = "provider_down"
    level: ClassVar[Level] = "error"
    why: str
    failed_turns: int


@dataclass(frozen=True, slots=True)
class FramesDropped(CallEvent):
    """Caller audio thrown away (``reason``: why, e.g. ``backpressure``)."""

    kind: ClassVar[str] = "frames_dropped"
    level: ClassVar[Level] = "debug"
    timeline: ClassVar[bool] = False
    reason: str
    count: int


# --- hanging up and transferring --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ActionRequested(CallEvent):
    """The agent asked to hang up or transfer once what it said has played."""

    kind: ClassVar[str] = "call_action_requested"
    action: Literal["hangup", "transfer"]
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ActionCancelled(CallEvent):
    """A barge-in cancelled a pending hang-up or transfer: the caller has more to say."""

    kind: ClassVar[str] = "call_action_cancelled_by_barge_in"
    action: str


@dataclass(frozen=True, slots=True)
class Transferred(CallEvent):
    kind: ClassVar[str] = "transferred"
    to: str


@dataclass(frozen=True, slots=True)
class TransferFailed(CallEvent):
    kind: ClassVar[str] = "transfer_failed"
    level: ClassVar[Level] = "error"
    to: str
    error: str


@dataclass(frozen=True, slots=True)
class TransferUnavailable(CallEvent):
    kind: ClassVar[str] = "transfer_unavailable"
    level: ClassVar[Level] = "warning"
    to: str
    reason: str


@dataclass(frozen=True, slots=True)
class HungUp(CallEvent):
    """Plivo's REST API hung the call up (``outcome``: ``hung_up`` or ``already_ended``)."""

    kind: ClassVar[str] = "rest_hangup"
    outcome: str


@dataclass(frozen=True, slots=True)
class HangupFailed(CallEvent):
    kind: ClassVar[str] = "rest_hangup_failed"
    level: ClassVar[Level] = "error"
    error: str


# --- subscribing -----------------------------------------------------------------------------
Handler = Callable[[CallEvent], None]


@runtime_checkable
class Subscriber(Protocol):
    """An object that takes a call's events. ``on_event`` is called synchronously at each
    event: it must be cheap and should not raise (an exception is logged and the call goes on).
    Optionally, a class attribute ``event_types`` (a tuple of event classes) limits what it
    gets, and
    ``async def close(self)`` runs once after ``CallFinished`` (to write files, post results)."""

    def on_event(self, event: CallEvent) -> None: ...


class EventBus:
    """One call's subscribers. The core publishes; each subscriber gets the types it asked for."""

    def __init__(self) -> None:
        self._entries: list[tuple[Handler, tuple[type[CallEvent], ...] | None, Any]] = []
        self._routes: dict[type[CallEvent], tuple[Handler, ...]] = {}

    def subscribe(
        self,
        subscriber: Subscriber | Handler,
        event_types: tuple[type[CallEvent], ...] | None = None,
    ) -> Callable[[], None]:
        """Add a subscriber (an object with ``on_event``, or a plain function). ``event_types``
        (or the object's own ``event_types`` attribute) limits it to those event classes and
        their subclasses. Without it, it gets every event but the media-rate ones
        (``timeline = False``: caller and agent audio, dropped frames), which go only to
        subscribers that name them. Returns a function that unsubscribes it."""
        handler: Handler = getattr(subscriber, "on_event", None) or subscriber  # type: ignore[assignment]
        if not callable(handler):
            raise TypeError(f"{subscriber!r} is neither callable nor has on_event(event)")
        kinds = event_types if event_types is not None else getattr(subscriber, "event_types", None)
        if kinds is not None and not (
            isinstance(kinds, tuple)
            and all(isinstance(k, type) and issubclass(k, CallEvent) for k in kinds)
        ):
            raise TypeError(f"event_types of {subscriber!r} must be a tuple of CallEvent classes")
        entry = (handler, kinds, subscriber)
        self._entries.append(entry)
        self._routes.clear()

        def unsubscribe() -> None:
            if entry in self._entries:
                self._entries.remove(entry)
                self._routes.clear()

        return unsubscribe

    @property
    def subscribers(self) -> list[Any]:
        return [entry[2] for entry in self._entries]

    def _route(self, kind: type[CallEvent]) -> tuple[Handler, ...]:
        route = self._routes.get(kind)
        if route is None:
            route = tuple(
                handler
                for handler, kinds, _ in self._entries
                if (kind.timeline if kinds is None else issubclass(kind, kinds))
            )
            self._routes[kind] = route
        return route

    def wants(self, kind: type[CallEvent]) -> bool:
        """Whether anyone would get an event of this class (so costly ones can be skipped)."""
        return bool(self._route(kind))

    def publish(self, event: CallEvent) -> None:
        for handler in self._route(type(event)):
            try:
                handler(event)
            except Exception as exc:  # a subscriber's bug must not break the call
                log.error("subscriber_failed", subscriber=_name(handler), error=repr(exc)[:300])

    async def close(self) -> None:
        """Let every subscriber that has ``close`` finish its work (files, uploads)."""
        for subscriber in self.subscribers:
            close = getattr(subscriber, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception as exc:  # a full disk must not keep the call from ending
                log.error("subscriber_close_failed", subscriber=_name(subscriber), error=repr(exc))


def _name(thing: Any) -> str:
    owner = getattr(thing, "__self__", thing)  # a bound method names its object
    return str(getattr(owner, "__qualname__", None) or type(owner).__name__)
