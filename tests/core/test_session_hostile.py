"""Every kind of hostile input gets its own logged reason (sans-socket; the e2e suite checks the
same inputs against the real server)."""

from __future__ import annotations

import base64
import json

import pytest
from structlog.testing import capture_logs

from voicebridge.config import load_pipeline_text
from voicebridge.session import Session

from .test_session import FakeTransport

ECHO = """
stages:
  - type: decode
  - type: vad
  - type: echo
  - type: encode
"""

START = json.dumps(
    {
        "event": "start",
        "start": {
            "callId": "c",
            "streamId": "s",
            "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000},
        },
    }
)


def media(payload: str) -> str:
    return json.dumps({"event": "media", "media": {"payload": payload}})


CASES: list[tuple[str, str | bytes, str, str]] = [
    ("non-JSON text", "hello", "bad_message", "malformed"),
    ("JSON array", "[1]", "bad_message", "malformed"),
    ("missing event", "{}", "bad_message", "event"),
    ("event not a string", '{"event": 3}', "bad_message", "event"),
    ("media without payload", '{"event": "media", "media": {}}', "bad_message", "media.payload"),
    ("invalid base64", media("@@@@"), "bad_message", "media.payload"),
    ("odd L16 payload", media(base64.b64encode(b"abc").decode()), "bad_message", "odd_l16"),
    ("binary frame", b"\x00\x01", "bad_message", "binary"),
    ("second start", START, "duplicate_start_ignored", ""),
    ("unknown event", '{"event": "surprise"}', "unknown_event_ignored", "surprise"),
    ("ack never sent", '{"event": "playedStream", "name": "x"}', "ack_ignored", "x"),
    # Found by fuzzing: these two raised TypeError (a log keyword clash) and ended the call.
    ("playFailed event", '{"event": "playFailed", "reason": "r1"}', "plivo_reported_error", "r1"),
    ("error event", '{"event": "error", "reason": "r2"}', "plivo_reported_error", "r2"),
]


@pytest.mark.parametrize(("label", "message", "event", "detail"), CASES, ids=[c[0] for c in CASES])
async def test_each_hostile_input_has_a_specific_logged_reason(
    label: str, message: str | bytes, event: str, detail: str
) -> None:
    transport = FakeTransport()
    session = Session(load_pipeline_text(ECHO), transport)
    await session.handle_message(START)
    with capture_logs() as logs:
        await session.handle_message(message)
    matching = [entry for entry in logs if entry["event"] == event]
    assert matching, f"{label}: no {event!r} log line in {logs}"
    assert detail.lower() in json.dumps(matching[0]).lower()
    assert transport.closed is None  # one bad message never ends the call
    await session.end("test")


async def test_events_before_start_are_logged_and_then_refused() -> None:
    transport = FakeTransport()
    session = Session(load_pipeline_text(ECHO), transport)
    with capture_logs() as logs:
        await session.handle_message(media("AAAA"))
    assert logs[0]["event"] == "event_before_start"
    for _ in range(200):
        await session.handle_message(media("AAAA"))
    assert transport.closed is not None and transport.closed[0] == 1008
    assert "no_start" in transport.closed[1]
