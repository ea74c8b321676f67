"""The caller's words in the history and the logs are what the dialogue stage received, after
every transform stage on the way: the shipped redaction example's promise, held through the real
session and through the simulator (not only ``run_stages``)."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from voicebridge.call.events import CallerSaid
from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.analysis import build_report
from voicebridge.sim.signals import speech_like
from voicebridge.sim.simulate import CallerLine, simulate_call
from voicebridge.testing import CallHarness

CARD = "my card is 4111 1111 1111 1111"
MASKED = "my card is ****************"
PIPELINE = f"""
name: redacting
stages:
  - type: decode
  - type: vad
    params: {{min_silence_ms: 300, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: ["{CARD}"], interim: true}}
  - type: redact_digits
    params: {{min_digits: 4}}
  - type: rules
    params:
      rules:
        - regex: "\\\\*{{4,}}"
          reply: Card noted.
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def no_raw_digits(entries: list[dict[str, object]]) -> None:
    # The digits as spoken, space-separated: random call and stream ids may hold "1111".
    text = json.dumps(entries, default=str)
    assert "4111 1111" not in text and "1111 1111" not in text, text


async def test_the_session_records_the_redacted_words_only() -> None:
    with capture_logs() as logs:
        async with CallHarness(load_pipeline_text(PIPELINE)) as call:
            await call.idle(0.3)
            await call.speak(speech_like(1.0, 8000))
            await call.until(lambda: bool(call.timeline("turn_played")))
            ctx = call.session.ctx
            assert ctx is not None
            assert [(e.role, e.text) for e in ctx.history] == [
                ("caller", MASKED),
                ("agent", "Card noted."),
            ]
            assert [e["text"] for e in call.timeline("caller_said")] == [MASKED]
            timeline = call.session.timeline
            assert timeline is not None
            no_raw_digits(timeline.dicts())
    assert any(e.get("event") == "caller_said" and e.get("text") == MASKED for e in logs)
    no_raw_digits(logs)


async def test_the_simulator_report_holds_the_redacted_words_only() -> None:
    spec = load_pipeline_text(PIPELINE)
    with capture_logs() as logs:
        call = await simulate_call(
            spec,
            StreamFormat("audio/x-l16", 8000),
            [CallerLine(CARD, speech_like(1.0, 8000))],
            settings=ServiceSettings(),
        )
    report = build_report(call)
    said = [e for e in call.events if isinstance(e, CallerSaid)]
    assert [e.text for e in said] == [MASKED]
    assert [h["text"] for h in report.history if h["role"] == "caller"] == [MASKED]
    assert [t.transcript for t in report.turns if t.transcript] == [MASKED]
    no_raw_digits(report.events)
    no_raw_digits(logs)


DIGITS_PIPELINE = """
name: digits
session: {{normalise_digits: {on}}}
stages:
  - type: decode
  - type: vad
    params: {{min_silence_ms: 300, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: ["my order number is five five one two please"], interim: true}}
  - type: rules
    params:
      spoken_digits: false       # so only the session's normalising can make the digits
      fallback: Words only.
      rules:
        - regex: "(?P<number>\\\\d{{4}})"
          reply: Order {{number}}.
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


@pytest.mark.parametrize(
    ("on", "caller", "agent"),
    [
        ("true", "my order number is 5512 please", "Order 5512."),
        ("false", "my order number is five five one two please", "Words only."),
    ],
)
async def test_the_dialogue_hears_spoken_digits_as_digits_whatever_the_transcriber(
    on: str, caller: str, agent: str
) -> None:
    async with CallHarness(load_pipeline_text(DIGITS_PIPELINE.format(on=on))) as call:
        await call.idle(0.3)
        await call.speak(speech_like(1.0, 8000))
        await call.until(lambda: bool(call.timeline("turn_played")))
        ctx = call.session.ctx
        assert ctx is not None
        assert [(e.role, e.text) for e in ctx.history] == [("caller", caller), ("agent", agent)]
        assert [e["text"] for e in call.timeline("caller_said")] == [caller]
