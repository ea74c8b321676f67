"""Property-based fuzzing of the Plivo event parser (issue 7).

Property: ``parse_event`` either returns one of the typed events or raises a ``ProtocolError``
(the documented error type); never anything else. Its errors are short (bad payloads can be
megabytes) and a missing or invalid field is named in the message. Valid events of every type
come back as the matching typed event with their values.

Message count (derandomized, so the same every run; each test asserts its own count):
valid events 1,000 + mutated events 2,500 + raw frames 1,500 = 5,000 messages in this module,
plus the deterministic nesting-depth sweep. ``test_fuzz_session.py`` adds at least 12,000
messages in sequences (asserted there): over 17,000 in all.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from hypothesis import given, settings

from voicebridge.plivo.errors import InvalidField, MissingField, ProtocolError
from voicebridge.plivo.events import (
    ClearedAudioEvent,
    DtmfEvent,
    ErrorEvent,
    InboundEvent,
    MediaEvent,
    PlayedStreamEvent,
    PlayFailedEvent,
    StartEvent,
    StopEvent,
    UnknownEvent,
    parse_event,
)

from .strategies import FUZZ, KNOWN, mutated_events, raw_frames, valid_events

TYPED = (
    StartEvent,
    MediaEvent,
    DtmfEvent,
    PlayedStreamEvent,
    ClearedAudioEvent,
    StopEvent,
    PlayFailedEvent,
    ErrorEvent,
    UnknownEvent,
)
MAX_ERROR_CHARS = 400

# --- the property -------------------------------------------------------------------------------


def check_parse(message: str | bytes) -> InboundEvent | None:
    """Parse; only typed events or ProtocolError may come out. Returns the event or None."""
    try:
        event = parse_event(message)
    except ProtocolError as exc:
        text = str(exc)
        assert len(text) <= MAX_ERROR_CHARS, f"{type(exc).__name__} message is {len(text)} long"
        assert exc.reason
        if isinstance(exc, MissingField | InvalidField):
            assert exc.field and text.startswith(exc.field), text
        return None
    assert isinstance(event, TYPED), type(event)
    return event


def expect_matches(message: dict[str, Any], event: InboundEvent | None) -> None:
    """A valid event comes back as its own type, with its values."""
    assert event is not None, message
    kind = message["event"]
    if kind == "start":
        assert isinstance(event, StartEvent)
        assert event.call_id == message["start"]["callId"]
        assert event.stream_id == message["start"]["streamId"]
        assert event.format.sample_rate == int(message["start"]["mediaFormat"]["sampleRate"])
    elif kind == "media":
        assert isinstance(event, MediaEvent)
        assert event.payload == base64.b64decode(message["media"]["payload"])
    elif kind == "dtmf":
        assert isinstance(event, DtmfEvent)
        assert event.digit == str(message["dtmf"]["digit"]).strip().upper()
    elif kind in ("playedStream", "played"):
        assert isinstance(event, PlayedStreamEvent) and event.name == message["name"]
    elif kind == "clearedAudio":
        assert isinstance(event, ClearedAudioEvent)
    elif kind == "stop":
        assert isinstance(event, StopEvent)
    elif kind == "playFailed":
        assert isinstance(event, PlayFailedEvent)
    elif kind == "error":
        assert isinstance(event, ErrorEvent)
    else:
        assert isinstance(event, UnknownEvent) and event.event == kind
    seq = message.get("sequenceNumber")
    if seq is not None and not isinstance(event, UnknownEvent):
        assert event.sequence_number == int(str(seq).strip())


def test_valid_events_of_every_type_parse_to_their_type() -> None:
    seen: list[str] = []

    @settings(FUZZ, max_examples=1000)
    @given(valid_events())
    def check(message: dict[str, Any]) -> None:
        seen.append(message["event"])
        expect_matches(message, check_parse(json.dumps(message)))

    check()
    assert len(seen) >= 1000
    assert set(seen) >= KNOWN  # every event type was generated


def test_mutated_events_parse_or_raise_protocol_errors() -> None:
    seen: list[int] = []

    @settings(FUZZ, max_examples=2500)
    @given(mutated_events())
    def check(text: str) -> None:
        seen.append(1)
        check_parse(text)

    check()
    assert len(seen) >= 2500


def test_raw_frames_parse_or_raise_protocol_errors() -> None:
    seen: list[int] = []

    @settings(FUZZ, max_examples=1500)
    @given(raw_frames())
    def check(frame: str | bytes) -> None:
        seen.append(1)
        check_parse(frame)

    check()
    assert len(seen) >= 1500


def test_nesting_at_the_interpreter_limit_is_a_protocol_error() -> None:
    """Found by the fuzzer: JSON nested just shallow enough for ``json.loads`` but too deep to
    re-serialise for a log line (``reason``, ``extra_headers``) raised RecursionError. Every
    depth around the recursion limit, in every free-form field, must parse or be refused."""
    limit = sys.getrecursionlimit()
    start = {
        "callId": "c",
        "streamId": "s",
        "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000},
    }
    for depth in range(limit - 80, limit + 10):
        deep = "[" * depth + "]" * depth
        for template in (
            '{"event": "error", "reason": %s}',
            '{"event": "stop", "stop": {"reason": %s}}',
            '{"event": "playFailed", "name": %s}',
            '{"event": "start", "start": ' + json.dumps(start) + ', "extra_headers": {"k": %s}}',
            '{"event": "media", "media": {"payload": %s}}',
        ):
            check_parse(template % deep)
