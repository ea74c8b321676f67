"""One OpenTelemetry trace per call, built from the call's events (docs/tracing.md).

``CallTracer`` is a per-call subscriber of the ``CallEvent`` stream. Its trace: a root span
``call`` (call and stream id, codec, outcome), a ``turn`` span per agent turn, and under each
turn the spans the turn's timing shows: ``end_of_turn`` (the caller's end of speech to the
VAD's decision), ``stt`` (end of speech to the final transcript), the dialogue (GenAI semantic
conventions when a model answers: ``chat gpt-4.1-mini``), ``tts`` (first text to first audio)
and ``playout`` (first audio sent to the turn's end or its cut). Barge-ins, false interruptions
and provider errors are span events; provider errors also set the failing stage's span status.

A turn's milestones are known only when its turn event arrives (``TurnCompleted`` or
``BargeIn``), after the fact, so every span is made with explicit start and end times: the call's
stream time ``t`` mapped to wall-clock nanoseconds at the moment the call was answered.

Only the OpenTelemetry API is imported here; the SDK and exporter are set up by
``observe.tracing_setup``, and only when tracing is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from voicebridge.call.events import (
    AgentSaid,
    BargeIn,
    CallAnswered,
    CallerSaid,
    CallEvent,
    CallFinished,
    CallResumed,
    ContinuedAfterFalseInterruption,
    PiecePlayed,
    PipelineFailed,
    ProviderDown,
    ProviderFailed,
    SpeechFinished,
    StageFailed,
    TurnCompleted,
)
from voicebridge.observe.bounded import bounded
from voicebridge.observe.genai import DialogueSpan
from voicebridge.observe.metrics import outcome_of
from voicebridge.observe.trace_context import bind_call_headers
from voicebridge.observe.turn_milestones import milestones

TEXT_LIMIT = 500  # characters of caller or agent words on one attribute
_KEEP_TURNS = 8  # per-turn notes older than this many turns are dropped (long calls)
_ROLE_SPANS = {"stt": "stt", "dialogue": "dialogue", "speech_to_speech": "dialogue", "tts": "tts"}


class CallTracer:
    """The trace of one call. Make one per call, in the task that will start the call's
    pipeline (``call_subscribers()`` does, in the call's socket task): it makes the call's root
    span the current span of that task, so the stage tasks started after it inherit it, and
    binds the headers (``traceparent``) our provider requests carry.
    """

    event_types = (
        CallAnswered,
        CallResumed,
        CallFinished,
        PipelineFailed,
        StageFailed,
        SpeechFinished,
        CallerSaid,
        AgentSaid,
        PiecePlayed,
        TurnCompleted,
        BargeIn,
        ContinuedAfterFalseInterruption,
        ProviderFailed,
        ProviderDown,
    )

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        pipeline: str = "",
        dialogue: DialogueSpan | None = None,
        roles: Mapping[str, str] | None = None,
        include_text: bool = True,
        bind_context: bool = True,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``roles``: stage name -> role (which span a provider error belongs to);
        ``bind_context``: make the call's span current in this task (see the class docstring);
        ``wall_ns``: the wall clock the call's timeline is pinned to when it is answered."""
        self._tracer = tracer
        self._pipeline = pipeline
        self._dialogue = dialogue or DialogueSpan()
        self._plain_dialogue = self._dialogue.plain()
        self._roles = dict(roles or {})
        self._text = include_text
        self._wall_ns = wall_ns
        # The root span starts now, as the call's socket is taken; it gets its attributes when
        # the call is answered (the stream's ``start``), and ends with the call.
        self._origin_ns = wall_ns()
        self._root = tracer.start_span("call", kind=SpanKind.SERVER, start_time=self._origin_ns)
        self._root_context = trace.set_span_in_context(self._root)
        self._headers: dict[str, str] | None = None
        if bind_context:
            # This task's current span, inherited by the stage tasks it starts: client
            # instrumentation the operator installs nests under the call. And the headers our
            # own HTTP requests carry (observe.trace_context).
            context.attach(self._root_context)
            self._headers = bind_call_headers()
            propagate.inject(self._headers, context=self._root_context)
        self._answered_yet = False
        self._decided: dict[float, float] = {}  # caller's end of speech -> when the VAD said so
        self._caller_text = ""
        self._first_seen: dict[int, float] = {}  # turn -> its first text's stream time
        self._last_text: dict[int, float] = {}  # turn -> its last text's stream time
        self._heard: dict[int, list[str]] = {}  # turn -> what the caller heard of it
        self._notes: dict[int, list[tuple[str, float, dict[str, Any]]]] = {}  # events to come
        self._errors: list[ProviderFailed] = []  # for the next turn's span
        self._spanned: set[int] = set()
        self._turns = 0
        self._barge_ins = 0

    @property
    def span_context(self) -> trace.SpanContext:
        """The ids of the call's root span (what ``traceparent`` carries)."""
        return self._root.get_span_context()

    # --- the subscriber -------------------------------------------------------------------
    def on_event(self, event: CallEvent) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    # --- the call ---------------------------------------------------------------------------
    def _answered(self, event: CallAnswered) -> None:
        if self._answered_yet:  # one root per call (a duplicate start changes nothing)
            return
        self._answered_yet = True
        self._origin_ns = self._wall_ns() - int(event.t * 1e9)
        attributes: dict[str, Any] = {
            "voicebridge.call_id": bounded(event.call_id, 64),
            "voicebridge.stream_id": bounded(event.stream_id, 64),
            "voicebridge.codec": bounded(event.encoding, 64),
            "voicebridge.sample_rate": event.sample_rate,
            "voicebridge.epoch": event.epoch,
        }
        if self._pipeline:
            attributes["voicebridge.pipeline"] = self._pipeline
        self._root.set_attributes(attributes)

    def _resumed(self, event: CallResumed) -> None:
        self._root.set_attribute("voicebridge.resumed_from_turn", event.turn)

    def _finished(self, event: CallFinished) -> None:
        root = self._root
        outcome = outcome_of(event.reason)
        root.set_attribute("voicebridge.outcome", outcome)
        root.set_attribute("voicebridge.end_reason", bounded(event.reason, 100))
        root.set_attribute("voicebridge.turns", self._turns)
        root.set_attribute("voicebridge.barge_ins", self._barge_ins)
        if outcome == "error":
            root.set_status(Status(StatusCode.ERROR, bounded(event.reason, 100)))
        root.end(end_time=self._ns(event.t))
        if self._headers is not None:
            self._headers.clear()  # a late request of this call no longer points at it

    def _failed(self, event: PipelineFailed | StageFailed | ProviderDown) -> None:
        root = self._root
        attributes = {k: bounded(v) for k, v in event.fields().items() if v is not None}
        root.add_event(event.kind, attributes, timestamp=self._ns(event.t))
        root.set_status(Status(StatusCode.ERROR, event.kind))

    # --- what the turn events do not carry ---------------------------------------------------
    def _speech_finished(self, event: SpeechFinished) -> None:
        self._decided[event.at] = event.t
        if len(self._decided) > _KEEP_TURNS:
            del self._decided[next(iter(self._decided))]

    def _decision(self, caller_end: float) -> float | None:
        """When the VAD decided the caller had ended at ``caller_end`` (the gaps the turn event
        carries are rounded to milliseconds, so its end of speech may be a millisecond off)."""
        for at, decided in self._decided.items():
            if abs(at - caller_end) <= 0.0025:
                return decided
        return None

    def _caller_said(self, event: CallerSaid) -> None:
        self._caller_text = event.text

    def _agent_said(self, event: AgentSaid) -> None:
        if event.turn not in self._first_seen and len(self._first_seen) >= 4 * _KEEP_TURNS:
            self._forget_before(event.turn - _KEEP_TURNS)  # turns that never ended or were cut
        self._first_seen.setdefault(event.turn, event.t)
        if event.last:
            self._last_text[event.turn] = event.t

    def _played(self, event: PiecePlayed) -> None:
        self._heard.setdefault(event.turn, []).append(event.text)

    def _continued(self, event: ContinuedAfterFalseInterruption) -> None:
        attributes = {"voicebridge.turn": event.turn}
        if self._text:
            attributes["voicebridge.text"] = bounded(event.text, TEXT_LIMIT)
        self._root_event("false_interruption", event.t, attributes)
        self._notes.setdefault(event.turn, []).append(("continued", event.t, attributes))

    def _provider_failed(self, event: ProviderFailed) -> None:
        attributes = _error_attributes(event)
        self._root_event("provider_error", event.t, attributes)
        self._errors.append(event)
        del self._errors[:-_KEEP_TURNS]

    def _root_event(self, name: str, t: float, attributes: dict[str, Any]) -> None:
        self._root.add_event(name, attributes, timestamp=self._ns(t))

    # --- turns ------------------------------------------------------------------------------
    def _turn_completed(self, event: TurnCompleted) -> None:
        at = milestones(event.timing, "completed_s", event.t)
        heard = " ".join(self._heard.get(event.turn, ()))
        self._turn(event.turn, event.timing, at, event.t, heard, None)

    def _barge_in(self, event: BargeIn) -> None:
        self._barge_ins += 1
        attributes: dict[str, Any] = {
            "voicebridge.cause": bounded(event.cause, 32),
            "voicebridge.cleared": len(event.cleared),
        }
        if event.reaction_s is not None:
            attributes["voicebridge.reaction_s"] = round(event.reaction_s, 3)
        if self._text and event.heard is not None:
            attributes["voicebridge.heard"] = bounded(event.heard, TEXT_LIMIT)
        self._root_event("barge_in", event.at_s, attributes)
        turn = event.timing.get("turn")
        if not isinstance(turn, int):
            return
        first_text = self._first_seen.get(turn)
        at = milestones(event.timing, "first_text_s", first_text) if first_text is not None else {}
        heard = event.heard if event.heard is not None else " ".join(self._heard.get(turn, ()))
        self._turn(turn, event.timing, at, event.at_s, heard, ("barge_in", attributes))

    def _turn(
        self,
        turn: int,
        timing: Mapping[str, Any],
        at: dict[str, float],
        end_s: float,
        heard: str,
        cut: tuple[str, dict[str, Any]] | None,
    ) -> None:
        if turn in self._spanned:
            return
        self._spanned.add(turn)
        self._turns += 1
        start_s = min([end_s, *at.values()])
        attributes: dict[str, Any] = {
            "voicebridge.turn": turn,
            "voicebridge.interrupted": cut is not None,
        }
        if timing.get("latency_s") is not None:
            attributes["voicebridge.latency_s"] = timing["latency_s"]
        if self._text and heard:
            attributes["voicebridge.heard"] = bounded(heard, TEXT_LIMIT)
        span = self._tracer.start_span(
            "turn", self._root_context, attributes=attributes, start_time=self._ns(start_s)
        )
        context = trace.set_span_in_context(span)
        children = self._children(turn, timing, at, end_s, heard, context)
        for name, t, event_attributes in self._notes.pop(turn, ()):
            span.add_event(name, event_attributes, timestamp=self._ns(t))
        if cut is not None:
            span.add_event(cut[0], cut[1], timestamp=self._ns(end_s))
            if "playout" in children:
                children["playout"].span.add_event(cut[0], cut[1], timestamp=self._ns(end_s))
        self._attach_errors(span, children)
        for child in children.values():
            child.span.end(end_time=self._ns(child.end_s))
        span.end(end_time=self._ns(end_s))
        self._forget_before(turn - _KEEP_TURNS)

    def _children(
        self,
        turn: int,
        timing: Mapping[str, Any],
        at: dict[str, float],
        end_s: float,
        heard: str,
        context: Any,
    ) -> dict[str, _Open]:
        """The stage spans of one turn, started but not ended (errors may still be added)."""
        spans: dict[str, _Open] = {}

        def child(
            key: str, name: str, start: float, end: float, attrs: dict[str, Any], kind: SpanKind
        ) -> None:
            span = self._tracer.start_span(
                name, context, kind=kind, attributes=attrs, start_time=self._ns(start)
            )
            spans[key] = _Open(span, max(start, end))

        caller_end = at.get("caller_end_s")
        transcript = at.get("transcript_s")
        first_text = at.get("first_text_s")
        if caller_end is not None:
            decided = self._decision(caller_end)
            if decided is not None:
                attrs: dict[str, Any] = {"voicebridge.silence_s": round(decided - caller_end, 3)}
                child("end_of_turn", "end_of_turn", caller_end, decided, attrs, SpanKind.INTERNAL)
        if caller_end is not None and transcript is not None:
            attrs = {"voicebridge.ttfb_s": timing.get("stt_s")}
            if self._text and self._caller_text:
                attrs["voicebridge.transcript"] = bounded(self._caller_text, TEXT_LIMIT)
            self._caller_text = ""
            child("stt", "stt", caller_end, transcript, _present(attrs), SpanKind.INTERNAL)
        if first_text is not None:
            start = transcript if transcript is not None else first_text
            end = max(first_text, self._last_text.get(turn, first_text))
            # Only a turn that answers the caller asked the model; the rest (a greeting, a
            # reprompt, a filler) are the stage's own words.
            dialogue = self._dialogue if transcript is not None else self._plain_dialogue
            attrs = {**dialogue.attributes, "voicebridge.ttfb_s": timing.get("dialogue_s")}
            kind = SpanKind.CLIENT if transcript is not None else SpanKind.INTERNAL
            child("dialogue", dialogue.name, start, end, _present(attrs), kind)
        first_audio = at.get("first_audio_s")
        if first_text is not None and first_audio is not None:
            attrs = {"voicebridge.ttfb_s": timing.get("tts_s")}
            child("tts", "tts", first_text, first_audio, _present(attrs), SpanKind.INTERNAL)
        first_sent = at.get("first_sent_s")
        if first_sent is not None:
            attrs = {
                "voicebridge.playout_start_s": timing.get("playout_start_s"),
                "voicebridge.duration_s": timing.get("duration_s"),
            }
            if self._text and heard:
                attrs["voicebridge.heard"] = bounded(heard, TEXT_LIMIT)
            child("playout", "playout", first_sent, end_s, _present(attrs), SpanKind.INTERNAL)
        return spans

    def _attach_errors(self, turn_span: Span, children: dict[str, _Open]) -> None:
        """Provider errors since the last turn belong to this one (the turn that answered the
        caller instead: a fallback, or the retry that worked)."""
        errors, self._errors = self._errors, []
        for error in errors:
            role = _ROLE_SPANS.get(self._roles.get(error.stage, ""), "")
            target = children[role].span if role in children else turn_span
            attributes = _error_attributes(error)
            target.add_event("provider_error", attributes, timestamp=self._ns(error.t))
            target.set_status(Status(StatusCode.ERROR, f"{error.provider}: {error.error_kind}"))

    def _forget_before(self, turn: int) -> None:
        for notes in (self._first_seen, self._last_text, self._heard, self._notes):
            for old in [t for t in notes if t < turn]:
                del notes[old]
        self._spanned = {t for t in self._spanned if t >= turn}

    def _ns(self, t: float) -> int:
        return self._origin_ns + round(t * 1e9)


class _Open:
    """A child span whose end time is known but which is ended last."""

    __slots__ = ("end_s", "span")

    def __init__(self, span: Span, end_s: float) -> None:
        self.span = span
        self.end_s = end_s


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def _error_attributes(event: ProviderFailed) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "error.type": bounded(event.error_kind, 32),
        "voicebridge.stage": bounded(event.stage, 64),
        "voicebridge.provider": bounded(event.provider, 64),
        "voicebridge.error": bounded(event.error, 300),
    }
    if isinstance(event.status, int):
        attributes["http.response.status_code"] = event.status
    elif event.status is not None:
        attributes["voicebridge.status"] = bounded(str(event.status), 64)
    return attributes


_HANDLERS: dict[type[CallEvent], Callable[[CallTracer, Any], None]] = {
    CallAnswered: CallTracer._answered,
    CallResumed: CallTracer._resumed,
    CallFinished: CallTracer._finished,
    PipelineFailed: CallTracer._failed,
    StageFailed: CallTracer._failed,
    ProviderDown: CallTracer._failed,
    SpeechFinished: CallTracer._speech_finished,
    CallerSaid: CallTracer._caller_said,
    AgentSaid: CallTracer._agent_said,
    PiecePlayed: CallTracer._played,
    TurnCompleted: CallTracer._turn_completed,
    BargeIn: CallTracer._barge_in,
    ContinuedAfterFalseInterruption: CallTracer._continued,
    ProviderFailed: CallTracer._provider_failed,
}
